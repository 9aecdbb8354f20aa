"""The dev-gcp stack under Pulumi mocks: every resource and property the GCP
side of the design asks for (README.md, "What each cloud gets").

Properties are checked per consumer (parametrised), from the app description, so a new
consumer is covered without touching this file.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest
import yaml

from adapters.gcp.replay import replay_subscription
from adapters.gcp.topology import data_layout, topology
from adapters.gcp.workflows import compile_saga
from adapters.stack_outputs import GcpOutputs
from adapters.stack_outputs import parse as parse_outputs
from handlers.app import APP
from handlers.core.engine import PROCESSED
from infra.config import ConfigError
from infra.gcp.components import SERVICES
from tests.infra.pulumi_harness import FAKE_PROJECT_NUMBER, Recorded, RecordedResource, run_program

PROJECT, REGION, PREFIX = "switchyard-dev", "us-central1", "switchyard-dev-gcp"
DEV = {"cloud": "gcp", "gcp:project": PROJECT, "gcp:region": REGION}
AGENT = f"serviceAccount:service-{FAKE_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
TOP = topology(APP, PREFIX)
LAYOUT = data_layout(APP, PREFIX)
CONSUMERS = APP.consumer_names()

T_TOPIC = "gcp:pubsub/topic:Topic"
T_SUB = "gcp:pubsub/subscription:Subscription"
T_TOPIC_IAM = "gcp:pubsub/topicIAMMember:TopicIAMMember"
T_SUB_IAM = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
T_FUNCTION = "gcp:cloudfunctionsv2/function:Function"
T_ACCOUNT = "gcp:serviceaccount/account:Account"
T_RUN_IAM = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
T_PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
T_ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"


@functools.cache
def dev(**extra: Any) -> Recorded:
    return run_program({**DEV, **extra}, "dev-gcp")


def email(account_id: str) -> str:
    return f"{account_id}@{PROJECT}.iam.gserviceaccount.com"


#: A Cloud Run service's default URL: https://<service>-<project hash>-<region code>.a.run.app
RUN_APP = re.compile(r"^https://(?P<service>[a-z0-9-]+)-[a-z0-9]{10}-[a-z]{2}\.a\.run\.app$")


def url(function: str, rec: Recorded | None = None) -> str:
    """The function's serviceConfig.uri as the (realistic) mock reports it: its Cloud Run
    service's run.app URL, the only URL internal callers may use."""
    fn = by_name(rec or dev(), T_FUNCTION, function)
    uri = fn.outputs["serviceConfig"]["uri"]
    match = RUN_APP.match(uri)
    assert match and match["service"] == function, uri
    assert fn.outputs["url"].endswith(f".cloudfunctions.net/{function}")  # the wrong one
    return str(uri)


def by_name(rec: Recorded, type_: str, name: str) -> RecordedResource:
    found = [r for r in rec.of_type(type_) if r.inputs.get("name") == name]
    assert len(found) == 1, (type_, name, [r.inputs.get("name") for r in rec.of_type(type_)])
    return found[0]


def grants(rec: Recorded, type_: str, member: str) -> list[dict[str, Any]]:
    return [r.inputs for r in rec.of_type(type_) if r.inputs["member"] == member]


# --- whole stack -------------------------------------------------------------------------


def test_every_resource_is_inside_the_stack_component_and_nothing_leaks() -> None:
    rec = dev()
    stack = rec.one("switchyard:gcp:Stack", PREFIX)
    assert {r.urn for r in rec.descendants(stack)} == {r.urn for r in rec.resources} - {stack.urn}
    assert rec.none_leaks() == []
    assert not [r for r in rec.resources if r.type.startswith("aws:")]
    for component in (r for r in rec.resources if not r.custom):
        assert component.urn in rec.component_outputs, component.name


