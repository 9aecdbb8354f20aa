"""The dev-aws stack under Pulumi mocks: every resource and property the AWS
side of the design asks for (README.md, "What each cloud gets").

The fake answers with realistic computed outputs (ARNs in each service's format, queue
URLs, API endpoints), so the assertions can follow every reference: the rule's target is
*this* consumer's queue, the role's policy names *these* ARNs, and so on.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pytest

from adapters.aws import asl, buckets, topology
from adapters.aws.settings import Settings
from adapters.aws.topology import Names
from adapters.stack_outputs import AwsOutputs
from adapters.stack_outputs import parse as parse_outputs
from handlers.app import APP
from handlers.catalog import CATALOG, ORDER_COMPLETED, ORDER_CREATED
from handlers.core.app import App, Consumer
from infra.aws.packaging import build_zip, write_zip
from infra.config import ConfigError
from tests.infra.aws_fakes import aws_fake
from tests.infra.aws_sources import with_sources
from tests.infra.pulumi_harness import (
    FAKE_ACCOUNT,
    Recorded,
    RecordedResource,
    run_program,
)

STACK = "dev-aws"
PREFIX = "switchyard-dev-aws"
NAMES = Names(PREFIX)
CONSUMERS = APP.consumer_names()
ACCOUNT = FAKE_ACCOUNT


#: Outputs in each service's real format, computed from the physical name.
realistic_fake = aws_fake


def deploy(**config: object) -> Recorded:
    return run_program({"cloud": "aws", **config}, STACK, fake=realistic_fake)


@pytest.fixture(scope="module")
def rec() -> Recorded:
    return deploy()


def by_name(rec: Recorded, type_: str, name: str) -> RecordedResource:
    [found] = [r for r in rec.of_type(type_) if r.inputs.get("name") == name]
    return found


def out(resource: RecordedResource, key: str = "arn") -> Any:
    return resource.outputs[key]


def queue(rec: Recorded, name: str) -> RecordedResource:
    return by_name(rec, "aws:sqs/queue:Queue", name)


def function(rec: Recorded, name: str) -> RecordedResource:
    return by_name(rec, "aws:lambda/function:Function", name)


def role_policy(rec: Recorded, function_name: str) -> dict[str, Any]:
    role = by_name(rec, "aws:iam/role:Role", Names.role(function_name))
    [policy] = [p for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == role.id]
    return json.loads(policy.inputs["policy"])


def statements(policy: Mapping[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    """Sid -> (actions, resources), both as lists."""
    def listed(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value)
    return {s["Sid"]: (listed(s["Action"]), listed(s["Resource"]))
            for s in policy["Statement"]}


# --- the whole stack ---------------------------------------------------------------------


def test_every_resource_is_inside_the_stack_component(rec: Recorded) -> None:
    [root] = rec.children()
    assert root.type == "switchyard:aws:Stack" and root.name == PREFIX
    assert len(rec.descendants(root)) == len(rec.resources) - 1
    for resource in rec.resources:
        if resource.custom:
            assert rec.parent_of(resource) is not None, resource.name
            assert not rec.parent_of(resource).custom  # type: ignore[union-attr]


def test_nothing_unresolved_leaks_into_inputs(rec: Recorded) -> None:
    assert rec.none_leaks() == []
    # Also with the harness's plain fake, which computes no URLs or endpoints.
    assert run_program({"cloud": "aws", "api": True}, STACK).none_leaks() == []


def test_resource_inventory(rec: Recorded) -> None:
    n = len(CONSUMERS)
    assert rec.types() == with_sources({
        "switchyard:aws:Stack": 1, "switchyard:aws:EventBus": 1, "switchyard:aws:Tables": 1,
        "switchyard:aws:Topics": 1, "switchyard:aws:Saga": 1, "switchyard:aws:Consumer": n,
        "switchyard:aws:Function": n + 1,
        "aws:cloudwatch/eventBus:EventBus": 1, "aws:cloudwatch/eventArchive:EventArchive": 1,
        "aws:cloudwatch/eventRule:EventRule": n, "aws:cloudwatch/eventTarget:EventTarget": n,
        "aws:sqs/queue:Queue": 2 * n, "aws:sqs/queuePolicy:QueuePolicy": 2 * n,
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": n,
        "aws:cloudwatch/metricAlarm:MetricAlarm": n + 1,
        "aws:lambda/function:Function": n + 1, "aws:iam/role:Role": n + 2,
        "aws:iam/rolePolicy:RolePolicy": n + 2, "aws:cloudwatch/logGroup:LogGroup": n + 2,
        "aws:lambda/eventSourceMapping:EventSourceMapping": n,
        "aws:dynamodb/table:Table": len(APP.tables), "aws:sns/topic:Topic": 2,
        "aws:kms/key:Key": 1, "aws:sfn/stateMachine:StateMachine": 1,
    }, APP)


def test_stack_outputs(rec: Recorded) -> None:
    assert rec.outputs == {
        "cloud": "aws",
        "busName": NAMES.bus(),
        "busArn": f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{NAMES.bus()}",
        "queueUrls": {c: f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{NAMES.queue(c)}"
                      for c in CONSUMERS},
        "dlqUrls": {c: f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{NAMES.dlq(c)}"
                    for c in CONSUMERS},
        "tableNames": {t: NAMES.table(t) for t in APP.tables},
        "stateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:"
                           f"{NAMES.state_machine('order')}",
        "notificationTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:{NAMES.notifications_topic()}",
        "alarmTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:{NAMES.alarms_topic()}",
        "lambdaBytecode": write_zip().bytecode,
        "switchyard": rec.outputs["switchyard"],  # checked below
        "bucketNames": {b.name: buckets.bucket_name(PREFIX, b.name, ACCOUNT)
                        for b in APP.buckets},
    }
    assert rec.secret_outputs == frozenset()


def test_operations_output_names_every_consumers_queues(rec: Recorded) -> None:
    """The `switchyard` output is what the dlq/replay/status commands read: it parses, and
    every consumer of the app (no more, no fewer) has its queue, DLQ and rule."""
    ops = parse_outputs(rec.outputs["switchyard"], STACK)
    assert isinstance(ops, AwsOutputs)
    sqs = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}"
    assert (ops.region, ops.prefix, ops.bus_name, ops.archive_name) == (
        "us-east-1", PREFIX, NAMES.bus(), NAMES.archive())
    assert ops.bus_arn == rec.outputs["busArn"]
    assert ops.archive_arn == f"arn:aws:events:us-east-1:{ACCOUNT}:archive/{NAMES.archive()}"
    assert ops.state_machine_arn == rec.outputs["stateMachineArn"]
    assert [c.name for c in ops.consumers] == sorted(CONSUMERS)
    for consumer in ops.consumers:
        assert consumer.queue_url == f"{sqs}/{NAMES.queue(consumer.name)}"
        assert consumer.dlq_url == consumer.target_dlq_url == f"{sqs}/{NAMES.dlq(consumer.name)}"
        assert consumer.rule_arn == out(by_name(rec, "aws:cloudwatch/eventRule:EventRule",
                                                NAMES.rule(consumer.name)))


# --- bus -----------------------------------------------------------------------------------


def test_custom_bus_with_an_archive(rec: Recorded) -> None:
    bus = rec.one("aws:cloudwatch/eventBus:EventBus")
    archive = rec.one("aws:cloudwatch/eventArchive:EventArchive")
    assert bus.inputs["name"] == NAMES.bus()
    assert archive.inputs["eventSourceArn"] == out(bus)
    assert archive.inputs["retentionDays"] == 7
    assert deploy(archiveDays=30).one(
        "aws:cloudwatch/eventArchive:EventArchive").inputs["retentionDays"] == 30


# --- per consumer ------------------------------------------------------------------------


def _matches(pattern: Mapping[str, Any], source: str, detail_type: str) -> bool:
    """EventBridge matching for the subset the generator uses (exact values, $or)."""
    if "$or" in pattern:
        return any(_matches(p, source, detail_type) for p in pattern["$or"])
    return source in pattern["source"] and detail_type in pattern["detail-type"]


SEEDS = [("orders", "Order Created"), ("inventory", "Inventory Updated"),
         ("workflow", "Workflow Triggered")]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_rule_pattern_is_generated_and_matches_exactly_its_types(
    rec: Recorded, consumer: str
) -> None:
    rule = by_name(rec, "aws:cloudwatch/eventRule:EventRule", NAMES.rule(consumer))
    assert rule.inputs["eventBusName"] == NAMES.bus()
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern == topology.event_pattern(APP, APP.consumer(consumer), _uploads(rec))
    wanted = {(CATALOG[t].source, CATALOG[t].detail_type) for t in
              APP.consumer(consumer).consumes}
    for spec in CATALOG:
        pair = (spec.source, spec.detail_type)
        assert _matches(pattern, *pair) == (pair in wanted), pair
    for seed in SEEDS:  # the seeds' entries, exactly as they send them
        assert _matches(pattern, *seed) == (seed in wanted)


def test_the_seeds_each_reach_their_consumer(rec: Recorded) -> None:
    patterns = {c: json.loads(by_name(rec, "aws:cloudwatch/eventRule:EventRule",
                                      NAMES.rule(c)).inputs["eventPattern"])
                for c in CONSUMERS}
    routed = {seed: [c for c, p in patterns.items() if _matches(p, *seed)] for seed in SEEDS}
    assert routed == {("orders", "Order Created"): [c.name for c in APP.routes(ORDER_CREATED)],
                      ("inventory", "Inventory Updated"): ["inventory"],
                      ("workflow", "Workflow Triggered"): ["orders"]}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_rule_targets_the_queue_with_retry_policy_and_dlq(rec: Recorded, consumer: str) -> None:
    rule = by_name(rec, "aws:cloudwatch/eventRule:EventRule", NAMES.rule(consumer))
    [target] = [t for t in rec.of_type("aws:cloudwatch/eventTarget:EventTarget")
                if t.inputs["rule"] == NAMES.rule(consumer)]
    assert target.inputs["eventBusName"] == NAMES.bus()
    assert target.inputs["arn"] == out(queue(rec, NAMES.queue(consumer)))
    assert target.inputs["retryPolicy"] == {
        "maximumRetryAttempts": topology.TARGET_MAX_RETRY_ATTEMPTS,
        "maximumEventAgeInSeconds": topology.TARGET_MAX_EVENT_AGE_S}
    assert target.inputs["deadLetterConfig"] == {"arn": out(queue(rec, NAMES.dlq(consumer)))}
    consumer_component = rec.parent_of(rule)
    assert consumer_component is not None and consumer_component.type == "switchyard:aws:Consumer"
    assert rec.parent_of(target) == consumer_component


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("which", ["queue", "dlq"])
def test_only_the_consumers_rule_may_send_to_its_queues(
    rec: Recorded, consumer: str, which: str
) -> None:
    q = queue(rec, getattr(NAMES, which)(consumer))
    rule = by_name(rec, "aws:cloudwatch/eventRule:EventRule", NAMES.rule(consumer))
    [policy] = [p for p in rec.of_type("aws:sqs/queuePolicy:QueuePolicy")
                if p.inputs["queueUrl"] == out(q, "url")]
    [statement] = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == out(q)
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [out(rule)]}}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_queue_sse_redrive_and_visibility(rec: Recorded, consumer: str) -> None:
    q, dlq = queue(rec, NAMES.queue(consumer)), queue(rec, NAMES.dlq(consumer))
    assert q.inputs["sqsManagedSseEnabled"] is True and dlq.inputs["sqsManagedSseEnabled"]
    assert json.loads(q.inputs["redrivePolicy"]) == {"deadLetterTargetArn": out(dlq),
                                                     "maxReceiveCount": 5}
    fn = function(rec, NAMES.function(consumer))
    assert q.inputs["visibilityTimeoutSeconds"] >= 6 * fn.inputs["timeout"]
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
    [allow] = [p for p in rec.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
               if p.inputs["queueUrl"] == out(dlq, "url")]
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue", "sourceQueueArns": [out(q)]}


def test_max_deliveries_and_timeout_follow_the_config() -> None:
    rec = deploy(maxDeliveries=7, timeout=20, memory=512)
    for consumer in CONSUMERS:
        q = queue(rec, NAMES.queue(consumer))
        assert json.loads(q.inputs["redrivePolicy"])["maxReceiveCount"] == 7
        assert q.inputs["visibilityTimeoutSeconds"] == 120
        fn = function(rec, NAMES.function(consumer))
        assert (fn.inputs["timeout"], fn.inputs["memorySize"]) == (20, 512)
        assert Settings.from_env(fn.inputs["environment"]["variables"]).max_deliveries == 7


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_every_dlq_has_an_alarm_on_the_alarm_topic(rec: Recorded, consumer: str) -> None:
    alarm = by_name(rec, "aws:cloudwatch/metricAlarm:MetricAlarm",
                    f"{NAMES.dlq(consumer)}-not-empty")
    topic = by_name(rec, "aws:sns/topic:Topic", NAMES.alarms_topic())
    assert alarm.inputs["namespace"] == "AWS/SQS"
    assert alarm.inputs["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm.inputs["dimensions"] == {"QueueName": NAMES.dlq(consumer)}
    assert (alarm.inputs["comparisonOperator"], alarm.inputs["threshold"]) == (
        "GreaterThanThreshold", 0)
    assert alarm.inputs["alarmActions"] == [out(topic)]


def test_alarm_email_subscription_only_when_set(rec: Recorded) -> None:
    assert rec.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    with_email = run_program({"cloud": "aws", "alarmEmail": "ops@example.com"}, STACK,
                             fake=realistic_fake, secrets=("alarmEmail",))
    sub = with_email.one("aws:sns/topicSubscription:TopicSubscription")
    topic = by_name(with_email, "aws:sns/topic:Topic", NAMES.alarms_topic())
    assert (sub.inputs["protocol"], sub.inputs["endpoint"]) == ("email", "ops@example.com")
    assert sub.inputs["topic"] == out(topic)
    assert "endpoint" in sub.secret_inputs
    assert "ops@example.com" not in json.dumps(with_email.outputs)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_consumer_function(rec: Recorded, consumer: str) -> None:
    name = NAMES.function(consumer)
    fn = function(rec, name)
    log_group = by_name(rec, "aws:cloudwatch/logGroup:LogGroup", f"/aws/lambda/{name}")
    role = by_name(rec, "aws:iam/role:Role", Names.role(name))
    assert fn.inputs["runtime"] == "python3.12"
    assert (fn.inputs["memorySize"], fn.inputs["timeout"]) == (256, 30)
    assert fn.inputs["tracingConfig"] == {"mode": "Active"}
    assert fn.inputs["loggingConfig"]["logGroup"] == log_group.inputs["name"]
    assert log_group.inputs["retentionInDays"] == 14
    assert fn.inputs["role"] == out(role)
    assert fn.inputs["handler"] == topology.SQS_HANDLER
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"}
    settings = Settings.from_env(fn.inputs["environment"]["variables"])
    assert settings.consumer == consumer
    assert settings.dlq_url == out(queue(rec, NAMES.dlq(consumer)), "url")
    assert dict(settings.tables) == {t: NAMES.table(t)
                                     for t in topology.consumer_tables(APP.consumer(consumer))}


def test_one_role_per_function(rec: Recorded) -> None:
    roles = [f.inputs["role"] for f in rec.of_type("aws:lambda/function:Function")]
    assert len(set(roles)) == len(roles)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_consumer_policy_names_exact_arns(rec: Recorded, consumer: str) -> None:
    spec = APP.consumer(consumer)
    name = NAMES.function(consumer)
    log_arn = out(by_name(rec, "aws:cloudwatch/logGroup:LogGroup", f"/aws/lambda/{name}"))
    expected: dict[str, tuple[list[str], list[str]]] = {
        # Log writes are authorised on the streams, never on the bare log-group ARN.
        "OwnLogStreams": (["logs:CreateLogStream", "logs:PutLogEvents"],
                          [f"{log_arn}:log-stream:*"]),
        "XRay": (sorted(topology.XRAY_ACTIONS), ["*"]),
        "ConsumeOwnQueue": (sorted(topology.QUEUE_CONSUME_ACTIONS),
                            [out(queue(rec, NAMES.queue(consumer)))]),
        "DeadLetterPermanentErrors": (["sqs:SendMessage"], [out(queue(rec, NAMES.dlq(consumer)))]),
        "Tables": (sorted(topology.TABLE_ACTIONS), sorted(
            out(by_name(rec, "aws:dynamodb/table:Table", NAMES.table(t)))
            for t in topology.consumer_tables(spec))),
    }
    if spec.emits:
        expected["PublishToBus"] = (["events:PutEvents"],
                                    [out(rec.one("aws:cloudwatch/eventBus:EventBus"))])
    if spec.notifies:
        expected["Notify"] = (["sns:Publish"], [out(by_name(
            rec, "aws:sns/topic:Topic", NAMES.notifications_topic()))])
    if spec.starts_saga:
        expected["StartSaga"] = (["states:StartExecution"],
                                 [out(rec.one("aws:sfn/stateMachine:StateMachine"))])
    expected.update(_bucket_and_scan_statements(rec, spec))
    assert statements(role_policy(rec, name)) == expected


def _uploads(rec: Recorded) -> list[str]:
    """S3 names of the buckets whose uploads are events (as recorded)."""
    return [b.inputs["bucket"] for b in rec.of_type("aws:s3/bucket:Bucket")
            if any(b.inputs["bucket"].endswith(f"-{x.name}-{ACCOUNT}")
                   for x in APP.buckets if x.events)]


def _bucket_and_scan_statements(rec: Recorded, spec: Consumer
                                ) -> dict[str, tuple[list[str], list[str]]]:
    """Objects of exactly the buckets it reads (declared + claim check) and, when it
    publishes, writes (claim check); Scan only on the tables it declares it scans."""
    arn = {b.name: f"arn:aws:s3:::{b.name}" for b in APP.buckets}
    arn = {x.name: "arn:aws:s3:::" + next(
        r.inputs["bucket"] for r in rec.of_type("aws:s3/bucket:Bucket")
        if r.inputs["bucket"].endswith(f"-{x.name}-{ACCOUNT}")) for x in APP.buckets}
    claims = APP.claim_check_bucket()
    out: dict[str, tuple[list[str], list[str]]] = {}
    if spec.scans:
        out["ScanTables"] = (["dynamodb:Scan"], sorted(
            out_arn for out_arn in (out_(by_name(rec, "aws:dynamodb/table:Table",
                                                 NAMES.table(t))) for t in spec.scans)))
    read = sorted({*spec.buckets, *([claims.name] if claims else [])})
    if read:
        out["ReadBuckets"] = (["s3:GetObject"], sorted(f"{arn[b]}/*" for b in read))
    if claims and spec.emits:
        out["WriteClaimChecks"] = (["s3:PutObject"], [f"{arn[claims.name]}/*"])
    return out


def out_(resource: RecordedResource) -> Any:
    return out(resource)


def _wildcards(policy: Mapping[str, Any]) -> Iterable[tuple[list[str], list[str]]]:
    for actions, resources in statements(policy).values():
        if any("*" in a for a in actions) or any("*" in r for r in resources):
            yield actions, resources


def test_no_iam_wildcard_except_xray_and_log_streams(rec: Recorded) -> None:
    allowed_star_actions = set(topology.STAR_RESOURCE_ACTIONS)
    for policy in rec.of_type("aws:iam/rolePolicy:RolePolicy"):
        document = json.loads(policy.inputs["policy"])
        for actions, resources in _wildcards(document):
            assert not any("*" in a for a in actions), actions
            if resources == ["*"]:
                assert set(actions) <= allowed_star_actions, actions
                # Log delivery only for the state machine's role (Step Functions logging).
                if set(actions) & set(topology.LOG_DELIVERY_ACTIONS):
                    assert "states.amazonaws.com" in json.dumps(
                        _role_of(rec, policy).inputs["assumeRolePolicy"])
            elif all(r.startswith("arn:aws:s3:::") for r in resources):
                # Objects of exact buckets (object keys cannot be listed ahead of time).
                assert set(actions) <= {"s3:GetObject", "s3:PutObject"}, actions
                assert all(r.endswith("/*") and "*" not in r[:-2] for r in resources)
            else:  # the streams of the function's own log group, and nothing else
                assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"]
                [stream] = resources
                assert stream.endswith(":log-stream:*") and ":log-group:/aws/lambda/" in stream


def _role_of(rec: Recorded, policy: RecordedResource) -> RecordedResource:
    [role] = [r for r in rec.of_type("aws:iam/role:Role") if r.id == policy.inputs["role"]]
    return role


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_event_source_mapping(rec: Recorded, consumer: str) -> None:
    fn = function(rec, NAMES.function(consumer))
    [mapping] = [m for m in rec.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
                 if m.inputs["functionName"] == out(fn)]
    assert mapping.inputs["eventSourceArn"] == out(queue(rec, NAMES.queue(consumer)))
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.inputs["batchSize"] == 10
    assert "scalingConfig" not in mapping.inputs


def test_maximum_concurrency_and_batch_size_from_config() -> None:
    rec = deploy(maxConcurrency=5, batchSize=50)
    for mapping in rec.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
        assert mapping.inputs["scalingConfig"] == {"maximumConcurrency": 5}
        assert mapping.inputs["batchSize"] == 50
        assert mapping.inputs["maximumBatchingWindowInSeconds"] == 1



def test_a_consumers_own_batch_size_wins_over_the_stack_default() -> None:
    """`Consumer.batch_size` reaches that consumer's event source; the others keep the
    stack's `batchSize`."""
    first = APP.consumers[0]
    app = dataclasses.replace(APP, consumers=(dataclasses.replace(first, batch_size=100),
                                              *APP.consumers[1:]))
    rec = run_program({"cloud": "aws", "batchSize": 5}, STACK, fake=realistic_fake, app=app)
    sizes = {}
    for consumer in APP.consumers:
        fn = function(rec, NAMES.function(consumer.name))
        [mapping] = [m for m in rec.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
                     if m.inputs["functionName"] == out(fn)]
        sizes[consumer.name] = (mapping.inputs["batchSize"],
                                mapping.inputs.get("maximumBatchingWindowInSeconds"))
    assert sizes.pop(first.name) == (100, 1)
    assert set(sizes.values()) == {(5, None)}

