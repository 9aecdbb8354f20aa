"""`switchyard send --stack S --outputs FILE` against the stack in moto.

The stack is `MotoStack` (bus, one rule per consumer with the generated pattern, each
targeting its consumer's SQS queue); the outputs file is its `switchyard` output
(`tests/aws/test_ops.py`). Nothing runs the functions: each test reads the consumers'
queues to see what EventBridge routed there, decoded the way the Lambda entry decodes it.

moto never fails an entry of a PutEvents call, so partial failures are injected by a
wrapper around the real client (`Refusing`): entries of chosen event ids are held back
(they never reach moto's bus) and answered with the error code in their position, as AWS
answers; the other entries go to moto.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapters.aws.eventbridge_limits import MAX_DELIVERABLE_BYTES
from adapters.aws.eventbridge_publisher import EventBridgePublisher, FailedEntry
from cli.main import main
from cli.ops.aws_send import AwsSender
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED, NOTIFICATION_SENT, ORDER_CREATED
from handlers.core.eventbridge_binding import from_eventbridge_event
from handlers.core.events import Event
from handlers.core.http_binding import to_batch
from tests.aws.moto_stack import MotoStack
from tests.aws.test_ops import outputs_of
from tests.factories import order_created, restock

STACK = "dev-aws"
RESTOCK = {"item_id": "A", "quantity": 5, "action": "restock"}
SEEDS = Path(__file__).resolve().parents[1] / "events" / "aws"


@pytest.fixture
def stack(aws: None) -> Iterator[MotoStack]:
    yield MotoStack.create(APP)


@pytest.fixture
def outputs(stack: MotoStack, tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_of(stack)))
    return path


class Refusing:
    """The real (moto) EventBridge client, recording every PutEvents call; entries whose
    event id is in `refuse` fail with that error code, every time they are sent."""

    def __init__(self, client: Any, refuse: dict[str, str]) -> None:
        self._client = client
        self.refuse = refuse
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        ids = [json.loads(e["Detail"])["metadata"]["id"] for e in Entries]
        self.calls.append(ids)
        passed = [e for e, i in zip(Entries, ids, strict=True) if i not in self.refuse]
        answer = self._client.put_events(Entries=passed) if passed else \
            {"FailedEntryCount": 0, "Entries": []}
        real = iter(answer["Entries"])
        results = [{"ErrorCode": self.refuse[i], "ErrorMessage": f"injected for {i}"}
                   if i in self.refuse else next(real) for i in ids]
        failed = answer["FailedEntryCount"] + sum(1 for i in ids if i in self.refuse)
        return {"FailedEntryCount": failed, "Entries": results}


@pytest.fixture
def refusing(stack: MotoStack, monkeypatch: pytest.MonkeyPatch) -> Refusing:
    """Route the command's client through `Refusing` (nothing refused until told)."""
    client = Refusing(stack.client("events"), {})

    def connect(cls: type[AwsSender], outputs: Any, catalog: Any) -> AwsSender:
        sender = cls(outputs, catalog, client)
        sender._publisher = EventBridgePublisher(client, outputs.bus_arn, catalog,
                                                 sleep=lambda s: None)
        return sender

    monkeypatch.setattr(AwsSender, "connect", classmethod(connect))
    return client