def test_resource_inventory() -> None:
    counts = dev().types()
    n = len(CONSUMERS)
    assert counts[T_FUNCTION] == n + 1  # consumers + saga steps
    assert counts[T_TOPIC] == 2 + n  # bus, notifications, a dead-letter topic each
    assert counts[T_SUB] == 2 * n + 1  # push + dead-letter pull per consumer, replay
    assert counts[T_ACCOUNT] == 2 * n + 2  # function + push identity each; saga; workflow
    assert counts["gcp:workflows/workflow:Workflow"] == 1
    assert counts["gcp:firestore/database:Database"] == len(LAYOUT.databases)
    assert counts[T_ALERT] == n + 1
    assert counts["gcp:projects/service:Service"] == len(SERVICES)


def test_project_services_are_enabled() -> None:
    rec = dev()
    enabled = {r.inputs["service"] for r in rec.of_type("gcp:projects/service:Service")}
    for api in ("pubsub", "cloudfunctions", "run", "cloudbuild", "artifactregistry",
                "firestore", "workflows", "monitoring"):
        assert f"{api}.googleapis.com" in enabled
    assert all(r.inputs["disableOnDestroy"] is False
               for r in rec.of_type("gcp:projects/service:Service"))


def test_bus_and_notification_topics() -> None:
    rec = dev()
    bus = by_name(rec, T_TOPIC, f"{PREFIX}-events")
    assert bus.inputs["messageRetentionDuration"] == f"{7 * 86400}s"
    notes = by_name(rec, T_TOPIC, f"{PREFIX}-notifications")
    assert notes.inputs["messageRetentionDuration"] == f"{7 * 86400}s"
    assert dev(archiveDays="3").one(T_TOPIC, f"{PREFIX}-events").inputs[
        "messageRetentionDuration"] == f"{3 * 86400}s"


