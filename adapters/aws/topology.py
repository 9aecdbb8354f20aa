"""What the AWS stack looks like, as pure data generated from the app description.

`infra/aws` turns these into Pulumi resources and `tests/aws` into moto resources, so the
names, event patterns, queue attributes, table layouts and IAM documents proven in moto are
exactly the ones deployed. No pulumi and no boto3 here: only the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.aws.buckets import upload_pattern
from adapters.aws.dynamodb_store import KEY_ATTRIBUTE  # every table's one string key
from adapters.aws.settings import Settings
from handlers.core.app import App, Catalog, Consumer
from handlers.core.engine import PROCESSED
from handlers.core.ports import SAGAS
from handlers.core.storage import STORAGE_OBJECT_FINALIZED

#: SQS -> Lambda: AWS asks for a visibility timeout of at least 6x the function timeout,
#: so a batch that is retried inside Lambda is not redelivered while still running.
VISIBILITY_FACTOR: Final = 6
MAX_VISIBILITY_S: Final = 12 * 60 * 60
QUEUE_RETENTION_S: Final = 4 * 24 * 60 * 60
#: Dead letters are kept for the longest SQS allows, so there is time to fix and redrive.
DLQ_RETENTION_S: Final = 14 * 24 * 60 * 60
#: EventBridge -> SQS target retries. The defaults (185 attempts over 24 h) hide a broken
#: target for a day; this gives up after 4 hours and parks the event in the target DLQ.
TARGET_MAX_RETRY_ATTEMPTS: Final = 24
TARGET_MAX_EVENT_AGE_S: Final = 4 * 60 * 60
#: The engine stamps idempotency records with this epoch-seconds attribute.
TTL_ATTRIBUTE: Final = "expires_at"
XRAY_ACTIONS: Final = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
#: What X-Ray active tracing on a state machine also reads (its sampling rules).
XRAY_SAMPLING_ACTIONS: Final = ("xray:GetSamplingRules", "xray:GetSamplingTargets")
#: CloudWatch Logs "vended log delivery" actions Step Functions needs to log to a group.
#: They do not support resource-level permissions (AWS documents Resource "*" for them).
LOG_DELIVERY_ACTIONS: Final = (
    "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
    "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
)  # fmt: skip
#: The one list of actions this stack grants on Resource "*", each with AWS's reason. The
#: Service Authorization Reference lists no resource type for them, so "*" is the only
#: form IAM accepts; every other grant names exact ARNs. tests/infra/test_iam_parliament.py
#: fails on a "*" for any other action, and the policy pack's wildcard rule allows these.
STAR_RESOURCE_ACTIONS: Final[Mapping[str, str]] = {
    **{a: "X-Ray trace upload has no resource-level permissions" for a in XRAY_ACTIONS},
    **{a: "X-Ray sampling rules have no resource-level permissions (Step Functions "
          "tracing reads them)" for a in XRAY_SAMPLING_ACTIONS},
    **{a: "CloudWatch Logs vended log delivery (Step Functions logging to a log group) "
          "supports no resource-level permissions" for a in LOG_DELIVERY_ACTIONS},
}
#: CloudWatch Logs actions that write into a log group. AWS authorises them on the log
#: stream (`<log group ARN>:log-stream:<stream>`), never on the bare log-group ARN that
#: the provider's `arn` output gives: a grant on the bare ARN lets no log line through.
LOG_WRITE_ACTIONS: Final = ("logs:CreateLogStream", "logs:PutLogEvents")
#: Step Functions logging: errors only, without the execution's input and output (the
#: orders themselves) in CloudWatch. ERROR records every failed state and execution,
#: which is what an operator needs next to the needs-attention alarm.
STATE_MACHINE_LOG_LEVEL: Final = "ERROR"
STATE_MACHINE_LOG_EXECUTION_DATA: Final = False
TABLE_ACTIONS: Final = (
    "dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)  # fmt: skip
#: Only consumers that declare `scans` (audits) may read a whole table.
SCAN_ACTIONS: Final = ("dynamodb:Scan",)
QUEUE_CONSUME_ACTIONS: Final = (
    "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
)  # fmt: skip
LAMBDA_RUNTIME: Final = "python3.12"
LAMBDA_ARCHITECTURE: Final = "arm64"
SQS_HANDLER: Final = "adapters.aws.lambda_entry.sqs_handler"
STEP_HANDLER: Final = "adapters.aws.lambda_entry.step_handler"
API_HANDLER: Final = "adapters.aws.lambda_entry.api_handler"
EVENTBRIDGE_HANDLER: Final = "adapters.aws.lambda_entry.eventbridge_handler"


# --- names ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """Physical names of everything in one stack, all derived from the config prefix.

    Explicit names (rather than Pulumi auto-names) make the Lambda log group name known
    before the function exists, so the function's policy can name exactly that group.
    """

    prefix: str

    def bus(self) -> str:
        return f"{self.prefix}-bus"

    def archive(self) -> str:
        return f"{self.prefix}-archive"

    def rule(self, consumer: str) -> str:
        return f"{self.prefix}-{consumer}"

    def queue(self, consumer: str) -> str:
        return f"{self.prefix}-{consumer}"

    def dlq(self, consumer: str) -> str:
        return f"{self.prefix}-{consumer}-dlq"

    def function(self, consumer: str) -> str:
        return f"{self.prefix}-{consumer}"

    @staticmethod
    def role(owner: str) -> str:
        return f"{owner}-role"

    def table(self, table: str) -> str:
        return f"{self.prefix}-{table}"

    def saga_function(self, saga: str) -> str:
        return f"{self.prefix}-{saga}-saga-steps"

    def state_machine(self, saga: str) -> str:
        return f"{self.prefix}-{saga}-saga"

    def ingest_function(self) -> str:
        return f"{self.prefix}-ingest"

    def api(self) -> str:
        return f"{self.prefix}-api"

    def notifications_topic(self) -> str:
        return f"{self.prefix}-notifications"

    def alarms_topic(self) -> str:
        return f"{self.prefix}-alarms"

    @staticmethod
    def function_log_group(function: str) -> str:
        return f"/aws/lambda/{function}"

    @staticmethod
    def state_machine_log_group(state_machine: str) -> str:
        # The /aws/vendedlogs/ prefix keeps CloudWatch's resource policy short.
        return f"/aws/vendedlogs/states/{state_machine}"

    def all_functions(self, app: App, api: bool) -> list[str]:
        names = [self.function(c.name) for c in app.consumers]
        names.append(self.saga_function(app.saga.name))
        if api:
            names.append(self.ingest_function())
        return names

    def check(self, app: App, api: bool) -> None:
        """Two things must never share a name (e.g. a consumer called `order-saga-steps`)."""
        functions = self.all_functions(app, api)
        queues = [self.queue(c.name) for c in app.consumers] + \
                 [self.dlq(c.name) for c in app.consumers]
        for kind, names in (("function", functions), ("queue", queues)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind} names collide: {', '.join(dupes)}")
        owners = [*functions, self.state_machine(app.saga.name)]
        too_long = [n for n in owners if len(self.role(n)) > 64]
        if too_long:
            raise ValueError(f"names too long for IAM roles (64 max): {', '.join(too_long)}")


# --- routing -------------------------------------------------------------------------------


def event_pattern(app: App, consumer: Consumer, upload_buckets: Sequence[str] = ()
                  ) -> dict[str, Any]:
    """The EventBridge pattern matching exactly the (Source, DetailType) pairs it consumes.

    Producers (the seeds, and our publisher) send `Source` = the catalog source and
    `DetailType` = the catalog's detail-type, so that is what is matched. Types from one
    source share a branch; several sources use `$or`, so no cross-product of sources and
    detail-types is matched by accident.
    """
    by_source: dict[str, set[str]] = {}
    for type_ in consumer.consumes:
        spec = app.catalog[type_]
        by_source.setdefault(spec.source, set()).add(spec.detail_type)
    branches: list[dict[str, Any]] = [
        {"source": [source], "detail-type": sorted(detail_types)}
        for source, detail_types in sorted(by_source.items())
    ]
    if STORAGE_OBJECT_FINALIZED in consumer.consumes and upload_buckets:
        # S3's own "Object Created" (forwarded from the default bus), normalised by the
        # Lambda adapter; the catalog branch above still takes already-normalised events.
        branches.append(upload_pattern(list(upload_buckets)))
    if len(branches) == 1:
        return branches[0]
    return {"$or": branches}


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A consumer queue and its dead-letter queue, as both clouds' tools need them."""

    visibility_timeout_s: int
    max_receive_count: int
    retention_s: int = QUEUE_RETENTION_S
    dlq_retention_s: int = DLQ_RETENTION_S
    sse: bool = True  # SQS-managed keys: EventBridge can deliver without a key policy

    def redrive_policy(self, dlq_arn: str) -> str:
        return json.dumps({"deadLetterTargetArn": dlq_arn,
                           "maxReceiveCount": self.max_receive_count})

    @staticmethod
    def redrive_allow_policy(queue_arn: str) -> str:
        """Only the consumer's own queue may redrive into its DLQ."""
        return json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn]})

    def sqs_attributes(self, dlq_arn: str) -> dict[str, str]:
        """CreateQueue attributes for the consumer queue (boto3 / moto)."""
        return {
            "VisibilityTimeout": str(self.visibility_timeout_s),
            "MessageRetentionPeriod": str(self.retention_s),
            "RedrivePolicy": self.redrive_policy(dlq_arn),
            "SqsManagedSseEnabled": "true" if self.sse else "false",
        }

    def dlq_attributes(self) -> dict[str, str]:
        return {
            "MessageRetentionPeriod": str(self.dlq_retention_s),
            "SqsManagedSseEnabled": "true" if self.sse else "false",
        }