# --- tables, topics -------------------------------------------------------------------------


@pytest.mark.parametrize("table", APP.tables)
def test_tables(rec: Recorded, table: str) -> None:
    t = by_name(rec, "aws:dynamodb/table:Table", NAMES.table(table))
    assert t.inputs["billingMode"] == "PAY_PER_REQUEST"
    assert t.inputs["pointInTimeRecovery"] == {"enabled": True}
    assert t.inputs["serverSideEncryption"] == {"enabled": True}
    assert t.inputs["hashKey"] == "pk" and t.inputs["attributes"] == [{"name": "pk", "type": "S"}]
    if table == "processed":
        assert t.inputs["ttl"] == {"attributeName": "expires_at", "enabled": True}
    else:
        assert "ttl" not in t.inputs


def test_topics_are_encrypted(rec: Recorded) -> None:
    notifications = by_name(rec, "aws:sns/topic:Topic", NAMES.notifications_topic())
    alarms = by_name(rec, "aws:sns/topic:Topic", NAMES.alarms_topic())
    assert notifications.inputs["kmsMasterKeyId"] == "alias/aws/sns"
    key = rec.one("aws:kms/key:Key")
    assert alarms.inputs["kmsMasterKeyId"] == out(key)
    assert key.inputs["enableKeyRotation"] is True
    grants = json.loads(key.inputs["policy"])["Statement"]
    assert {"Service": "cloudwatch.amazonaws.com"} in [g["Principal"] for g in grants]