def send(capsys: pytest.CaptureFixture[str], outputs: Path, *argv: str
         ) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["send", "--stack", STACK, "--outputs", str(outputs), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def without_trace(event: Event) -> Event:
    return replace(event, extensions={k: v for k, v in event.extensions.items()
                                      if k != "traceparent"})


def routed(stack: MotoStack, consumer: str) -> list[dict[str, Any]]:
    """The EventBridge events waiting in a consumer's queue (received and deleted)."""
    return [json.loads(m["Body"]) for m in stack.drain(stack.queue_urls[consumer])]


def test_type_and_data_arrive_on_the_consumers_queue(
        stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = send(capsys, outputs, "--type", INVENTORY_UPDATED,
                          "--data", json.dumps(RESTOCK), "--subject", "A")
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    event_id = line.split()[1]
    assert line == f"sent {event_id} ({INVENTORY_UPDATED}) to {stack.bus_arn}"
    [body] = routed(stack, "inventory")
    assert (body["source"], body["detail-type"]) == ("inventory", "Inventory Updated")
    assert body["detail"]["data"] == RESTOCK
    assert body["detail"]["metadata"]["id"] == event_id
    event = from_eventbridge_event(body, APP.catalog)
    assert (event.id, event.type, event.subject, event.data) == (
        event_id, INVENTORY_UPDATED, "A", RESTOCK)
    assert event.traceparent  # started here, as the HTTP ingress starts one
    assert routed(stack, "orders") == []


def test_a_putevents_file_of_the_seeds_is_routed_as_the_seeds_are(
        stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = json.loads((SEEDS / "eventbridge-putevents-body-seeds.json").read_text())["input"]
    path = outputs.parent / "entries.json"
    path.write_text(json.dumps(body))
    code, out, _ = send(capsys, outputs, "--file", str(path), "--json")
    assert code == 0
    answer = json.loads(out)
    assert (answer["accepted"], answer["bus"]) == (3, stack.bus_arn)
    orders = {b["detail-type"]: b for b in routed(stack, "orders")}
    assert set(orders) == {"Order Created", "Workflow Triggered"}
    assert orders["Order Created"]["source"] == "orders"
    assert orders["Order Created"]["detail"]["data"] == json.loads(
        body["Entries"][0]["Detail"])
    assert orders["Workflow Triggered"]["detail"]["data"] == {"workflow_id": "wf-1",
                                                              "order_id": "123"}
    [inventory] = routed(stack, "inventory")
    assert (inventory["source"], inventory["detail"]["data"]) == (
        "inventory", {"item_id": "A", "quantity": 10, "action": "restock"})
    got = {from_eventbridge_event(b, APP.catalog).id for b in [*orders.values(), inventory]}
    assert got == set(answer["ids"])
    [analytics] = routed(stack, "order-analytics")  # the fan-out's other consumer
    assert analytics["detail-type"] == "Order Created"


def test_a_batch_goes_out_in_putevents_calls_of_ten(
        stack: MotoStack, outputs: Path, refusing: Refusing,
        capsys: pytest.CaptureFixture[str]) -> None:
    events = [restock(f"B{n}", n + 1) for n in range(23)] + [
        order_created("b-1", [("B0", 1, 2.5)])]
    path = outputs.parent / "batch.json"
    path.write_bytes(to_batch(events)[1])
    code, out, _ = send(capsys, outputs, "--file", str(path))
    assert code == 0 and len(out.splitlines()) == 24
    assert [len(c) for c in refusing.calls] == [10, 10, 4]
    arrived = [from_eventbridge_event(b, APP.catalog) for b in routed(stack, "inventory")]
    assert sorted(e.id for e in arrived) == sorted(e.id for e in events[:23])
    originals = {e.id: e for e in events}
    for event in arrived:  # the same events, plus the trace context started on sending
        assert event.traceparent and without_trace(event) == originals[event.id]
    [order] = [from_eventbridge_event(b, APP.catalog) for b in routed(stack, "orders")]
    assert (order.id, order.type, order.data) == (events[-1].id, ORDER_CREATED,
                                                   events[-1].data)


def test_stdin(stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"Source": "workflow", "DetailType": "Workflow Triggered",
             "Detail": json.dumps({"workflow_id": "wf-9", "order_id": "9"})}
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps({"Entries": [entry]}).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, _, _ = send(capsys, outputs, "--file", "-")
    assert code == 0
    [body] = routed(stack, "orders")
    assert (body["detail-type"], body["detail"]["data"]["order_id"]) == (
        "Workflow Triggered", "9")


def test_refused_entries_are_reported_with_their_codes_and_the_rest_arrive(
        stack: MotoStack, outputs: Path, refusing: Refusing,
        capsys: pytest.CaptureFixture[str]) -> None:
    events = [restock(f"P{n}", n + 1) for n in range(12)]
    denied, throttled = events[3].id, events[11].id
    refusing.refuse = {denied: "AccessDeniedException", throttled: "ThrottlingException"}
    path = outputs.parent / "batch.json"
    path.write_bytes(to_batch(events)[1])
    code, out, err = send(capsys, outputs, "--file", str(path), "--json")
    assert code == 1
    answer = json.loads(out)
    assert answer["accepted"] == 10
    assert answer["failed"] == [
        {"id": denied, "type": INVENTORY_UPDATED,
         "error": f"AccessDeniedException: injected for {denied}"},
        {"id": throttled, "type": INVENTORY_UPDATED,
         "error": f"ThrottlingException: injected for {throttled}"}]
    assert f"NOT sent {denied} ({INVENTORY_UPDATED}): AccessDeniedException" in err
    assert f"NOT sent {throttled} ({INVENTORY_UPDATED}): ThrottlingException" in err
    assert err.splitlines()[-1] == (f"switchyard send: 2 of 12 events not accepted by "
                                    f"{stack.bus_arn}; the others were sent")
    # Only what failed was sent again, and only while a retry could help: AWS documents
    # ThrottlingException as retryable, AccessDeniedException as not.
    resent = [i for call in refusing.calls[2:] for i in call]
    assert set(resent) == {throttled} and len(resent) == 3
    assert refusing.calls[0].count(denied) == 1 and denied not in resent
    arrived = sorted(from_eventbridge_event(b, APP.catalog).id
                     for b in routed(stack, "inventory"))
    assert arrived == sorted(set(e.id for e in events) - {denied, throttled})


def test_nothing_is_sent_when_any_event_is_invalid_or_too_big(
        stack: MotoStack, outputs: Path, refusing: Refusing,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = Event.new("inventory", INVENTORY_UPDATED, {"item_id": "A", "action": "restock"})
    path = outputs.parent / "batch.json"
    path.write_bytes(to_batch([restock("A", 1), bad])[1])
    code, out, err = send(capsys, outputs, "--file", str(path))
    assert (code, out) == (2, "")
    assert "event[1]" in err and "quantity" in err and len(err.splitlines()) == 1

    big = Event.new("notifications", NOTIFICATION_SENT, {"message": "m" * MAX_DELIVERABLE_BYTES})
    path.write_bytes(to_batch([restock("A", 1), big])[1])
    code, out, err = send(capsys, outputs, "--file", str(path))
    assert (code, out) == (2, "")
    assert f"over {MAX_DELIVERABLE_BYTES} bytes" in err and f"event '{big.id}'" in err
    assert refusing.calls == [] and routed(stack, "inventory") == []


def test_put_reports_what_put_events_still_refuses(stack: MotoStack) -> None:
    """The publisher's own per-entry report (what `send` prints from)."""
    client = Refusing(stack.client("events"), {})
    events = [restock(f"Q{n}", 1) for n in range(3)]
    client.refuse = {events[0].id: "InternalFailure", events[2].id: "MalformedDetail"}
    publisher = EventBridgePublisher(client, stack.bus_arn, APP.catalog, sleep=lambda s: None)
    failed = publisher.put(events)
    assert failed == [
        FailedEntry(events[0], "InternalFailure", f"injected for {events[0].id}"),
        FailedEntry(events[2], "MalformedDetail", f"injected for {events[2].id}")]
    assert client.calls[1:] == [[events[0].id]] * 3  # only the retryable one, re-sent
    client.calls.clear()
    client.refuse = {}
    assert publisher.put(events) == [] and client.calls == [[e.id for e in events]]
