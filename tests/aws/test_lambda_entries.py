"""The Lambda entries with real event shapes, over moto (tables, DLQ, bus, topic)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from adapters import soon
from adapters.aws import lambda_entry
from adapters.aws.lambda_entry import PermanentStepError, saga_state
from adapters.aws.runtime import AwsRuntime, reset_runtime, runtime
from adapters.aws.settings import ENV_CONSUMER, ENV_TABLES, SettingMissing, Settings
from adapters.aws.sns_notifier import SnsNotifier
from adapters.aws.stepfunctions_starter import execution_name
from adapters.aws.topology import TableSpec
from handlers.app import APP
from handlers.catalog import CATALOG
from handlers.core.eventbridge_binding import to_put_events_entry
from tests.factories import not_yet_known_until, restock

TABLES = {t: f"t-{t}" for t in APP.tables}


@pytest.fixture
def wired(aws: None) -> Iterator[dict[str, Any]]:
    ddb = boto3.client("dynamodb")
    for logical, physical in TABLES.items():
        ddb.create_table(**TableSpec(logical).create_table_kwargs(physical))
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="inventory-dlq")["QueueUrl"]
    boto3.client("events").create_event_bus(Name="bus")
    settings = Settings(consumer="inventory", tables=TABLES, dlq_url=dlq, bus_name="bus")
    reset_runtime(AwsRuntime(settings, APP))
    yield {"dlq": dlq, "sqs": sqs}
    reset_runtime(None)


def sqs_record(n: int, body: str) -> dict[str, Any]:
    return {"messageId": f"m-{n}", "receiptHandle": f"rh-{n}", "body": body,
            "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
            "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}


def delivered(data: dict[str, Any], event_id: str) -> str:
    """An Inventory Updated as EventBridge delivers it to SQS (seed-style plain detail)."""
    return json.dumps({"version": "0", "id": event_id, "detail-type": "Inventory Updated",
                       "source": "inventory", "account": "123456789012",
                       "time": "2024-01-01T00:00:00Z", "region": "us-east-1",
                       "resources": [], "detail": data})


def test_partial_batch_reports_exactly_the_failed_records(
    wired: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure case 9: records 3 and 7 fail (transiently) -> exactly those two are reported."""
    original = runtime().store.transact
    calls = {"n": 0}

    def flaky(ops: Any) -> bool:
        item = ops[0].key if ops else ""
        if item in ("item-3", "item-7"):
            from handlers.core.errors import TransientError
            raise TransientError("throttled")
        calls["n"] += 1
        return original(ops)

    monkeypatch.setattr(runtime().store, "transact", flaky)
    records = [sqs_record(n, delivered({"item_id": f"item-{n}", "quantity": 1,
                                        "action": "restock"}, f"e-{n}")) for n in range(10)]
    answer = lambda_entry.sqs_handler({"Records": records})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-3"},
                                            {"itemIdentifier": "m-7"}]}
    assert runtime().store.get("inventory", "item-0") == {"item_id": "item-0", "available": 1}


def test_permanent_errors_go_to_the_dlq_at_once_with_the_reason(wired: dict[str, Any]) -> None:
    bad = [sqs_record(0, "not json {"),
           sqs_record(1, delivered({"item_id": "A", "quantity": -1, "action": "melt"}, "e-1"))]
    assert lambda_entry.sqs_handler({"Records": bad}) == {"batchItemFailures": []}
    messages = wired["sqs"].receive_message(QueueUrl=wired["dlq"], MaxNumberOfMessages=10,
                                            MessageAttributeNames=["All"])["Messages"]
    by_id = {m["MessageAttributes"]["source_message_id"]["StringValue"]: m for m in messages}
    assert by_id["m-0"]["Body"] == "not json {"
    reason = by_id["m-1"]["MessageAttributes"]["reason"]["StringValue"]
    assert "quantity" in reason and "action" in reason  # every problem is named
    assert by_id["m-1"]["MessageAttributes"]["receive_count"]["StringValue"] == "2"
    assert by_id["m-1"]["MessageAttributes"]["consumer"]["StringValue"] == "inventory"


def test_a_permanent_error_that_cannot_be_dead_lettered_is_retried(wired: dict[str, Any]) -> None:
    reset_runtime(AwsRuntime(Settings(consumer="inventory", tables=TABLES,
                                      dlq_url="https://sqs.us-east-1.amazonaws.com/1/nope"),
                             APP))
    answer = lambda_entry.sqs_handler({"Records": [sqs_record(0, "{}")]})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}