# --- saga -----------------------------------------------------------------------------------


def test_state_machine_is_compiled_from_the_saga(rec: Recorded) -> None:
    machine = rec.one("aws:sfn/stateMachine:StateMachine")
    steps = function(rec, NAMES.saga_function("order"))
    assert machine.inputs["type"] == "STANDARD"
    assert json.loads(machine.inputs["definition"]) == asl.compile_saga(APP.saga, out(steps))
    log_group = by_name(rec, "aws:cloudwatch/logGroup:LogGroup",
                        Names.state_machine_log_group(NAMES.state_machine("order")))
    # Errors only, and never the execution's input and output (the orders) in the logs.
    assert machine.inputs["loggingConfiguration"] == {
        "level": "ERROR", "includeExecutionData": False,
        "logDestination": f"{out(log_group)}:*"}
    assert machine.inputs["tracingConfiguration"] == {"enabled": True}
    assert steps.inputs["handler"] == topology.STEP_HANDLER
    assert steps.inputs["tracingConfig"] == {"mode": "Active"}


def test_state_machine_role_invokes_exactly_the_saga_functions(rec: Recorded) -> None:
    machine = rec.one("aws:sfn/stateMachine:StateMachine")
    role = [r for r in rec.of_type("aws:iam/role:Role") if out(r) == machine.inputs["roleArn"]]
    [role_resource] = role
    assert "states.amazonaws.com" in role_resource.inputs["assumeRolePolicy"]
    policy = role_policy(rec, NAMES.state_machine("order"))
    invoked = asl.task_functions(json.loads(machine.inputs["definition"]))
    assert statements(policy)["InvokeSagaSteps"] == (["lambda:InvokeFunction"], sorted(invoked))
    assert invoked == {out(function(rec, NAMES.saga_function("order")))}


