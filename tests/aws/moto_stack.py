"""The AWS stack in moto, built from the generators `infra/aws` deploys, plus a Lambda stand-in.

`MotoStack.create(app, ...)` makes the bus, one rule per consumer (the generated pattern),
queues and DLQs (generated attributes and policies), targets (generated retry policy and
DLQ), tables (generated definitions, PITR and TTL), the notification topic and the saga
state machine (the compiled ASL). What moto cannot run is Lambda itself (no Docker here),
so the stack plays the Lambda service:

- `pump()` is the SQS event source mapping: it receives a batch from each consumer queue,
  hands the Lambda entry a real SQS event, deletes what succeeded and leaves the reported
  failures for redelivery (their visibility is reset to 0, i.e. the visibility timeout is
  fast-forwarded, which is the one liberty taken with time);
- moto's Step Functions interpreter invokes Lambda through moto's Lambda API; the
  backend's `invoke` is routed in-process to `lambda_entry.step_handler` and answers the
  way Lambda does (a raised exception becomes `FunctionError` with errorType/errorMessage).

Each function gets its own `AwsRuntime` with the settings `topology` says it gets. Entry
calls are serialised (one lock), since the runtime is a per-container global.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.awslambda.models import LambdaBackend
from moto.awslambda_simple.models import LambdaSimpleBackend

from adapters.aws import asl, buckets, lambda_entry, topology
from adapters.aws.runtime import AwsRuntime, reset_runtime
from adapters.aws.settings import Settings
from adapters.aws.topology import Names
from handlers.core.app import App
from handlers.core.errors import PermanentError
from handlers.core.eventbridge_binding import from_eventbridge_event

REGION = "us-east-1"
#: moto's interpreter really sleeps between Step Functions retries; tests wait this share
#: of each interval (the number of attempts is unchanged).
RETRY_TIME_SCALE = 0.01
ACCOUNT = "123456789012"

Entry = Callable[[Mapping[str, Any], Any], Any]


class _ScaledTime:
    """Stands in for the `time` module inside moto's retrier."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * RETRY_TIME_SCALE)


