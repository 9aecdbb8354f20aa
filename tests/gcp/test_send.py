"""`switchyard send --stack S --outputs FILE` against Google's Pub/Sub emulator.

Only the bus matters here, so this module starts the Pub/Sub emulator alone (not the
session's functions): a bus topic, a pull subscription on it standing in for a consumer's
push subscription, and an outputs file naming them. What arrives is read back the way the
consumer function reads a push (`pubsub_binding.read_push` on the envelope Pub/Sub would
POST) and must be the event that was sent.

The emulator never fails a publish, so a failure is injected by a wrapper around the real
client (`Refusing`): for the chosen event ids `publish` returns a future that raises (the
message is not sent), as the client library reports a failed publish.
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapters.gcp.entry import CLAIM_CHECK_ABOVE
from adapters.gcp.pubsub_binding import PubSubMessage, push_envelope, read_push
from adapters.gcp.topology import subscription_path, topic_path
from adapters.stack_outputs import OUTPUT_NAME, OUTPUT_VERSION
from cli.main import main
from cli.ops.gcp_send import GcpSender
from handlers.catalog import INVENTORY_UPDATED, NOTIFICATION_SENT, ORDER_CREATED, WORKFLOW_TRIGGERED
from handlers.core.events import Event
from handlers.core.http_binding import to_batch
from tests.eventually import eventually
from tests.factories import order_created, restock
from tests.gcp.conftest import PROJECT, Processes, _port_open, _sdk_root, free_port

pytestmark = pytest.mark.slow
STACK = "dev-gcp"
RESTOCK = {"item_id": "A", "quantity": 5, "action": "restock"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Pub/Sub emulator alone, on a free port; stopped by PID afterwards."""
    procs = Processes(tmp_path_factory.mktemp("pubsub-logs"))
    port = free_port()
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    try:
        procs.start("pubsub-emulator", [
            str(_sdk_root() / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"),
            "--host=127.0.0.1", f"--port={port}"])
        eventually(lambda: _port_open(port), "the Pub/Sub emulator", 60)
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        yield os.environ["PUBSUB_EMULATOR_HOST"]
    finally:
        procs.stop_all()
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved


class Bus:
    """A bus topic of its own, a pull subscription on it, and the stack's outputs file."""

    def __init__(self, directory: Path) -> None:
        from google.cloud import pubsub_v1

        mine = uuid.uuid4().hex[:8]
        self.topic = f"sy-{mine}-events"
        self.subscription = f"sy-{mine}-tap"
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.publisher.create_topic(request={"name": topic_path(PROJECT, self.topic)})
        self.subscriber.create_subscription(request={
            "name": subscription_path(PROJECT, self.subscription),
            "topic": topic_path(PROJECT, self.topic), "ack_deadline_seconds": 60})
        self.outputs = directory / "outputs.json"
        self.outputs.write_text(json.dumps({OUTPUT_NAME: {
            "version": OUTPUT_VERSION, "cloud": "gcp", "prefix": f"sy-{mine}",
            "project": PROJECT, "busTopic": self.topic, "replaySubscription": f"sy-{mine}-r",
            "consumers": {"inventory": {"subscription": f"sy-{mine}-inventory",
                                        "deadLetterTopic": f"sy-{mine}-inventory-dlq",
                                        "deadLetterSubscription": f"sy-{mine}-dlq-pull"}}}}))

    def path(self) -> str:
        return topic_path(PROJECT, self.topic)

    def pull(self, expected: int) -> list[Any]:
        """At least `expected` messages (acked), waiting for them to arrive."""
        got: list[Any] = []

        def enough() -> bool:
            response = self.subscriber.pull(request={
                "subscription": subscription_path(PROJECT, self.subscription),
                "max_messages": 100}, timeout=10)
            if response.received_messages:
                self.subscriber.acknowledge(request={
                    "subscription": subscription_path(PROJECT, self.subscription),
                    "ack_ids": [m.ack_id for m in response.received_messages]})
                got.extend(m.message for m in response.received_messages)
            return len(got) >= expected

        eventually(enough, f"{expected} messages on {self.subscription}", 30, interval=0.2)
        return got

    def nothing_more(self) -> bool:
        # return_immediately is deprecated for consumers; for "is anything there" it fits.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            response = self.subscriber.pull(request={
                "subscription": subscription_path(PROJECT, self.subscription),
                "max_messages": 100, "return_immediately": True}, timeout=10)
        return not response.received_messages


@pytest.fixture
def bus(emulator: str, tmp_path: Path) -> Bus:
    return Bus(tmp_path)


def consumed(message: Any) -> Event:
    """The event the consumer function decodes from this message's push request."""
    envelope = push_envelope(PubSubMessage(message.data, dict(message.attributes)),
                             message_id=message.message_id)
    event, _ = read_push({"content-type": "application/json"}, json.dumps(envelope).encode())
    return event


def without_trace(event: Event) -> Event:
    return replace(event, extensions={k: v for k, v in event.extensions.items()
                                      if k != "traceparent"})