def test_saga_function_policy(rec: Recorded) -> None:
    name = NAMES.saga_function("order")
    got = statements(role_policy(rec, name))
    assert got["Tables"][1] == sorted(out(by_name(rec, "aws:dynamodb/table:Table",
                                                  NAMES.table(t)))
                                      for t in topology.saga_tables(APP))
    assert got["PublishToBus"] == (["events:PutEvents"],
                                   [out(rec.one("aws:cloudwatch/eventBus:EventBus"))])
    assert "ConsumeOwnQueue" not in got and "StartSaga" not in got


def test_workflow_triggered_starts_the_saga_one_execution_per_order(rec: Recorded) -> None:
    """The orders consumer takes Workflow Triggered and is the starter: its settings and
    policy name the state machine; the execution name is the saga id (order-<id>)."""
    orders = function(rec, NAMES.function("orders"))
    machine = rec.one("aws:sfn/stateMachine:StateMachine")
    settings = Settings.from_env(orders.inputs["environment"]["variables"])
    assert settings.state_machine_arn == out(machine)
    assert statements(role_policy(rec, NAMES.function("orders")))["StartSaga"] == (
        ["states:StartExecution"], [out(machine)])


def test_a_failed_saga_raises_an_alarm(rec: Recorded) -> None:
    alarm = by_name(rec, "aws:cloudwatch/metricAlarm:MetricAlarm",
                    f"{NAMES.state_machine('order')}-needs-attention")
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == (
        "AWS/States", "ExecutionsFailed")
    assert alarm.inputs["dimensions"] == {
        "StateMachineArn": out(rec.one("aws:sfn/stateMachine:StateMachine"))}


