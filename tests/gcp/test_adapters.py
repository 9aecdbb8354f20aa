"""The GCP adapters over in-memory ports and fake clients: status codes Pub/Sub and the
workflow act on, dead-lettering with reasons, publisher resends, idempotent saga starts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from adapters.gcp import pubsub_binding as pb
from adapters.gcp.entry import (
    CONSUMER_ATTRIBUTE,
    REASON_ATTRIBUTE,
    WRAPPED_CONTENT_TYPE,
    Runtime,
    process_ingest,
    process_push,
    process_step,
)
from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.pubsub_notifier import PubSubNotifier
from adapters.gcp.pubsub_publisher import PubSubPublisher
from adapters.gcp.settings import Settings
from adapters.gcp.workflows_starter import STARTS, WorkflowsSagaStarter
from adapters.memory import FixedClock, MemoryStore, memory_ports
from handlers.app import APP
from handlers.catalog import ORDER_SHIPPED
from handlers.core.errors import PermanentError, TransientError
from handlers.core.events import Event
from tests.factories import order_created, restock, workflow_triggered


class FakeFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self._error = error

    def result(self, timeout: float | None = None) -> str:
        if self._error:
            raise self._error
        return "id"


class FakePublisherClient:
    """Accepts everything, except the first `fail_first` publishes of chosen payloads."""

    def __init__(self, fail: Mapping[bytes, int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.sent: list[tuple[str, bytes, dict[str, str], str]] = []

    def publish(self, topic: str, data: bytes, ordering_key: str = "",
                **attrs: str) -> FakeFuture:
        self.sent.append((topic, data, attrs, ordering_key))
        if self.fail.get(data, 0) > 0:
            self.fail[data] -= 1
            return FakeFuture(RuntimeError("unavailable"))
        return FakeFuture()


class DeadLetters:
    def __init__(self, broken: bool = False) -> None:
        self.letters: list[PubSubMessage] = []
        self.broken = broken

    def publish_messages(self, messages: list[PubSubMessage]) -> None:
        if self.broken:
            raise TransientError("dead-letter topic unavailable")
        self.letters.extend(messages)


def runtime(consumer: str | None = "orders", broken_dlq: bool = False) -> Runtime:
    return Runtime(APP, Settings(project="p", consumer=consumer), memory_ports(),
                   DeadLetters(broken_dlq), bus=None)


def push(event: Event) -> bytes:
    return json.dumps(pb.push_envelope(pb.to_message(event))).encode()


# --- consume ------------------------------------------------------------------------------


def test_success_and_duplicate_are_acked() -> None:
    rt = runtime()
    event = order_created("o1", [("i1", 1, 5.0)])
    assert process_push(rt, {}, push(event))[1] == 204
    assert process_push(rt, {}, push(event))[1] == 204
    assert rt.ports.store.get("orders", "o1")["status"] == "pending"
    assert list(rt.ports.sagas.started) == ["order-o1"]  # type: ignore[attr-defined]


def test_a_type_this_consumer_does_not_consume_is_acked_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime("inventory")
    shipped = Event.new("shipping", ORDER_SHIPPED, {"order_id": "o", "tracking_id": "t"})
    assert process_push(rt, {}, push(shipped)) == ("", 204)
    assert rt.dead_letters.letters == []
    assert "ignored event" in caplog.text


def test_permanent_error_goes_to_the_dead_letter_topic_with_its_reason_then_acks() -> None:
    rt = runtime("inventory")
    removal = Event.new("inventory", "com.switchyard.inventory.updated",
                        {"item_id": "i", "quantity": 3, "action": "remove"})
    assert process_push(rt, {}, push(removal)) == ("", 204)
    [letter] = rt.dead_letters.letters
    assert "cannot remove 3 of item 'i': only 0 available" in letter.attributes[REASON_ATTRIBUTE]
    assert letter.attributes[CONSUMER_ATTRIBUTE] == "inventory"
    assert pb.from_message(letter.data, letter.attributes) == removal  # original kept


def test_malformed_push_is_dead_lettered_at_once_with_every_problem() -> None:
    rt = runtime()
    body = json.dumps({"message": {"attributes": {"ce-type": "x"}, "data": "%%%"}}).encode()
    assert process_push(rt, {}, body) == ("", 204)
    [letter] = rt.dead_letters.letters
    reason = letter.attributes[REASON_ATTRIBUTE]
    assert "not valid base64" in reason and "missing required attribute 'id'" in reason
    assert letter.attributes["ce-type"] == "x"


def test_an_unreadable_request_is_kept_whole() -> None:
    rt = runtime()
    assert process_push(rt, {}, b"\x00garbage")[1] == 204
    assert rt.dead_letters.letters[0].data == b"\x00garbage"


def test_transient_error_is_a_5xx_so_pubsub_retries() -> None:
    rt = runtime()
    body, status = process_push(rt, {}, push(workflow_triggered("unknown")))
    assert status == 503 and "not known yet" in body
    assert rt.dead_letters.letters == []


def test_nothing_is_acked_when_the_dead_letter_publish_fails() -> None:
    rt = runtime(broken_dlq=True)
    body = json.dumps({"message": {"attributes": {}, "data": ""}}).encode()
    assert process_push(rt, {}, body)[1] == 503


def test_a_letter_over_the_attribute_limit_is_wrapped_not_lost() -> None:
    rt = runtime()
    attributes = {f"x{i}": "v" for i in range(pb.MAX_ATTRIBUTES)}
    body = json.dumps({"message": {"attributes": attributes, "data": ""}}).encode()
    assert process_push(rt, {}, body)[1] == 204
    [letter] = rt.dead_letters.letters
    assert letter.attributes["content-type"] == WRAPPED_CONTENT_TYPE
    assert json.loads(letter.data)["attributes"] == attributes


# --- saga steps -----------------------------------------------------------------------------


def _step(rt: Runtime, step: str, phase: str = "action", **state: Any) -> tuple[int, Any]:
    body = json.dumps({"saga_id": "order-o1", "step": step, "phase": phase,
                       "state": {"input": {"order_id": "o1"}, "results": {}, **state}})
    text, status, _ = process_step(rt, body.encode())
    return status, json.loads(text)


def test_step_endpoint_answers_outcomes_and_replays() -> None:
    rt = runtime()
    process_push(rt, {}, push(order_created("o1", [("i1", 1, 5.0)])))
    status, answer = _step(rt, "create_order")
    assert status == 200 and answer["ok"] and answer["result"]["order_id"] == "o1"
    assert _step(rt, "create_order")[1]["replayed"] is True


def test_step_endpoint_business_failure_is_200_ok_false() -> None:
    rt = runtime()
    process_push(rt, {}, push(order_created("o1", [("i1", 1, 5.0)])))
    created = _step(rt, "create_order")[1]["result"]
    status, answer = _step(rt, "reserve_inventory", results={"create_order": created})
    assert (status, answer["ok"], answer["reason"]) == (200, False, "out_of_stock")


def test_step_endpoint_transient_is_503_and_permanent_is_422() -> None:
    rt = runtime()
    assert _step(rt, "create_order")[0] == 503  # order not there yet: retry
    assert _step(rt, "no_such_step")[0] == 422
    text, status, _ = process_step(rt, b'{"saga_id": 1}')
    assert status == 422 and "'step' must be a str" in text


# --- ingress -------------------------------------------------------------------------------


def test_ingress_publishes_and_answers_202() -> None:
    rt = runtime()
    client = FakePublisherClient()
    rt.bus = PubSubPublisher(client, "projects/p/topics/bus")
    event = restock("i1", 3)
    text, status, _ = process_ingest(rt, "POST", "/events", {
        "content-type": "application/cloudevents+json"}, jsonformat_bytes(event))
    assert status == 202 and json.loads(text)["ids"] == [event.id]
    [(_, _, attributes, _)] = client.sent
    assert attributes["ce-id"] == event.id and attributes["ce-traceparent"]


def jsonformat_bytes(event: Event) -> bytes:
    from handlers.core import jsonformat

    return jsonformat.dumps(event).encode()


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/events", b"{}", 400), ("GET", "/events", b"", 405), ("POST", "/x", b"", 404)])
def test_ingress_refusals(method: str, path: str, body: bytes, status: int) -> None:
    assert process_ingest(runtime(), method, path, {}, body)[1] == status


# --- publisher and notifier -----------------------------------------------------------------


def test_publisher_resends_only_the_failed_messages() -> None:
    events = [restock(f"i{n}", n + 1) for n in range(4)]
    flaky = pb.to_message(events[2]).data
    client = FakePublisherClient(fail={flaky: 1})
    PubSubPublisher(client, "t", sleep=lambda _: None).publish(events)
    sent = [data for _, data, _, _ in client.sent]
    assert len(sent) == 5 and sent.count(flaky) == 2
    assert all(sent.count(pb.to_message(e).data) == 1 for i, e in enumerate(events) if i != 2)


def test_publisher_gives_up_with_a_transient_error_naming_the_failures() -> None:
    event = restock("i", 1)
    client = FakePublisherClient(fail={pb.to_message(event).data: 99})
    with pytest.raises(TransientError, match="1 of 1 messages not accepted"):
        PubSubPublisher(client, "t", sleep=lambda _: None).publish([event])


def test_publisher_refuses_oversized_events_before_sending_anything() -> None:
    big = Event.new("s", "t", "x" * pb.MAX_MESSAGE_BYTES)
    client = FakePublisherClient()
    with pytest.raises(PermanentError, match="over Pub/Sub's limit"):
        PubSubPublisher(client, "t").publish([restock("i", 1), big])
    assert client.sent == []


def test_publisher_ordering_key_is_opt_in() -> None:
    client = FakePublisherClient()
    event = order_created("o9", [("i", 1, 1.0)]).with_extensions()
    PubSubPublisher(client, "t").publish([event])
    PubSubPublisher(client, "t", ordering_key=lambda e: "key-" + e.id).publish([event])
    assert [key for *_, key in client.sent] == ["", f"key-{event.id}"]


def test_notifier_publishes_json_with_the_notification_id() -> None:
    client = FakePublisherClient()
    PubSubNotifier(PubSubPublisher(client, "n")).notify("n-1", {"message": "hi"})
    [(_, data, attributes, _)] = client.sent
    assert json.loads(data) == {"message": "hi"} and attributes["notification_id"] == "n-1"


# --- saga starter ---------------------------------------------------------------------------


class FakeExecutions:
    def __init__(self) -> None:
        self.created: list[Mapping[str, Any]] = []

    def create(self, argument: Mapping[str, Any]) -> str:
        self.created.append(argument)
        return f"executions/{len(self.created)}"


def test_starter_creates_one_execution_per_saga() -> None:
    store, clock, api = MemoryStore(), FixedClock(), FakeExecutions()
    starter = WorkflowsSagaStarter(store, clock, api)
    assert starter.start("order-1", {"order_id": "1"}, "00-t") is True
    assert starter.start("order-1", {"order_id": "1"}, "00-t") is False
    assert starter.start("order-3", {"order_id": "3"}, None) is True
    assert api.created[0] == {"saga_id": "order-1", "input": {"order_id": "1"},
                              "traceparent": "00-t"}
    assert api.created[1]["traceparent"].startswith("00-")  # a saga always has a trace
    assert len(api.created) == 2
    assert store.get(STARTS, "order-1")["execution"] == "executions/1"


def test_starter_retries_while_another_start_is_in_flight_and_takes_over_a_stale_one(
        ) -> None:
    store, clock, api = MemoryStore(), FixedClock(), FakeExecutions()
    store.put_if_absent(STARTS, "order-2", {"status": "starting",
                                             "claimed_at": clock.now().isoformat()})
    starter = WorkflowsSagaStarter(store, clock, api, lease_s=60)
    with pytest.raises(TransientError, match="being started"):
        starter.start("order-2", {"order_id": "2"}, None)
    clock.advance(timedelta(seconds=61).total_seconds())
    assert starter.start("order-2", {"order_id": "2"}, None) is True
    assert len(api.created) == 1 and store.get(STARTS, "order-2")["status"] == "started"


def test_settings_report_every_missing_value() -> None:
    with pytest.raises(RuntimeError) as caught:
        Settings.from_env({"SWITCHYARD_DECLINE_ABOVE_CENTS": "ten"})
    assert "SWITCHYARD_PROJECT" in str(caught.value) and "whole cents" in str(caught.value)
    settings = Settings.from_env({"SWITCHYARD_PROJECT": "p", "SWITCHYARD_CONSUMER": "orders"})
    assert (settings.project, settings.consumer, settings.database) == ("p", "orders",
                                                                        "(default)")