def send(capsys: pytest.CaptureFixture[str], bus: Bus, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["send", "--stack", STACK, "--outputs", str(bus.outputs), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_type_and_data_arrive_in_binary_mode_and_decode_to_the_event(
        bus: Bus, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = send(capsys, bus, "--type", INVENTORY_UPDATED, "--data",
                          json.dumps(RESTOCK), "--id", "send-1", "--subject", "A")
    assert (code, err) == (0, "")
    assert out == f"sent send-1 ({INVENTORY_UPDATED}) to {bus.path()}\n"
    [message] = bus.pull(1)
    attributes = dict(message.attributes)
    assert attributes["ce-id"] == "send-1" and attributes["ce-type"] == INVENTORY_UPDATED
    assert attributes["ce-source"] == "inventory" and attributes["ce-specversion"] == "1.0"
    assert attributes["ce-subject"] == "A" and attributes["ce-traceparent"]
    assert attributes["content-type"] == "application/json"
    assert json.loads(message.data) == RESTOCK
    event = consumed(message)
    assert (event.id, event.source, event.type, event.subject, event.data) == (
        "send-1", "inventory", INVENTORY_UPDATED, "A", RESTOCK)
    assert event.traceparent == attributes["ce-traceparent"]


def test_a_batch_and_a_putevents_body_arrive_as_the_same_events(
        bus: Bus, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    events = [restock("A", 1), order_created("g-1", [("A", 1, 2.5)]), restock("B", 2)]
    batch = tmp_path / "batch.json"
    batch.write_bytes(to_batch(events)[1])
    code, out, _ = send(capsys, bus, "--file", str(batch), "--json")
    assert code == 0
    assert json.loads(out) == {"accepted": 3, "ids": [e.id for e in events], "bus": bus.path()}
    got = {e.id: e for e in map(consumed, bus.pull(3))}
    assert {i: without_trace(e) for i, e in got.items()} == {e.id: e for e in events}
    assert all(e.traceparent for e in got.values())

    entries = tmp_path / "entries.json"
    entries.write_text(json.dumps({"Entries": [
        {"Source": "workflow", "DetailType": "Workflow Triggered",
         "Detail": json.dumps({"workflow_id": "wf-1", "order_id": "123"})},
        {"Source": "orders", "DetailType": "Order Created",
         "Detail": json.dumps({"metadata": {"event_id": "seed-7"},
                               "data": events[1].data})}]}))
    code, out, _ = send(capsys, bus, "--file", str(entries))
    assert code == 0 and len(out.splitlines()) == 2
    got = {e.type: e for e in map(consumed, bus.pull(2))}
    assert got[WORKFLOW_TRIGGERED].data == {"workflow_id": "wf-1", "order_id": "123"}
    assert (got[ORDER_CREATED].id, got[ORDER_CREATED].data) == ("seed-7", events[1].data)
    assert got[ORDER_CREATED].source == "orders"


def test_stdin(bus: Bus, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> None:
    event = restock("S", 3)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(to_batch([event])[1])))
    assert send(capsys, bus, "--file", "-")[0] == 0
    assert [consumed(m).id for m in bus.pull(1)] == [event.id]


class Refusing:
    """The real (emulator) client; publishes of the chosen event ids fail, every time."""

    def __init__(self, client: Any, refuse: set[str]) -> None:
        self._client = client
        self.refuse = refuse
        self.calls: list[str] = []

    def publish(self, topic: str, data: bytes, ordering_key: str = "", **attrs: str) -> Any:
        event_id = attrs.get("ce-id") or str(json.loads(data)["id"])
        self.calls.append(event_id)
        if event_id in self.refuse:
            failed: Future[str] = Future()
            failed.set_exception(PermissionError(f"injected: {event_id} refused"))
            return failed
        return self._client.publish(topic, data, ordering_key=ordering_key, **attrs)


def test_a_failed_publish_is_reported_and_the_rest_arrive(
        bus: Bus, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.gcp import pubsub_publisher

    events = [restock(f"F{n}", n + 1) for n in range(4)]
    client = Refusing(bus.publisher, {events[2].id})
    monkeypatch.setattr(GcpSender, "connect",
                        classmethod(lambda cls, outputs: cls(outputs, client)))
    monkeypatch.setattr(pubsub_publisher, "_BACKOFF_S", 0.0)
    batch = tmp_path / "batch.json"
    batch.write_bytes(to_batch(events)[1])
    code, out, err = send(capsys, bus, "--file", str(batch))
    assert code == 1
    assert len(out.splitlines()) == 3 and events[2].id not in out
    assert (f"NOT sent {events[2].id} ({INVENTORY_UPDATED}): PermissionError: injected: "
            f"{events[2].id} refused") in err
    assert err.splitlines()[-1] == (f"switchyard send: 1 of 4 events not accepted by "
                                    f"{bus.path()}; the others were sent")
    assert client.calls.count(events[2].id) == 3  # re-sent, alone, until attempts ran out
    assert all(client.calls.count(e.id) == 1 for e in events if e is not events[2])
    arrived = sorted(consumed(m).id for m in bus.pull(3))
    assert arrived == sorted(e.id for i, e in enumerate(events) if i != 2)


def test_nothing_is_sent_when_an_event_is_over_the_claim_check_size(
        bus: Bus, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    big = Event.new("notifications", NOTIFICATION_SENT, {"message": "m" * CLAIM_CHECK_ABOVE})
    batch = tmp_path / "batch.json"
    batch.write_bytes(to_batch([restock("A", 1), big])[1])
    code, out, err = send(capsys, bus, "--file", str(batch))
    assert (code, out) == (2, "")
    assert f"over {CLAIM_CHECK_ABOVE} bytes" in err and f"event '{big.id}'" in err
    assert bus.nothing_more()