# --- code -------------------------------------------------------------------------------------


def test_every_function_runs_the_built_archive(rec: Recorded) -> None:
    expected = base64.b64encode(hashlib.sha256(build_zip()).digest()).decode()
    for fn in rec.of_type("aws:lambda/function:Function"):
        assert fn.inputs["sourceCodeHash"] == expected
        archive = fn.inputs["code"]
        assert isinstance(archive, pulumi.FileArchive)
        assert Path(archive.path).read_bytes() == build_zip()  # the program built it
        assert fn.inputs["architectures"] == ["arm64"]


# --- optional HTTP ingress ----------------------------------------------------------------------


def test_no_api_by_default(rec: Recorded) -> None:
    assert not [r for r in rec.resources if r.type.startswith("aws:apigatewayv2")]
    assert "apiUrl" not in rec.outputs


def test_api_posts_events_through_an_iam_authorised_route() -> None:
    rec = deploy(api=True)
    route = rec.one("aws:apigatewayv2/route:Route")
    integration = rec.one("aws:apigatewayv2/integration:Integration")
    ingest = function(rec, NAMES.ingest_function())
    assert route.inputs["routeKey"] == "POST /events"
    assert route.inputs["authorizationType"] == "AWS_IAM"
    assert route.inputs["target"] == f"integrations/{integration.id}"
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["integrationUri"] == out(ingest, "invokeArn")
    assert ingest.inputs["handler"] == topology.API_HANDLER
    permission = rec.one("aws:lambda/permission:Permission")
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["sourceArn"] == \
        f"arn:aws:execute-api:us-east-1:{ACCOUNT}:abc123/$default/POST/events"
    assert statements(role_policy(rec, NAMES.ingest_function()))["PublishToBus"] == (
        ["events:PutEvents"], [out(rec.one("aws:cloudwatch/eventBus:EventBus"))])
    assert rec.outputs["apiUrl"] == "https://abc123.execute-api.us-east-1.amazonaws.com/events"


