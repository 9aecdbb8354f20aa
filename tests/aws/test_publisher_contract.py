"""The Publisher contract (`tests/contract/publisher_contract.py`) on EventBridge (moto).

What arrives is read the way consumers read it: a rule on the bus targets an SQS queue,
and each delivered message is decoded with `from_eventbridge_event`. moto never fails an
entry of a PutEvents call, so partial failures are injected by a wrapper around the real
client: it holds back the entries chosen to fail (they never reach moto's bus) and answers
for them with `ErrorCode`/`ErrorMessage` in their position, exactly as AWS does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import tests.contract.publisher_contract as contract
from adapters.aws.eventbridge_limits import MAX_DELIVERABLE_BYTES, entry_size
from adapters.aws.eventbridge_publisher import EventBridgePublisher
from handlers.catalog import CATALOG
from handlers.core.eventbridge_binding import from_eventbridge_event, to_put_events_entry
from handlers.core.events import Event

for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)

BUS = "contract-bus"
SOURCES = ["inventory", "orders", "blobs"]


class RecordingEvents:
    """The real (moto) EventBridge client, recording every PutEvents call and failing the
    entries of chosen ids once, the way AWS reports a partial failure."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[list[str]] = []
        self.failing: set[str] = set()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        ids = [json.loads(e["Detail"])["metadata"]["id"] for e in Entries]
        self.calls.append(ids)
        fail = [i in self.failing for i in ids]
        self.failing -= set(ids)
        passed = [e for e, f in zip(Entries, fail, strict=True) if not f]
        answer = self._client.put_events(Entries=passed) if passed else \
            {"FailedEntryCount": 0, "Entries": []}
        real = iter(answer["Entries"])
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"} if f
                   else next(real) for f in fail]
        return {"FailedEntryCount": answer["FailedEntryCount"] + sum(fail), "Entries": results}


class EventBridgeHarness:
    per_call = 10
    no_partial_failures = None
    limit_bytes = MAX_DELIVERABLE_BYTES  # what reaches the rule's SQS target

    def __init__(self) -> None:
        events, self._sqs = boto3.client("events"), boto3.client("sqs")
        events.create_event_bus(Name=BUS)
        self._url = self._sqs.create_queue(QueueName="contract-tap")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        events.put_rule(Name="all", EventBusName=BUS,
                        EventPattern=json.dumps({"source": SOURCES}))
        events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": arn}])
        self.client = RecordingEvents(events)
        self.publisher = EventBridgePublisher(self.client, BUS, CATALOG, sleep=lambda s: None)
        self._received: list[Event] = []

    def size_of(self, event: Event) -> int:
        return entry_size(to_put_events_entry(event, CATALOG, BUS))

    def received(self) -> list[Event]:
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._url,
                                                 MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return list(self._received)
            for m in messages:
                self._received.append(from_eventbridge_event(json.loads(m["Body"]), CATALOG))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=m["ReceiptHandle"])

    def sends(self) -> list[list[str]]:
        return list(self.client.calls)

    def fail_next(self, ids: set[str]) -> None:
        self.client.failing |= ids


@pytest.fixture
def harness(aws: None) -> Iterator[EventBridgeHarness]:
    yield EventBridgeHarness()


def test_the_whole_contract_is_collected() -> None:
    names = [n for n in dir(contract) if n.startswith("test_")]
    assert len(names) >= 6 and all(n in globals() for n in names)