def test_firestore_native_with_ttl_on_dedupe_records() -> None:
    rec = dev()
    dbs = {d.inputs["name"]: d.inputs for d in rec.of_type("gcp:firestore/database:Database")}
    assert set(dbs) == set(LAYOUT.databases)
    for db in dbs.values():
        assert db["type"] == "FIRESTORE_NATIVE" and db["locationId"] == REGION
        assert db["pointInTimeRecoveryEnablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
    ttls = {f.inputs["database"]: f.inputs for f in rec.of_type("gcp:firestore/field:Field")}
    # Every database some function keeps its idempotency records in has the TTL policy.
    homes = {LAYOUT.saga.home, *LAYOUT.saga.steps.values(),
             *(c.home for c in LAYOUT.consumers.values())}
    assert set(ttls) == homes and homes <= set(dbs)
    for ttl in ttls.values():
        assert (ttl["collection"], ttl["field"]) == (PROCESSED, "expires_at")
        assert "ttlConfig" in ttl


def test_each_table_lives_in_one_database_and_writes_together_share_one() -> None:
    placed = [t for tables in LAYOUT.databases.values() for t in tables]
    assert sorted(placed) == sorted(t for t in APP.tables if t != PROCESSED)
    where = {t: db for db, tables in LAYOUT.databases.items() for t in tables}
    # One consumer's (one saga step's) tables commit in one transaction with its record.
    for consumer in APP.consumers:
        assert {where[t] for t in consumer.stores} <= {LAYOUT.consumers[consumer.name].home}
    for step in APP.saga.all_steps():
        assert {where[t] for t in step.stores} == {LAYOUT.saga.steps[step.name]}


def test_source_bucket_is_private_and_holds_the_zip() -> None:
    rec = dev()
    bucket = _source_bucket(rec).inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    obj = rec.one("gcp:storage/bucketObject:BucketObject").inputs
    assert obj["bucket"] == bucket["name"] and obj["name"].endswith(".zip")
    # Nobody is granted the source bucket (the app's buckets have their own grants).
    assert not [m for m in rec.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
                if m.inputs["bucket"] == bucket["name"]]


# --- per consumer ------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_consumer_function(consumer: str) -> None:
    rec, route = dev(), TOP.route(consumer)
    fn = by_name(rec, T_FUNCTION, route.function).inputs
    assert fn["location"] == REGION
    assert fn["buildConfig"]["runtime"] == "python312"
    assert fn["buildConfig"]["entryPoint"] == "consume"
    source = fn["buildConfig"]["source"]["storageSource"]
    assert source["bucket"] == _source_bucket(rec).inputs["name"]
    service = fn["serviceConfig"]
    assert service["availableMemory"] == "256M" and service["timeoutSeconds"] == 30
    assert service["ingressSettings"] == "ALLOW_INTERNAL_ONLY"
    assert service["serviceAccountEmail"] == email(route.account_id)
    variables = service["environmentVariables"]
    assert variables["SWITCHYARD_CONSUMER"] == consumer
    assert variables["SWITCHYARD_DEAD_LETTER_TOPIC"] == route.dead_letter_topic
    # The function dead-letters its own last attempt, with the error as the reason.
    assert variables["SWITCHYARD_MAX_DELIVERIES"] == str(route.max_delivery_attempts)
    assert variables["SWITCHYARD_PROJECT"] == PROJECT
    assert ("SWITCHYARD_WORKFLOW" in variables) == APP.consumer(consumer).starts_saga
    data = LAYOUT.consumers[consumer]
    assert variables["SWITCHYARD_DATABASE"] == data.home
    assert json.loads(variables["SWITCHYARD_TABLE_DATABASES"]) == dict(data.tables)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_push_subscription(consumer: str) -> None:
    rec, route = dev(), TOP.route(consumer)
    sub = by_name(rec, T_SUB, route.subscription).inputs
    assert sub["topic"] == f"{PREFIX}-events"
    types = sorted(APP.consumer(consumer).consumes)
    assert sub["filter"] == " OR ".join(f'attributes.ce-type = "{t}"' for t in types)
    assert sub["ackDeadlineSeconds"] >= 30
    push = sub["pushConfig"]
    # Internal-ingress functions take Pub/Sub pushes only at their run.app URL, and the
    # token's audience must be what the service accepts: that same URL.
    assert push["pushEndpoint"] == url(route.function, rec)
    assert "cloudfunctions.net" not in json.dumps(sub)
    assert push["oidcToken"] == {"serviceAccountEmail": email(route.invoker_account_id),
                                 "audience": push["pushEndpoint"]}
    assert sub["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert sub["deadLetterPolicy"] == {
        "deadLetterTopic": f"projects/{PROJECT}/topics/{route.dead_letter_topic}",
        "maxDeliveryAttempts": 5}
    assert sub["expirationPolicy"] == {"ttl": ""}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_dead_letter_topic_has_a_pull_subscription_that_never_expires(consumer: str) -> None:
    rec, route = dev(), TOP.route(consumer)
    by_name(rec, T_TOPIC, route.dead_letter_topic)
    pull = by_name(rec, T_SUB, route.dead_letter_subscription).inputs
    assert pull["topic"] == route.dead_letter_topic
    assert "pushConfig" not in pull and "deadLetterPolicy" not in pull
    assert pull["expirationPolicy"] == {"ttl": ""}
    assert pull["messageRetentionDuration"] == f"{7 * 86400}s"


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_pubsub_service_agent_can_dead_letter(consumer: str) -> None:
    rec, route = dev(), TOP.route(consumer)
    assert {"role": "roles/pubsub.publisher", "topic": route.dead_letter_topic} in [
        {"role": g["role"], "topic": g["topic"]} for g in grants(rec, T_TOPIC_IAM, AGENT)]
    assert {"role": "roles/pubsub.subscriber", "subscription": route.subscription} in [
        {"role": g["role"], "subscription": g["subscription"]}
        for g in grants(rec, T_SUB_IAM, AGENT)]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_push_identity_may_invoke_only_its_function(consumer: str) -> None:
    rec, route = dev(), TOP.route(consumer)
    member = f"serviceAccount:{email(route.invoker_account_id)}"
    invokes = [g for t in (T_RUN_IAM, T_PROJECT_IAM, T_TOPIC_IAM, T_SUB_IAM)
               for g in grants(rec, t, member)]
    assert invokes == [{"project": PROJECT, "location": REGION, "name": route.function,
                        "role": "roles/run.invoker", "member": member}]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_function_identity_has_exactly_what_the_consumer_declares(consumer: str) -> None:
    rec, route, spec = dev(), TOP.route(consumer), APP.consumer(consumer)
    member = f"serviceAccount:{email(route.account_id)}"
    topics = sorted(g["topic"] for g in grants(rec, T_TOPIC_IAM, member))
    expected = [route.dead_letter_topic]
    if spec.emits:
        expected.append(f"{PREFIX}-events")
    if spec.notifies:
        expected.append(f"{PREFIX}-notifications")
    assert topics == sorted(expected)
    assert all(g["role"] == "roles/pubsub.publisher" for g in grants(rec, T_TOPIC_IAM, member))
    project = sorted((g["role"], g["condition"]["expression"])
                     for g in grants(rec, T_PROJECT_IAM, member))
    wf = f'resource.name == "projects/{PROJECT}/locations/{REGION}/workflows/{TOP.workflow}"'
    assert project == sorted(
        [("roles/datastore.user", f'resource.name == "projects/{PROJECT}/databases/{db}"')
         for db in LAYOUT.consumers[consumer].databases]
        + ([("roles/workflows.invoker", wf)] if spec.starts_saga else []))
    assert not grants(rec, T_SUB_IAM, member) and not grants(rec, T_RUN_IAM, member)


def _reachable_tables(rec: Recorded, member: str) -> set[str]:
    """Every table in the databases `member`'s datastore grants name."""
    named = re.compile(rf'^resource\.name == "projects/{PROJECT}/databases/([a-z0-9-]+)"$')
    out: set[str] = set()
    for grant in grants(rec, T_PROJECT_IAM, member):
        if grant["role"].startswith("roles/datastore."):
            match = named.match(grant["condition"]["expression"])
            assert match, grant  # one named database, never the whole project
            out |= set(LAYOUT.databases[match[1]])
    return out


#: What Firestore's per-database IAM cannot narrow further (README.md, "What each cloud
#: gets"): the inventory database holds `audits` too, because inventory-audit declares
#: it with `inventory` and `stock_ledger`, which the inventory consumer writes together.
WIDER_THAN_DECLARED = {"inventory": {"audits"}, "saga": {"audits", "stock_ledger"}}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_function_reaches_only_the_tables_it_declares(consumer: str) -> None:
    rec, spec = dev(), APP.consumer(consumer)
    member = f"serviceAccount:{email(TOP.route(consumer).account_id)}"
    declared = set(spec.stores) | ({"sagas"} if spec.starts_saga else set())
    assert _reachable_tables(rec, member) == declared | WIDER_THAN_DECLARED.get(consumer,
                                                                                set())
    if not declared:  # its own idempotency records only, in a database nobody else has
        [home] = LAYOUT.consumers[consumer].databases
        assert LAYOUT.databases[home] == ()
        holders = [g.inputs["member"] for g in rec.of_type(T_PROJECT_IAM)
                   if g.inputs["role"].startswith("roles/datastore.")
                   and g.inputs["condition"]["expression"].endswith(f'/databases/{home}"')]
        assert holders == [member]


def test_saga_steps_reach_only_the_saga_tables() -> None:
    rec = dev()
    member = f"serviceAccount:{email(TOP.saga_account_id)}"
    assert _reachable_tables(rec, member) == set(APP.saga.stores) | WIDER_THAN_DECLARED["saga"]
    assert LAYOUT.shared_beyond_declared() == {
        k: tuple(sorted(v)) for k, v in WIDER_THAN_DECLARED.items()}
    variables = by_name(rec, T_FUNCTION, TOP.saga_function).inputs["serviceConfig"][
        "environmentVariables"]
    assert json.loads(variables["SWITCHYARD_STEP_DATABASES"]) == dict(LAYOUT.saga.steps)


def test_no_function_identity_holds_a_project_wide_role() -> None:
    """A project-level grant to a function's identity is allowed only where the service has
    no resource-level IAM (Firestore, Workflows), with a condition naming one resource."""
    rec = dev(api=True)
    identities = {f"serviceAccount:{f.inputs['serviceConfig']['serviceAccountEmail']}"
                  for f in rec.of_type(T_FUNCTION)}
    assert len(identities) == len(CONSUMERS) + 2
    one_resource = re.compile(r'^resource\.name == "projects/[^"*]+"$')
    for grant in rec.of_type(T_PROJECT_IAM):
        if grant.inputs["member"] in identities:
            assert grant.inputs["role"] in ("roles/datastore.user", "roles/workflows.invoker")
            assert one_resource.match(grant.inputs["condition"]["expression"]), grant.inputs


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_dead_letter_backlog_alert(consumer: str) -> None:
    route = TOP.route(consumer)
    policies = [p.inputs for p in dev().of_type(T_ALERT)
                if f'subscription_id = "{route.dead_letter_subscription}"'
                in p.inputs["conditions"][0]["conditionThreshold"]["filter"]]
    assert len(policies) == 1
    threshold = policies[0]["conditions"][0]["conditionThreshold"]
    assert "num_undelivered_messages" in threshold["filter"]
    assert threshold["comparison"] == "COMPARISON_GT" and threshold["thresholdValue"] == 0
    assert "notificationChannels" not in policies[0]  # no alarmEmail set


# --- saga ------------------------------------------------------------------------------------


def test_workflow_is_compiled_from_the_saga_with_its_own_identity() -> None:
    rec = dev()
    workflow = rec.one("gcp:workflows/workflow:Workflow").inputs
    assert workflow["name"] == TOP.workflow and workflow["region"] == REGION
    assert workflow["serviceAccount"] == email(TOP.workflow_account_id)
    source = yaml.safe_load(workflow["sourceContents"])
    step_uri = url(TOP.saga_function, rec)
    assert source == compile_saga(APP.saga, step_uri, timeout_s=60)
    assert "cloudfunctions.net" not in workflow["sourceContents"]
    urls = {c["try"]["args"]["url"] for step in source["main"]["steps"]
            for c in step.values() if "try" in c}
    assert urls == {step_uri}
    calls = source["run_step"]["steps"][0]["call_function"]
    # OIDC with the called (run.app) URL as the audience: what Cloud Run accepts.
    assert calls["call"] == "http.post" and calls["args"]["url"] == "${url}"
    assert calls["args"]["auth"] == {"type": "OIDC", "audience": "${url}"}
    assert "Idempotency-Key" in calls["args"]["headers"]
    member = f"serviceAccount:{email(TOP.workflow_account_id)}"
    assert grants(rec, T_RUN_IAM, member) == [{
        "project": PROJECT, "location": REGION, "name": TOP.saga_function,
        "role": "roles/run.invoker", "member": member}]
    steps = by_name(rec, T_FUNCTION, TOP.saga_function).inputs
    assert steps["buildConfig"]["entryPoint"] == "saga_step"
    assert steps["serviceConfig"]["ingressSettings"] == "ALLOW_INTERNAL_ONLY"


def test_invokers_are_exactly_the_callers_and_only_run_invoker() -> None:
    """Gen2 functions are invoked through their Cloud Run service: run.invoker on that
    service, for the push identity of its consumer (or the workflow, for the saga steps)."""
    rec = dev()
    members: dict[str, set[str]] = {}
    for grant in rec.of_type(T_RUN_IAM):
        assert grant.inputs["role"] == "roles/run.invoker"
        members.setdefault(grant.inputs["name"], set()).add(grant.inputs["member"])
    expected = {TOP.route(c).function:
                {f"serviceAccount:{email(TOP.route(c).invoker_account_id)}"}
                for c in CONSUMERS}
    expected[TOP.saga_function] = {f"serviceAccount:{email(TOP.workflow_account_id)}"}
    assert members == expected
    assert not [r for r in rec.resources if "cloudfunctions.invoker" in repr(r.inputs)]


def test_saga_needs_attention_alert() -> None:
    filters = [p.inputs["conditions"][0]["conditionThreshold"]["filter"]
               for p in dev().of_type(T_ALERT)]
    assert any(f'workflow_id = "{TOP.workflow}"' in f and 'status = "FAILED"' in f
               for f in filters)


# --- options -------------------------------------------------------------------------------


def test_alarm_email_gets_a_channel_on_every_policy_and_stays_secret() -> None:
    rec = run_program({**DEV, "alarmEmail": "ops@example.com"}, "dev-gcp",
                      secrets=("alarmEmail",))
    channel = rec.one("gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["type"] == "email"
    assert channel.inputs["labels"] == {"email_address": "ops@example.com"}
    assert "labels.email_address" in channel.secret_inputs or "labels" in channel.secret_inputs
    for policy in rec.of_type(T_ALERT):
        assert len(policy.inputs["notificationChannels"]) == 1
    assert "ops@example.com" not in repr(rec.outputs)


def test_api_ingress_is_an_authenticated_https_function() -> None:
    rec = dev(api=True)
    fn = by_name(rec, T_FUNCTION, TOP.ingress_function).inputs
    assert fn["buildConfig"]["entryPoint"] == "ingest"
    assert fn["serviceConfig"]["ingressSettings"] == "ALLOW_ALL"
    assert not [g for t in (T_RUN_IAM,) for g in grants(rec, t, "allUsers")]
    member = f"serviceAccount:{email(TOP.ingress_account_id)}"
    assert [g["topic"] for g in grants(rec, T_TOPIC_IAM, member)] == [f"{PREFIX}-events"]
    assert rec.outputs["apiUrl"] == url(TOP.ingress_function, rec)
    assert not [f for f in dev().of_type(T_FUNCTION)
                if f.inputs["name"] == TOP.ingress_function]


def test_settings_flow_into_every_function_and_subscription() -> None:
    rec = dev(maxDeliveries="12", memory="512", timeout="120")
    for consumer in CONSUMERS:
        route = TOP.route(consumer)
        sub = by_name(rec, T_SUB, route.subscription).inputs
        assert sub["deadLetterPolicy"]["maxDeliveryAttempts"] == 12
        assert sub["ackDeadlineSeconds"] >= 120
        service = by_name(rec, T_FUNCTION, route.function).inputs["serviceConfig"]
        assert (service["availableMemory"], service["timeoutSeconds"]) == ("512M", 120)


def test_max_concurrency_caps_instances() -> None:
    """`maxConcurrency` becomes every function's max_instance_count (one request per
    instance: gen2's default concurrency), as it caps the SQS pollers on AWS."""
    assert all("maxInstanceCount" not in f.inputs["serviceConfig"]
               for f in dev().of_type(T_FUNCTION))
    rec = dev(maxConcurrency="20")
    functions = rec.of_type(T_FUNCTION)
    assert len(functions) == len(CONSUMERS) + 1
    assert all(f.inputs["serviceConfig"]["maxInstanceCount"] == 20 for f in functions)


def test_stack_outputs() -> None:
    outputs = dev().outputs
    assert outputs["busTopic"] == f"{PREFIX}-events"
    assert outputs["notificationsTopic"] == f"{PREFIX}-notifications"
    assert outputs["subscriptions"] == {c: TOP.route(c).subscription for c in CONSUMERS}
    assert outputs["deadLetterSubscriptions"] == {
        c: TOP.route(c).dead_letter_subscription for c in CONSUMERS}
    assert outputs["functionUrls"] == {**{c: url(TOP.route(c).function) for c in CONSUMERS},
                                       "saga": url(TOP.saga_function)}
    assert outputs["workflow"] == TOP.workflow
    assert outputs["databases"] == {d: list(t) for d, t in LAYOUT.databases.items()}


def test_operations_output_and_the_replay_subscription() -> None:
    """The `switchyard` output parses into what dlq/replay/status need, for every consumer
    of the app; the replay subscription it names exists, on the bus, keeping acked messages
    as long as the bus topic keeps them (capped at Pub/Sub's 7 days)."""
    rec = dev()
    ops = parse_outputs(rec.outputs["switchyard"], "dev-gcp")
    assert isinstance(ops, GcpOutputs)
    assert (ops.project, ops.prefix, ops.bus_topic, ops.workflow) == (
        PROJECT, PREFIX, TOP.bus_topic, TOP.workflow)
    assert [c.name for c in ops.consumers] == sorted(CONSUMERS)
    for consumer in ops.consumers:
        route = TOP.route(consumer.name)
        assert (consumer.subscription, consumer.dead_letter_topic,
                consumer.dead_letter_subscription) == (
            route.subscription, route.dead_letter_topic, route.dead_letter_subscription)
    assert ops.replay_subscription == replay_subscription(PREFIX)
    replay = by_name(rec, T_SUB, ops.replay_subscription).inputs
    assert replay["topic"] == TOP.bus_topic and replay["retainAckedMessages"] is True
    assert replay["messageRetentionDuration"] == f"{min(TOP.message_retention_s, 604800)}s"
    assert "pushConfig" not in replay and "filter" not in replay


# --- invalid config --------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"maxDeliveries": "4"}, "maxDeliveries must be between 5 and 100 on gcp, got 4"),
    ({"maxDeliveries": "101"}, "maxDeliveries must be between 5 and 100 on gcp, got 101"),
    ({"archiveDays": "32"}, "archiveDays must be between 1 and 31 on gcp"),
])
def test_invalid_config_is_a_config_error_not_a_deploy_failure(
        extra: dict[str, str], fragment: str) -> None:
    config = {k: v for k, v in {**DEV, **extra}.items() if v}
    with pytest.raises(ConfigError) as caught:
        run_program(config, "dev-gcp")
    assert fragment in str(caught.value)


