"""EventBridge publisher: batches of 10, sizes checked first, only failed entries re-sent;
and on moto, what it publishes comes back from the bus as exactly the same Event."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from adapters.aws.eventbridge_limits import MAX_DELIVERABLE_BYTES as LIMIT
from adapters.aws.eventbridge_limits import entry_size
from adapters.aws.eventbridge_publisher import EntryTooLarge, EventBridgePublisher
from handlers.catalog import CATALOG, INVENTORY_UPDATED
from handlers.core.errors import TransientError
from handlers.core.eventbridge_binding import from_eventbridge_event
from handlers.core.events import Event
from tests.factories import order_created


def restock(n: int, **extensions: str) -> Event:
    return Event.new("inventory", INVENTORY_UPDATED,
                     {"item_id": f"item-{n}", "quantity": n + 1, "action": "restock"},
                     id=f"ev-{n}", extensions=extensions)


class FakeEvents:
    """put_events that fails the entries whose id is scheduled to fail (per attempt)."""

    def __init__(self, failures: list[set[str]] | None = None, raises: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.failures = failures or []
        self.raises = raises

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        ids = [json.loads(e["Detail"])["metadata"]["id"] for e in Entries]
        self.calls.append(ids)
        if self.raises:
            self.raises -= 1
            raise ConnectionError("throttled")
        failing = self.failures.pop(0) if self.failures else set()
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
                   if i in failing else {"EventId": f"eb-{i}"} for i in ids]
        return {"FailedEntryCount": sum(1 for i in ids if i in failing), "Entries": results}


def publisher(client: Any, **kw: Any) -> EventBridgePublisher:
    return EventBridgePublisher(client, "bus", CATALOG, sleep=lambda s: None, **kw)


def test_batches_of_at_most_ten() -> None:
    client = FakeEvents()
    publisher(client).publish([restock(n) for n in range(23)])
    assert [len(c) for c in client.calls] == [10, 10, 3]


def test_only_failed_entries_are_resent() -> None:
    client = FakeEvents(failures=[{"ev-2", "ev-6"}, {"ev-6"}])
    publisher(client).publish([restock(n) for n in range(8)])
    assert client.calls == [[f"ev-{n}" for n in range(8)], ["ev-2", "ev-6"], ["ev-6"]]


def test_entries_still_failing_are_a_transient_error_naming_the_cause() -> None:
    client = FakeEvents(failures=[{"ev-1"}] * 10)
    with pytest.raises(TransientError, match="1 of 3 entries still failing.*InternalFailure"):
        publisher(client, max_attempts=3).publish([restock(n) for n in range(3)])
    assert client.calls[1:] == [["ev-1"], ["ev-1"]]


def test_a_call_that_raises_is_retried_whole() -> None:
    client = FakeEvents(raises=1)
    publisher(client).publish([restock(1)])
    assert client.calls == [["ev-1"], ["ev-1"]]


def test_size_is_checked_before_anything_is_sent() -> None:
    client = FakeEvents()
    pub = publisher(client)
    small = restock(0)
    fits = order_created("o", [("A", 1, 1.0)])
    overhead = entry_size(pub.entries([fits])[0]) - len(fits.data["customer_id"])
    at_limit = order_created("o", [("A", 1, 1.0)], customer="c" * (LIMIT - overhead))
    assert entry_size(pub.entries([at_limit])[0]) == LIMIT
    over = order_created("o", [("A", 1, 1.0)], customer="c" * (LIMIT - overhead + 1))
    with pytest.raises(EntryTooLarge) as caught:
        pub.publish([small, over])
    assert client.calls == []  # not even the small one went out
    assert f"is {LIMIT + 1} bytes" in str(caught.value)
    pub.publish([at_limit])
    assert len(client.calls) == 1


def test_published_events_come_back_from_the_bus_unchanged(aws: None) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="bus")
    url = sqs.create_queue(QueueName="tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="bus",
                    EventPattern=json.dumps({"source": ["inventory", "orders"]}))
    events.put_targets(Rule="all", EventBusName="bus", Targets=[{"Id": "tap", "Arn": arn}])
    sent = [restock(n, traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            for n in range(12)] + [order_created("o-1", [("A", 2, 10.0)])]
    publisher(events).publish(sent)

    got = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for m in messages:
            got.append(from_eventbridge_event(json.loads(m["Body"]), CATALOG))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(got, key=lambda e: e.id) == sorted(sent, key=lambda e: e.id)