def test_unknown_types_are_acknowledged_and_counted(wired: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"version": "0", "id": "x", "detail-type": "Order Created",
                       "source": "orders", "time": "2024-01-01T00:00:00Z",
                       "detail": {"order_id": "1", "customer_id": "c", "total": 1,
                                  "items": [{"item_id": "A", "quantity": 1, "price": 1}]}})
    assert lambda_entry.sqs_handler({"Records": [sqs_record(0, body)]}) == {
        "batchItemFailures": []}
    metric = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metric["IgnoredEvents"] == 1 and metric["Consumer"] == "inventory"


def test_direct_eventbridge_invocation(wired: dict[str, Any]) -> None:
    event = json.loads(delivered({"item_id": "Z", "quantity": 4, "action": "restock"}, "d-1"))
    assert lambda_entry.eventbridge_handler(event)["status"] == "processed"
    assert lambda_entry.eventbridge_handler(event)["status"] == "duplicate"
    assert runtime().store.get("inventory", "Z") == {"item_id": "Z", "available": 4}


def test_api_accepts_events_with_202_and_refuses_bad_ones_with_every_problem(
    wired: dict[str, Any]
) -> None:
    entry = to_put_events_entry(restock("A", 3), CATALOG)
    body = json.dumps({"Entries": [entry]})
    ok = lambda_entry.api_handler({"body": base64.b64encode(body.encode()).decode(),
                                   "isBase64Encoded": True,
                                   "headers": {"Content-Type": "application/json"}})
    assert ok["statusCode"] == 202
    assert json.loads(ok["body"])["accepted"] == 1
    bad = lambda_entry.api_handler({"body": json.dumps({"Entries": [{"Source": "orders"}]}),
                                    "headers": {"Content-Type": "application/json"}})
    assert bad["statusCode"] == 400
    problems = json.loads(bad["body"])["problems"]
    assert any("DetailType" in p for p in problems) and any("Detail" in p for p in problems)
    # Without a Content-Type the body is not guessed at: the one rule of every front door.
    bare = lambda_entry.api_handler({"body": json.dumps({"Entries": [entry]}), "headers": {}})
    assert bare["statusCode"] == 400 and "no Content-Type" in bare["body"], bare


def test_api_refuses_an_event_whose_source_is_not_its_catalog_source(
    wired: dict[str, Any]
) -> None:
    """The ingress role may put only the catalog's (Source, DetailType) pairs: a CloudEvent
    claiming another source is a 400 naming it, not a PutEvents refusal answered as 503."""
    event = restock("A", 3)
    spoofed = {"specversion": "1.0", "id": "ce-9", "source": "not-inventory",
               "type": event.type, "datacontenttype": "application/json",
               "data": event.data}
    answer = lambda_entry.api_handler({"body": json.dumps(spoofed), "headers": {
        "content-type": "application/cloudevents+json"}})
    assert answer["statusCode"] == 400, answer
    [problem] = json.loads(answer["body"])["problems"]
    assert problem.startswith("event: source 'not-inventory' is not 'inventory'"), problem
    honest = lambda_entry.api_handler({"body": json.dumps({**spoofed, "source": event.source}),
                                       "headers": {"content-type":
                                                   "application/cloudevents+json"}})
    assert honest["statusCode"] == 202, honest


def test_step_handler_refuses_a_mismatched_key_and_wraps_permanent_errors(
    wired: dict[str, Any]
) -> None:
    reset_runtime(AwsRuntime(Settings(tables=TABLES), APP))
    state = {"saga_id": "s", "input": {"order_id": "o"}, "results": {}, "reason": None,
             "reason_detail": None, "traceparent": None}
    with pytest.raises(PermanentStepError, match="does not match"):
        lambda_entry.step_handler({"step": "payment", "phase": "action",
                                   "idempotency_key": "s:ship:action", "state": state})
    with pytest.raises(PermanentStepError, match="no step"):
        lambda_entry.step_handler({"step": "nope", "phase": "action", "state": state})


def test_saga_state_turns_a_caught_error_into_the_reason_detail() -> None:
    raw = {"saga_id": "s", "results": {}, "reason": "payment_failed", "reason_detail": None,
           "outcome": "ok", "error": {"Error": "TransientError", "Cause": json.dumps(
               {"errorType": "TransientError", "errorMessage": "gateway down"})}}
    state = saga_state(raw)
    assert state["reason_detail"] == "TransientError: gateway down"
    assert "error" not in state and "outcome" not in state


def test_settings_round_trip_through_the_environment() -> None:
    settings = Settings(consumer="orders", tables={"orders": "o"}, bus_name="b",
                        queue_url="q", dlq_url="d", state_machine_arn="sm",
                        notification_topic_arn="t", decline_above_cents=123)
    assert Settings.from_env(settings.environment()) == settings
    assert Settings.from_env({ENV_CONSUMER: "x", ENV_TABLES: "{}"}).tables == {}
    with pytest.raises(SettingMissing, match="SWITCHYARD_BUS_NAME"):
        Settings().require("bus_name")
    with pytest.raises(SettingMissing, match="table 'orders'"):
        Settings().table("orders")