# --- generated from the app description ---------------------------------------------------------


def test_adding_a_consumer_adds_its_whole_route() -> None:
    audit = Consumer("audit", lambda ctx: None, consumes=(ORDER_COMPLETED,),
                     description="Keeps an audit trail")
    app = dataclasses.replace(APP, consumers=(*APP.consumers, audit))
    rec = run_program({"cloud": "aws"}, STACK, fake=realistic_fake, app=app)
    rule = by_name(rec, "aws:cloudwatch/eventRule:EventRule", NAMES.rule("audit"))
    assert json.loads(rule.inputs["eventPattern"]) == {"source": ["orders"],
                                                       "detail-type": ["Order Completed"]}
    assert queue(rec, NAMES.queue("audit")) and queue(rec, NAMES.dlq("audit"))
    assert function(rec, NAMES.function("audit"))
    assert rec.types()["aws:lambda/eventSourceMapping:EventSourceMapping"] == \
        len(APP.consumers) + 1


def test_colliding_names_are_refused() -> None:
    clash = Consumer("order-saga-steps", lambda ctx: None, consumes=(ORDER_COMPLETED,))
    app = App(name="x", catalog=CATALOG, consumers=(clash,), saga=APP.saga, tables=APP.tables)
    with pytest.raises(ValueError, match="function names collide"):
        run_program({"cloud": "aws"}, STACK, app=app)