def queue_spec(max_deliveries: int, function_timeout_s: int) -> QueueSpec:
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries}")
    visibility = VISIBILITY_FACTOR * function_timeout_s
    if visibility > MAX_VISIBILITY_S:
        raise ValueError(f"a function timeout of {function_timeout_s}s needs a visibility "
                         f"timeout of {visibility}s, over the SQS maximum {MAX_VISIBILITY_S}s")
    return QueueSpec(visibility_timeout_s=visibility, max_receive_count=max_deliveries)


def target_retry_policy() -> dict[str, int]:
    """EventBridge target RetryPolicy (PutTargets spelling)."""
    return {"MaximumRetryAttempts": TARGET_MAX_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": TARGET_MAX_EVENT_AGE_S}


def queue_policy(queue_arn: str, rule_arns: Sequence[str]) -> dict[str, Any]:
    """Resource policy letting only these rules (aws:SourceArn) send to the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OnlyTheConsumerRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": list(rule_arns)}},
        }],
    }


# --- tables --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One DynamoDB table: on-demand, point-in-time recovery, encrypted, TTL if it has one."""

    logical: str
    ttl_attribute: str | None = None
    key: str = KEY_ATTRIBUTE

    def create_table_kwargs(self, physical: str) -> dict[str, Any]:
        """CreateTable arguments (boto3 / moto); PITR and TTL are separate calls there."""
        return {
            "TableName": physical,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": self.key, "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": self.key, "KeyType": "HASH"}],
            "SSESpecification": {"Enabled": True},
        }


def table_specs(app: App) -> list[TableSpec]:
    """Every table the app declares; only the idempotency records expire."""
    return [TableSpec(t, TTL_ATTRIBUTE if t == PROCESSED else None) for t in app.tables]


def consumer_tables(consumer: Consumer) -> list[str]:
    """Tables a consumer touches: what it declares, its idempotency records, and the
    saga-start registry when it starts sagas."""
    return sorted({*consumer.stores, PROCESSED, *([SAGAS] if consumer.starts_saga else [])})


def saga_tables(app: App) -> list[str]:
    return sorted({*app.saga.stores, PROCESSED})


# --- function settings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wiring:
    """Stack-wide values a function may be given (resolved names and ARNs)."""

    table_names: Mapping[str, str]
    bus_name: str
    notification_topic_arn: str
    state_machine_arn: str
    decline_above_cents: int
    max_deliveries: int | None = None
    #: Logical bucket name -> S3 bucket name, and which one is the claim-check bucket.
    bucket_names: Mapping[str, str] = field(default_factory=dict)
    claims_bucket: str | None = None


def consumer_bucket_access(consumer: Consumer, claims_bucket: str | None
                           ) -> tuple[list[str], list[str]]:
    """(read, write) buckets of a consumer: what it declares plus the claim-check bucket
    (read: any event it consumes may be claim-checked; write: only if it publishes)."""
    claims = [claims_bucket] if claims_bucket else []
    read = sorted({*consumer.buckets, *claims})
    write = claims if consumer.emits else []
    return read, write


def consumer_settings(consumer: Consumer, wiring: Wiring, queue_url: str,
                      dlq_url: str) -> Settings:
    """What a consumer's function is told: only what its declaration says it uses."""
    return Settings(
        consumer=consumer.name,
        tables={t: wiring.table_names[t] for t in consumer_tables(consumer)},
        bus_name=wiring.bus_name if consumer.emits else None,
        queue_url=queue_url, dlq_url=dlq_url,
        notification_topic_arn=wiring.notification_topic_arn if consumer.notifies else None,
        state_machine_arn=wiring.state_machine_arn if consumer.starts_saga else None,
        decline_above_cents=wiring.decline_above_cents,
        max_deliveries=wiring.max_deliveries,
        buckets={b: wiring.bucket_names[b] for b in sorted(
            set(sum(consumer_bucket_access(consumer, wiring.claims_bucket), [])))
            if b in wiring.bucket_names},
    )


def saga_settings(app: App, wiring: Wiring) -> Settings:
    claims = wiring.claims_bucket if app.saga.emits else None
    return Settings(
        tables={t: wiring.table_names[t] for t in saga_tables(app)},
        bus_name=wiring.bus_name if app.saga.emits else None,
        decline_above_cents=wiring.decline_above_cents,
        buckets={claims: wiring.bucket_names[claims]}
        if claims and claims in wiring.bucket_names else {},
    )


def bucket_statements(read_arns: Sequence[str], write_arns: Sequence[str]
                      ) -> list[dict[str, Any]]:
    """Objects of exactly these buckets (bucket ARNs in, `<arn>/*` granted)."""
    out = []
    if read_arns:
        out.append(_statement("ReadBuckets", ["s3:GetObject"],
                              [f"{a}/*" for a in sorted(read_arns)]))
    if write_arns:
        out.append(_statement("WriteClaimChecks", ["s3:PutObject"],
                              [f"{a}/*" for a in sorted(write_arns)]))
    return out


# --- IAM -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grants:
    """Exact ARNs one function may touch; each non-empty field becomes one statement."""

    log_group_arn: str
    consume_queue_arn: str | None = None
    dead_letter_queue_arn: str | None = None
    table_arns: Sequence[str] = ()
    bus_arn: str | None = None
    #: What it may put on the bus (with `bus_arn`): narrows PutEvents by source/detail-type.
    publishes: Sequence[tuple[str, str]] = ()
    topic_arn: str | None = None
    state_machine_arn: str | None = None
    extra: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def _statement(sid: str, actions: Iterable[str], resources: Sequence[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
            "Resource": list(resources) if len(resources) > 1 else resources[0]}


def log_stream_arn(log_group_arn: str) -> str:
    """The streams of exactly one log group: Lambda names its streams itself, so they
    cannot be listed ahead of time; this is scoped to the group, not a wildcard group."""
    return f"{log_group_arn}:log-stream:*"


def put_events_statement(bus_arn: str, published: Iterable[tuple[str, str]],
                         sid: str = "PublishToBus") -> dict[str, Any]:
    """PutEvents on exactly this bus, for exactly the (Source, DetailType) pairs given.

    PutEvents supports the `events:source` and `events:detail-type` condition keys; AWS's
    example puts the multivalued `events:source` under `ForAllValues:StringEquals` (every
    entry's Source must be listed) and `events:detail-type` under `StringEquals`. An entry
    outside them is refused by EventBridge (NotAuthorizedForSourceException /
    NotAuthorizedForDetailTypeException), so a publisher cannot spoof another's events.
    """
    pairs = list(published)
    if not pairs:
        raise ValueError("a PutEvents grant needs the event types it may publish")
    return {"Sid": sid, "Effect": "Allow", "Action": "events:PutEvents", "Resource": bus_arn,
            "Condition": {
                "ForAllValues:StringEquals": {"events:source": sorted({s for s, _ in pairs})},
                "StringEquals": {"events:detail-type": sorted({d for _, d in pairs})},
            }}


def published_types(catalog: Catalog, types: Iterable[str] | None = None
                    ) -> list[tuple[str, str]]:
    """(Source, DetailType) of the types a publisher declares (its `emits`), or of every
    catalog entry when `types` is None."""
    entries = list(catalog) if types is None else [catalog[t] for t in sorted(set(types))]
    return sorted({(t.source, t.detail_type) for t in entries})


def function_policy(grants: Grants) -> dict[str, Any]:
    """The inline policy of one function's own role: exact ARNs, X-Ray the one exception."""
    statements = [
        # Both actions are authorised on the log stream, so both name the group's streams.
        _statement("OwnLogStreams", LOG_WRITE_ACTIONS, [log_stream_arn(grants.log_group_arn)]),
        # X-Ray's trace APIs have no resource-level permissions: "*" is the only form.
        _statement("XRay", XRAY_ACTIONS, ["*"]),
    ]
    if grants.consume_queue_arn:
        statements.append(_statement("ConsumeOwnQueue", QUEUE_CONSUME_ACTIONS,
                                     [grants.consume_queue_arn]))
    if grants.dead_letter_queue_arn:
        statements.append(_statement("DeadLetterPermanentErrors", ["sqs:SendMessage"],
                                     [grants.dead_letter_queue_arn]))
    if grants.table_arns:
        statements.append(_statement("Tables", TABLE_ACTIONS, sorted(grants.table_arns)))
    if grants.bus_arn:
        statements.append(put_events_statement(grants.bus_arn, grants.publishes))
    if grants.topic_arn:
        statements.append(_statement("Notify", ["sns:Publish"], [grants.topic_arn]))
    if grants.state_machine_arn:
        statements.append(_statement("StartSaga", ["states:StartExecution"],
                                     [grants.state_machine_arn]))
    statements.extend(dict(s) for s in grants.extra)
    return {"Version": "2012-10-17", "Statement": statements}


def consumer_grants(consumer: Consumer, *, catalog: Catalog, log_group_arn: str, queue_arn: str,
                    dlq_arn: str, table_arns: Mapping[str, str], bus_arn: str, topic_arn: str,
                    state_machine_arn: str, bucket_arns: Mapping[str, str] | None = None,
                    claims_bucket: str | None = None) -> Grants:
    """What a consumer's role may touch: exactly what `consumer_settings` tells it about."""
    bucket_arns = bucket_arns or {}
    read, write = consumer_bucket_access(consumer, claims_bucket)
    scans = [_statement("ScanTables", SCAN_ACTIONS, sorted(table_arns[t] for t in
                                                            consumer.scans))] \
        if consumer.scans else []
    return Grants(
        extra=scans + bucket_statements([bucket_arns[b] for b in read if b in bucket_arns],
                                        [bucket_arns[b] for b in write if b in bucket_arns]),
        log_group_arn=log_group_arn, consume_queue_arn=queue_arn, dead_letter_queue_arn=dlq_arn,
        table_arns=[table_arns[t] for t in consumer_tables(consumer)],
        bus_arn=bus_arn if consumer.emits else None,
        publishes=published_types(catalog, consumer.emits),
        topic_arn=topic_arn if consumer.notifies else None,
        state_machine_arn=state_machine_arn if consumer.starts_saga else None,
    )


def saga_grants(app: App, *, log_group_arn: str, table_arns: Mapping[str, str],
                bus_arn: str, bucket_arns: Mapping[str, str] | None = None,
                claims_bucket: str | None = None) -> Grants:
    """What the saga steps' role may touch (no queue: Step Functions invokes it)."""
    claims_arn = (bucket_arns or {}).get(claims_bucket or "") if app.saga.emits else None
    return Grants(log_group_arn=log_group_arn,
                  extra=bucket_statements([], [claims_arn] if claims_arn else []),
                  table_arns=[table_arns[t] for t in saga_tables(app)],
                  bus_arn=bus_arn if app.saga.emits else None,
                  publishes=published_types(app.catalog, app.saga.emits))


def ingest_grants(catalog: Catalog, *, log_group_arn: str, bus_arn: str) -> Grants:
    """The HTTP ingress function: PutEvents for any catalog event (its entry point refuses
    any other), nothing else."""
    return Grants(log_group_arn=log_group_arn, bus_arn=bus_arn,
                  publishes=published_types(catalog))


def state_machine_policy(function_arns: Sequence[str]) -> dict[str, Any]:
    """The state machine may invoke exactly the saga's functions, trace, and log.

    The definition names each function by its unqualified ARN (`asl.task_functions`), which
    is what the grant names; invoking a version or alias would need `<arn>:<qualifier>`."""
    return {"Version": "2012-10-17", "Statement": [
        _statement("InvokeSagaSteps", ["lambda:InvokeFunction"], sorted(function_arns)),
        _statement("XRay", (*XRAY_ACTIONS, *XRAY_SAMPLING_ACTIONS), ["*"]),
        _statement("LogDelivery", LOG_DELIVERY_ACTIONS, ["*"]),
    ]}


#: Service principals that assume this stack's roles, and whether AWS documents the
#: confused-deputy condition keys for that assumption. Where it does, the trust policy
#: pins `aws:SourceAccount` (and `aws:SourceArn`, the one resource that may use the role):
#: - states: "Prevent cross-service confused deputy" in the Step Functions guide (the
#:   state machine's ARN);
#: - scheduler: "Confused deputy prevention" in the EventBridge Scheduler guide (the
#:   schedule group's ARN, not a schedule's);
#: - events: "Cross-service confused deputy prevention" in the EventBridge guide (the
#:   rule's ARN for a rule target).
#: Lambda documents neither key for assuming an execution role (its `aws:SourceArn`
#: applies to who may invoke a function); a condition the service does not send would
#: stop every function from starting, so Lambda's trust is the service alone. A role
#: can only be passed to Lambda by a principal of its own account (iam:PassRole).
SOURCE_CONDITIONED_SERVICES: Final = frozenset({
    "states.amazonaws.com", "scheduler.amazonaws.com", "events.amazonaws.com"})
UNCONDITIONED_SERVICES: Final[Mapping[str, str]] = {
    "lambda.amazonaws.com": "Lambda documents no aws:SourceAccount/aws:SourceArn for "
                            "assuming an execution role",
}


def assume_role_policy(service: str, account_id: str | None = None,
                       source_arn: str | None = None) -> dict[str, Any]:
    """Trust policy letting `service` assume the role, on behalf of exactly this account
    and (when given) this one resource, where AWS documents those keys for the service."""
    statement: dict[str, Any] = {
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if service in SOURCE_CONDITIONED_SERVICES:
        if not account_id:
            raise ValueError(f"a role trusting {service} needs the account (aws:SourceAccount)")
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
        if source_arn:
            statement["Condition"]["ArnEquals"] = {"aws:SourceArn": source_arn}
    elif service not in UNCONDITIONED_SERVICES:
        raise ValueError(f"no trust rule for service principal {service!r}: add it to "
                         "SOURCE_CONDITIONED_SERVICES or UNCONDITIONED_SERVICES")
    return {"Version": "2012-10-17", "Statement": [statement]}


def state_machine_arn(partition: str, region: str, account_id: str, name: str) -> str:
    """A state machine's ARN from its name (its role must name it before it exists)."""
    return f"arn:{partition}:states:{region}:{account_id}:stateMachine:{name}"


def alarm_key_policy(account_id: str) -> dict[str, Any]:
    """Key policy of the alarm topic's key: CloudWatch alarms cannot publish to a topic
    under the AWS-managed SNS key, so the alarm topic gets its own key that lets them.
    In a key policy "Resource": "*" means "this key" (the only form AWS accepts). SNS
    asks KMS for a data key (GenerateDataKey) and CloudWatch needs Decrypt; AWS's sample
    policy says `kms:GenerateDataKey*`, which also allows key pairs: no wildcard here."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]}


__all__ = [
    "Grants", "Names", "QueueSpec", "TableSpec", "assume_role_policy", "consumer_tables",
    "event_pattern", "function_policy", "ingest_grants", "put_events_statement",
    "queue_policy", "queue_spec", "saga_tables", "state_machine_policy", "table_specs",
    "target_retry_policy",
]