def test_project_and_region_default_to_the_provider_s() -> None:
    rec = run_program({"cloud": "gcp"}, "dev-gcp")  # the fake provider's project
    fn = by_name(rec, T_FUNCTION, TOP.route("orders").function).inputs
    assert (fn["project"], fn["location"]) == ("switchyard-test", "us-central1")
    assert rec.none_leaks() == []


def test_timeout_too_long_for_the_ack_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="ack deadline"):
        topology(APP, PREFIX, timeout_s=595)


def test_every_resource_waits_for_the_project_services() -> None:
    rec = dev()
    services = {r.urn for r in rec.of_type("gcp:projects/service:Service")}
    waiting = [r for r in rec.resources if r.custom and r.urn not in services]
    assert waiting and all(services <= set(r.dependencies) for r in waiting), [
        r.name for r in waiting if not services <= set(r.dependencies)]


def _source_bucket(rec: Recorded) -> RecordedResource:
    """The functions' source bucket (the app's own buckets are in test_gcp_sources.py)."""
    [bucket] = [b for b in rec.of_type("gcp:storage/bucket:Bucket")
                if b.name.endswith("-source-bucket")]
    return bucket


def test_readme_database_table_matches_the_layout() -> None:
    """README.md's GCP table of databases says what `data_layout` does."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z<>_-]+)` \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    readme = {name: ({t.strip() for t in tables.split(",")},
                     {g.strip() for g in grantees.split(",")})
              for name, tables, grantees in rows}
    users: dict[str, set[str]] = {}
    for name, data in (*LAYOUT.consumers.items(), ("saga steps", LAYOUT.saga)):
        for db in data.databases:
            users.setdefault(db, set()).add(name)
    for db, tables in LAYOUT.databases.items():
        short = db.removeprefix(f"{PREFIX}-")
        if not tables:  # a consumer's own records
            assert short.endswith("-records") and users[db] == {
                short.removesuffix("-records")}
            continue
        assert readme[short] == (set(tables), users[db]), short
    assert readme["<consumer>-records"][1] == {"that consumer only"}


def test_tracing_gives_every_function_the_otel_variables() -> None:
    assert not [k for f in dev().of_type(T_FUNCTION)
                for k in f.inputs["serviceConfig"]["environmentVariables"]
                if k.startswith("OTEL_")]
    functions = dev(tracesExporter="otlp", otlpEndpoint="https://collector.example:4318",
                    api="true").of_type(T_FUNCTION)
    assert len(functions) == len(CONSUMERS) + 2
    for fn in functions:
        variables = fn.inputs["serviceConfig"]["environmentVariables"]
        assert (variables["OTEL_TRACES_EXPORTER"], variables["OTEL_EXPORTER_OTLP_ENDPOINT"]) \
            == ("otlp", "https://collector.example:4318")


def test_a_lambda_layer_on_gcp_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="otelLayer is for aws"):
        dev(tracesExporter="otlp",
            otelLayer="arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-python:1")