# --- config errors ----------------------------------------------------------------------


@pytest.mark.parametrize(("config", "fragment"), [
    ({"maxDeliveries": "0"}, "switchyard:maxDeliveries must be between 1 and 1000, got 0"),
    ({"maxConcurrency": "1"}, "switchyard:maxConcurrency must be between 2 and 1000 on aws"),
    ({"logRetentionDays": "10"}, "CloudWatch Logs retention periods"),
    ({"timeout": "0"}, "switchyard:timeout must be between 1 and 540, got 0"),
])
def test_bad_config_is_a_clear_error_before_any_resource(
    config: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        run_program({"cloud": "aws", **config}, STACK)
    assert fragment in str(caught.value)


def test_unknown_cloud_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="must be 'aws' or 'gcp', got 'azure'"):
        run_program({"cloud": "azure"}, STACK)


def test_a_timeout_too_long_for_sqs_visibility_is_refused() -> None:
    with pytest.raises(ValueError, match="over the SQS maximum"):
        topology.queue_spec(5, 7201)
    with pytest.raises(ValueError, match="max_deliveries must be >= 1"):
        topology.queue_spec(0, 30)


def test_saga_start_registry_is_a_table_only_saga_starters_may_use(rec: Recorded) -> None:
    registry = by_name(rec, "aws:dynamodb/table:Table", NAMES.table("sagas"))
    assert "ttl" not in registry.inputs  # one saga per order, forever
    for consumer in APP.consumers:
        resources = {r for _, (_, rs) in statements(role_policy(
            rec, NAMES.function(consumer.name))).items() for r in rs}
        assert (out(registry) in resources) == consumer.starts_saga, consumer.name