@contextmanager
def fast_saga_retries() -> Iterator[None]:
    """Compress the waits between Step Functions retries while the block runs."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retrier_decl, "time", _ScaledTime())
        yield


@contextmanager
def s3_events_to_default_bus() -> Iterator[None]:
    """Make moto deliver S3's EventBridge notifications the way AWS does: to the default
    bus only. (moto offers them to every bus's rules, and stops at the first archive
    rule, whose input it cannot build, so nothing after it gets the event.)"""
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send(rule: Any, event: Any, transform_input: bool = True) -> None:
        if not transform_input and event.get("source") == "aws.s3" \
                and rule.event_bus_name != "default":
            return
        original(rule, event, transform_input)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Rule, "send_to_targets", send)
        yield


@dataclass
class Function:
    name: str
    entry: Entry
    runtime: AwsRuntime
    invocations: int = 0


@dataclass
class MotoStack:
    app: App
    names: Names
    session: Any
    max_deliveries: int
    batch_size: int
    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    rule_arns: dict[str, str] = field(default_factory=dict)
    table_names: dict[str, str] = field(default_factory=dict)
    bucket_names: dict[str, str] = field(default_factory=dict)
    bus_arn: str = ""
    topic_arn: str = ""
    state_machine_arn: str = ""
    saga_function_arn: str = ""
    observer_url: str = ""
    functions: dict[str, Function] = field(default_factory=dict)
    #: (consumer, event id) -> how many times the consumer's entry received it
    receives: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- building ------------------------------------------------------------------------

    @classmethod
    def create(cls, app: App, *, prefix: str = "sy-test", max_deliveries: int = 5,
               timeout_s: int = 30, batch_size: int = 10,
               decline_above_cents: int = 100_000,
               functions_know_max_deliveries: bool = True) -> MotoStack:
        """`functions_know_max_deliveries=False` leaves dead-lettering after the last
        delivery to the queue's redrive alone (the backstop for crashed functions)."""
        session = boto3.session.Session(region_name=REGION)
        stack = cls(app, Names(prefix), session, max_deliveries, batch_size)
        stack._build(timeout_s, decline_above_cents, functions_know_max_deliveries)
        return stack

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def _build(self, timeout_s: int, decline_above_cents: int, tell_limit: bool) -> None:
        names, app = self.names, self.app
        events, sqs, ddb = self.client("events"), self.client("sqs"), self.client("dynamodb")
        self.bus_arn = events.create_event_bus(Name=names.bus())["EventBusArn"]
        events.create_archive(ArchiveName=names.archive(), EventSourceArn=self.bus_arn,
                              RetentionDays=7)
        for spec in topology.table_specs(app):
            physical = names.table(spec.logical)
            ddb.create_table(**spec.create_table_kwargs(physical))
            ddb.update_continuous_backups(
                TableName=physical,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
            if spec.ttl_attribute:
                ddb.update_time_to_live(TableName=physical, TimeToLiveSpecification={
                    "Enabled": True, "AttributeName": spec.ttl_attribute})
            self.table_names[spec.logical] = physical
        sns = self.client("sns")
        self.topic_arn = sns.create_topic(Name=names.notifications_topic(), Attributes={
            "KmsMasterKeyId": "alias/aws/sns"})["TopicArn"]
        self.observer_url = sqs.create_queue(QueueName=f"{names.prefix}-observer")["QueueUrl"]
        observer_arn = self._arn(self.observer_url)
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=observer_arn,
                      Attributes={"RawMessageDelivery": "true"})

        self._build_buckets()
        claims = app.claim_check_bucket()
        self._build_saga(timeout_s, decline_above_cents)
        queues = topology.queue_spec(self.max_deliveries, timeout_s)
        wiring = topology.Wiring(
            table_names=self.table_names, bus_name=names.bus(),
            notification_topic_arn=self.topic_arn, state_machine_arn=self.state_machine_arn,
            decline_above_cents=decline_above_cents,
            max_deliveries=self.max_deliveries if tell_limit else None,
            bucket_names=self.bucket_names, claims_bucket=claims.name if claims else None)
        uploads = [self.bucket_names[b.name] for b in app.buckets if b.events]
        for consumer in app.consumers:
            dlq_url = sqs.create_queue(QueueName=names.dlq(consumer.name),
                                       Attributes=queues.dlq_attributes())["QueueUrl"]
            dlq_arn = self._arn(dlq_url)
            url = sqs.create_queue(QueueName=names.queue(consumer.name),
                                   Attributes=queues.sqs_attributes(dlq_arn))["QueueUrl"]
            arn = self._arn(url)
            sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={
                "RedriveAllowPolicy": queues.redrive_allow_policy(arn)})
            rule_arn = events.put_rule(
                Name=names.rule(consumer.name), EventBusName=names.bus(),
                EventPattern=json.dumps(topology.event_pattern(app, consumer, uploads))
            )["RuleArn"]
            for queue_url, queue_arn in ((url, arn), (dlq_url, dlq_arn)):
                sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={
                    "Policy": json.dumps(topology.queue_policy(queue_arn, [rule_arn]))})
            events.put_targets(Rule=names.rule(consumer.name), EventBusName=names.bus(),
                               Targets=[{"Id": f"{consumer.name}-queue", "Arn": arn,
                                         "RetryPolicy": topology.target_retry_policy(),
                                         "DeadLetterConfig": {"Arn": dlq_arn}}])
            self.queue_urls[consumer.name], self.queue_arns[consumer.name] = url, arn
            self.dlq_urls[consumer.name] = dlq_url
            self.rule_arns[consumer.name] = rule_arn
            settings = topology.consumer_settings(consumer, wiring, url, dlq_url)
            self._function(names.function(consumer.name), lambda_entry.sqs_handler, settings)
        self._function(names.ingest_function(), lambda_entry.api_handler,
                       Settings(bus_name=names.bus()))
        # A probe: every event on the bus, so tests can see what was published.
        sources = sorted({t.source for t in app.catalog})
        events.put_rule(Name=f"{names.prefix}-observer", EventBusName=names.bus(),
                        EventPattern=json.dumps({"source": sources}))
        events.put_targets(Rule=f"{names.prefix}-observer", EventBusName=names.bus(),
                           Targets=[{"Id": "observer", "Arn": observer_arn}])

    def _build_buckets(self) -> None:
        """The app's buckets as `infra/aws` makes them, and the default-bus rule that
        forwards their S3 events to the app's bus (S3 -> EventBridge only ever reaches
        the default bus; `s3_events_to_default_bus` makes moto do the same)."""
        s3, events = self.client("s3"), self.client("events")
        for bucket in self.app.buckets:
            name = buckets.bucket_name(self.names.prefix, bucket.name, ACCOUNT)
            s3.create_bucket(Bucket=name)
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=dict(
                buckets.PUBLIC_ACCESS_BLOCK))
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=dict(
                buckets.ENCRYPTION))
            if bucket.expire_days:
                s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={
                    "Rules": buckets.lifecycle_rules(bucket)})
            if bucket.events:
                s3.put_bucket_notification_configuration(
                    Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})
            self.bucket_names[bucket.name] = name
        uploads = [self.bucket_names[b.name] for b in self.app.buckets if b.events]
        if uploads:
            rule = buckets.forward_rule_name(self.names.prefix)
            events.put_rule(Name=rule, EventBusName="default",
                            EventPattern=json.dumps(buckets.upload_pattern(uploads)))
            events.put_targets(Rule=rule, EventBusName="default", Targets=[{
                "Id": "app-bus", "Arn": self.bus_arn,
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/{rule}-role"}])

    def _build_saga(self, timeout_s: int, decline_above_cents: int) -> None:
        saga = self.app.saga
        function = self.names.saga_function(saga.name)
        self.saga_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
        definition = asl.compile_saga(saga, self.saga_function_arn)
        role = f"arn:aws:iam::{ACCOUNT}:role/{Names.role(self.names.state_machine(saga.name))}"
        self.state_machine_arn = self.client("stepfunctions").create_state_machine(
            name=self.names.state_machine(saga.name), definition=json.dumps(definition),
            roleArn=role, type="STANDARD")["stateMachineArn"]
        claims = self.app.claim_check_bucket()
        wiring = topology.Wiring(
            table_names=self.table_names, bus_name=self.names.bus(), notification_topic_arn="",
            state_machine_arn="", decline_above_cents=decline_above_cents,
            bucket_names=self.bucket_names, claims_bucket=claims.name if claims else None)
        self._function(function, lambda_entry.step_handler,
                       topology.saga_settings(self.app, wiring))

    def _function(self, name: str, entry: Entry, settings: Settings) -> None:
        # Round-trip through the environment, exactly as the deployed function reads it.
        env = settings.environment()
        self.functions[name] = Function(
            name, entry, AwsRuntime(Settings.from_env(env), self.app, self.session))

    def _arn(self, queue_url: str) -> str:
        return self.client("sqs").get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    # --- playing Lambda --------------------------------------------------------------------

    def invoke(self, function: str, event: Mapping[str, Any]) -> Any:
        """Run one function's entry with its own runtime, as one Lambda invocation."""
        fn = self.functions[function]
        with self._lock:
            fn.invocations += 1
            reset_runtime(fn.runtime)
            try:
                return fn.entry(event, None)
            finally:
                reset_runtime(None)

    @contextmanager
    def lambda_service(self) -> Iterator[None]:
        """Route moto's Lambda `invoke` (from the Step Functions interpreter) in-process."""
        with s3_events_to_default_bus(), self._lambda_invoke():
            yield

    @contextmanager
    def _lambda_invoke(self) -> Iterator[None]:
        stack = self

        def invoke(backend: Any, function_name: str, qualifier: str | None, body: Any,
                   headers: Any, response_headers: dict[str, str]) -> bytes:
            name = function_name.split(":function:")[-1].split(":")[0]
            payload = json.loads(body) if body else {}
            try:
                result = stack.invoke(name, payload)
            except Exception as error:  # noqa: BLE001 - Lambda reports it, so do we
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(error).__name__,
                                   "errorMessage": str(error),
                                   "stackTrace": traceback.format_tb(error.__traceback__)
                                   }).encode()
            return json.dumps(result).encode()

        # Both moto Lambda backends (with and without Docker) answer through this.
        originals = {cls: cls.invoke for cls in (LambdaBackend, LambdaSimpleBackend)}
        for cls in originals:
            cls.invoke = invoke  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            for cls, original in originals.items():
                cls.invoke = original  # type: ignore[method-assign]

    def pump_once(self) -> int:
        """One poll of every consumer queue; returns how many messages were handed over."""
        sqs = self.client("sqs")
        handed = 0
        for consumer, url in self.queue_urls.items():
            answer = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(self.batch_size, 10),
                AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = answer.get("Messages", [])
            if not messages:
                continue
            handed += len(messages)
            records = [self._record(m, consumer) for m in messages]
            for record in records:
                self.receives[(consumer, self.event_id(record["body"]))] += 1
            result = self.invoke(self.names.function(consumer), {"Records": records})
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] in failed:
                    sqs.change_message_visibility(QueueUrl=url,
                                                  ReceiptHandle=message["ReceiptHandle"],
                                                  VisibilityTimeout=0)
                else:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return handed

    def event_id(self, body: str) -> str:
        """The CloudEvent id a delivered body carries (the envelope's for our events,
        EventBridge's for plain entries); the body's own id if it does not decode."""
        try:
            return from_eventbridge_event(json.loads(body), self.app.catalog).id
        except (ValueError, PermanentError):
            try:
                return str(json.loads(body).get("id", "?"))
            except (ValueError, AttributeError):
                return "?"

    def _record(self, message: Mapping[str, Any], consumer: str) -> dict[str, Any]:
        """An SQS message as the Lambda event source mapping hands it to a function."""
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                k: {"stringValue": v.get("StringValue"), "stringListValues": [],
                    "binaryListValues": [], "dataType": v["DataType"]}
                for k, v in message.get("MessageAttributes", {}).items()},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arns[consumer],
            "awsRegion": REGION,
        }

    def running_executions(self) -> list[str]:
        sfn = self.client("stepfunctions")
        return [e["executionArn"] for e in sfn.list_executions(
            stateMachineArn=self.state_machine_arn, statusFilter="RUNNING")["executions"]]

    def run_until_quiet(self, timeout: float = 60.0) -> None:
        """Pump queues and wait for executions until nothing is left to do.

        Executions are checked *before* the queues are polled: moto delivers PutEvents to
        the queues synchronously and an execution ends only after its steps returned, so
        "no execution running, then no message waiting" means quiet.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = bool(self.running_executions())
            moved = self.pump_once()
            if not busy and not moved:
                return
            if not moved:
                time.sleep(0.02)
        raise TimeoutError(f"stack not quiet after {timeout}s; running: "
                           f"{self.running_executions()}")

    # --- looking --------------------------------------------------------------------------

    def put_events(self, *entries: Mapping[str, Any]) -> dict[str, Any]:
        return self.client("events").put_events(
            Entries=[{**e, "EventBusName": self.names.bus()} for e in entries])

    def store(self) -> Any:
        """The stack's tables through the same Store the functions use."""
        return AwsRuntime(Settings(tables=self.table_names), self.app, self.session).store

    def item(self, table: str, key: str) -> dict[str, Any] | None:
        return self.store().get(table, key)

    def scan(self, table: str) -> list[dict[str, Any]]:
        ddb = self.session.resource("dynamodb").Table(self.table_names[table])
        return ddb.scan()["Items"]

    def drain(self, url: str) -> list[dict[str, Any]]:
        """Every message waiting in a queue (received and deleted)."""
        sqs = self.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                           MessageAttributeNames=["All"],
                                           AttributeNames=["All"]).get("Messages", [])
            if not messages:
                return out
            for message in messages:
                out.append(message)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def observed(self) -> list[dict[str, Any]]:
        """Bodies from the observer queue: bus events and raw SNS notifications."""
        return [json.loads(m["Body"]) for m in self.drain(self.observer_url)]

    def execution(self, saga_id: str) -> dict[str, Any]:
        from adapters.aws.stepfunctions_starter import execution_name

        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + \
            f":{execution_name(saga_id)}"
        return self.client("stepfunctions").describe_execution(executionArn=arn)