def test_clients_are_created_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []

    class Session:
        def client(self, service: str, config: Any = None) -> object:
            created.append(service)
            return object()

        def resource(self, service: str, config: Any = None) -> Any:
            created.append(service)
            return type("R", (), {"meta": type("M", (), {"client": object()})})()

    rt = AwsRuntime(Settings(), APP, Session())
    assert created == []
    assert rt.client("sqs") is rt.client("sqs")
    ports = rt.ports  # every function uses the store; the other clients wait for use
    assert created == ["sqs", "dynamodb"]
    with pytest.raises(SettingMissing, match="SWITCHYARD_BUS_NAME"):
        ports.publisher.publish([])
    assert created == ["sqs", "dynamodb", "events"]


@pytest.mark.parametrize(("saga_id", "expected"), [
    ("order-123", "order-123"),
    ("order 1/2", None),
    ("x" * 81, None),
])
def test_execution_names_are_valid_and_distinct(saga_id: str, expected: str | None) -> None:
    name = execution_name(saga_id)
    assert len(name) <= 80 and all(c.isalnum() or c in "-_" for c in name)
    if expected:
        assert name == expected
    assert execution_name(saga_id + "!") != name


def test_sns_notifier_sends_the_id_as_an_attribute(aws: None) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="n")["TopicArn"]
    url = sqs.create_queue(QueueName="tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    SnsNotifier(sns, topic).notify("n-1", {"subject": "Order\n1 done", "message": "hi",
                                           "channel": "email"})
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == "Order 1 done"
    assert envelope["MessageAttributes"]["notification_id"]["Value"] == "n-1"
    assert json.loads(envelope["Message"])["notification_id"] == "n-1"


def test_data_not_known_yet_is_retried_at_once_in_the_invocation(
        wired: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = not_yet_known_until(monkeypatch, succeed_on=2)
    record = sqs_record(0, delivered({"item_id": "A", "quantity": 1, "action": "restock"},
                                     "e-0"))
    assert lambda_entry.sqs_handler({"Records": [record]}) == {"batchItemFailures": []}
    assert calls == ["e-0", "e-0"]


def test_data_still_not_known_comes_back_after_a_short_visibility_not_the_queues(
        wired: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The message is made visible again by ChangeMessageVisibility (0 s here, so no clock
    is involved): without it the queue's 60 s visibility timeout would hide it."""
    sqs = wired["sqs"]
    queue = sqs.create_queue(QueueName="inventory",
                             Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    reset_runtime(AwsRuntime(Settings(consumer="inventory", tables=TABLES, dlq_url=wired["dlq"],
                                      bus_name="bus", queue_url=queue, max_deliveries=5), APP))
    calls = not_yet_known_until(monkeypatch, succeed_on=None)
    monkeypatch.setattr(lambda_entry, "SOON_VISIBILITY_S", (0, 0, 0))
    body = delivered({"item_id": "A", "quantity": 1, "action": "restock"}, "e-0")
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    [message] = sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"]
    record = {**sqs_record(0, body), "messageId": message["MessageId"],
              "receiptHandle": message["ReceiptHandle"],
              "attributes": {"ApproximateReceiveCount": "1"}}
    answer = lambda_entry.sqs_handler({"Records": [record]})
    assert answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert calls == ["e-0", "e-0"]
    again = sqs.receive_message(QueueUrl=queue).get("Messages", [])
    assert [m["MessageId"] for m in again] == [message["MessageId"]]


def test_other_transient_errors_keep_the_queues_visibility(
        wired: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = wired["sqs"]
    queue = sqs.create_queue(QueueName="inventory",
                             Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    reset_runtime(AwsRuntime(Settings(consumer="inventory", tables=TABLES, dlq_url=wired["dlq"],
                                      bus_name="bus", queue_url=queue, max_deliveries=5), APP))
    monkeypatch.setattr(lambda_entry, "SOON_VISIBILITY_S", (0, 0, 0))

    def throttled(*args: Any, **labels: Any) -> Any:
        from handlers.core.errors import TransientError
        raise TransientError("throttled")

    monkeypatch.setattr(soon, "handle", throttled)
    body = delivered({"item_id": "A", "quantity": 1, "action": "restock"}, "e-0")
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    [message] = sqs.receive_message(QueueUrl=queue)["Messages"]
    record = {**sqs_record(0, body), "messageId": message["MessageId"],
              "receiptHandle": message["ReceiptHandle"],
              "attributes": {"ApproximateReceiveCount": "1"}}
    assert lambda_entry.sqs_handler({"Records": [record]})["batchItemFailures"]
    assert sqs.receive_message(QueueUrl=queue).get("Messages", []) == []