ADOT = "arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-python-amd64-ver-1-32-0:1"


def test_tracing_gives_every_function_the_otel_variables_and_the_layer(rec: Recorded) -> None:
    """Off by default: no OTEL_* variable, no layer. On: every function (consumers, saga
    steps, ingest API) exports to the endpoint with the layer that brings OpenTelemetry."""
    for fn in rec.of_type("aws:lambda/function:Function"):
        assert not [k for k in fn.inputs["environment"]["variables"] if k.startswith("OTEL_")]
        assert not fn.inputs.get("layers")
    traced = deploy(tracesExporter="otlp", otlpEndpoint="http://collector:4318",
                    otelLayer=ADOT, api="true")
    functions = traced.of_type("aws:lambda/function:Function")
    assert len(functions) == len(CONSUMERS) + 2
    for fn in functions:
        variables = fn.inputs["environment"]["variables"]
        assert (variables["OTEL_TRACES_EXPORTER"], variables["OTEL_EXPORTER_OTLP_ENDPOINT"]) \
            == ("otlp", "http://collector:4318")
        assert fn.inputs["layers"] == [ADOT]
        assert Settings.from_env(variables).decline_above_cents  # its own settings kept
    assert traced.none_leaks() == []


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"tracesExporter": "otlp"}, "tracesExporter otlp on aws needs switchyard:otelLayer"),
    ({"tracesExporter": "jaeger"}, "tracesExporter must be one of otlp, console, none"),
    ({"otlpEndpoint": "collector:4318"}, "otlpEndpoint must be an http(s) URL"),
    ({"tracesExporter": "console", "otelLayer": "aws-otel"},
     "otelLayer must be a Lambda layer version ARN"),
])
def test_tracing_config_mistakes_are_config_errors(extra: dict[str, str], fragment: str
                                                   ) -> None:
    with pytest.raises(ConfigError) as caught:
        deploy(**extra)
    assert fragment in str(caught.value)
