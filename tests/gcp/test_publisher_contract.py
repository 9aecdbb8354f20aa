"""The Publisher contract (`tests/contract/publisher_contract.py`) on the Pub/Sub emulator.

Each test publishes to a topic of its own and reads back through a pull subscription,
decoding each message with `pubsub_binding.from_message`, as the push entry does. The
emulator never fails a publish, so partial failures are injected by a wrapper around the
real client: for the ids chosen to fail, `publish` returns a future that raises (the
message is not sent), as the client library reports a failed publish; the rest go to the
emulator. Pub/Sub has no per-call entry limit for this adapter (the client batches on its
own), so only the size limit is checked: 10 MB per publish request, which is what the
client library enforces (data, attributes, topic name and framing).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import tests.contract.publisher_contract as contract
from adapters.gcp import pubsub_binding
from adapters.gcp.pubsub_publisher import MAX_REQUEST_BYTES, PubSubPublisher, request_size
from adapters.gcp.topology import subscription_path, topic_path
from handlers.core.errors import PermanentError
from handlers.core.events import Event
from tests.gcp.conftest import PROJECT, GcpEmulated

for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


def _id_of(data: bytes, attributes: dict[str, str]) -> str:
    return attributes.get("ce-id") or str(json.loads(data)["id"])


class RecordingClient:
    """The real PublisherClient, recording every message handed to it and failing chosen
    ids once (a future that raises, nothing sent)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[list[str]] = []
        self.failing: set[str] = set()

    def publish(self, topic: str, data: bytes, ordering_key: str = "", **attrs: str) -> Any:
        event_id = _id_of(data, attrs)
        self.calls.append([event_id])
        if event_id in self.failing:
            self.failing.discard(event_id)
            failed: Future[str] = Future()
            failed.set_exception(RuntimeError("injected: publish failed"))
            return failed
        return self._client.publish(topic, data, ordering_key=ordering_key, **attrs)


def _subscriber_taking_big_pulls() -> Any:
    """A subscriber whose channel takes a pull answer carrying a 10 MB message (gRPC's
    default receive limit is 4 MiB; push delivery, what the functions get, has no such cap)."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    channel = grpc.insecure_channel(os.environ["PUBSUB_EMULATOR_HOST"], options=[
        ("grpc.max_receive_message_length", 2 * MAX_REQUEST_BYTES)])
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


class PubSubHarness:
    per_call = None
    no_partial_failures = None
    limit_bytes = MAX_REQUEST_BYTES

    def __init__(self) -> None:
        from google.cloud import pubsub_v1

        name = f"contract-{uuid.uuid4().hex[:10]}"
        self._publisher_client = pubsub_v1.PublisherClient()
        self._subscriber = _subscriber_taking_big_pulls()
        self._topic = topic = topic_path(PROJECT, name)
        self._publisher_client.create_topic(request={"name": topic})
        self._sub = subscription_path(PROJECT, name)
        self._subscriber.create_subscription(request={"name": self._sub, "topic": topic})
        self.client = RecordingClient(self._publisher_client)
        self.publisher = PubSubPublisher(self.client, topic, sleep=lambda s: None)
        self._received: list[Event] = []

    def size_of(self, event: Event) -> int:
        return request_size(self._topic, pubsub_binding.to_message(event))

    def received(self) -> list[Event]:
        # Everything was published (the futures resolved) before this is called; the
        # emulator delivers at once, so pull until a pull comes back empty.
        while True:
            response = self._subscriber.pull(request={"subscription": self._sub,
                                                      "max_messages": 100}, timeout=10)
            if not response.received_messages:
                return sorted(self._received, key=lambda e: e.id)
            self._subscriber.acknowledge(request={
                "subscription": self._sub,
                "ack_ids": [m.ack_id for m in response.received_messages]})
            self._received.extend(pubsub_binding.from_message(m.message.data,
                                                              dict(m.message.attributes))
                                  for m in response.received_messages)

    def sends(self) -> list[list[str]]:
        return list(self.client.calls)

    def fail_next(self, ids: set[str]) -> None:
        self.client.failing |= ids

    def close(self) -> None:
        self._subscriber.close()
        self._publisher_client.transport.close()


@pytest.fixture
def harness(gcp: GcpEmulated) -> Iterator[PubSubHarness]:
    made = PubSubHarness()
    yield made
    made.close()


def test_the_whole_contract_is_collected() -> None:
    names = [n for n in dir(contract) if n.startswith("test_")]
    assert len(names) >= 6 and all(n in globals() for n in names)


# --- without the emulator: the two bugs this contract found ----------------------------

class _Done:
    def result(self, timeout: float | None = None) -> str:
        return "id"


class _RaisesOnce:
    """The client library raises from `publish()` itself for some errors (a message too
    large for a request, a stopped batch): that must be a resend, not an escape."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.calls: list[str] = []

    def publish(self, topic: str, data: bytes, ordering_key: str = "", **attrs: str) -> Any:
        self.calls.append(attrs["ce-id"])
        if attrs["ce-id"] == self.bad and self.calls.count(self.bad) == 1:
            raise RuntimeError("publish after stop()")
        return _Done()


def test_a_publish_call_that_raises_is_resent_alone() -> None:
    client = _RaisesOnce("ev-2")
    PubSubPublisher(client, "projects/p/topics/t", sleep=lambda s: None).publish(
        [contract.restock(n) for n in range(4)])
    assert client.calls == ["ev-0", "ev-1", "ev-2", "ev-3", "ev-2"]


def test_data_and_attributes_within_10_mb_can_still_be_a_too_large_request() -> None:
    """Pub/Sub's 10 MB is per publish request (topic and framing included): a message of
    exactly 10 MB of data plus attributes is refused by the client, so it is refused here,
    before anything is sent, naming the event and both sizes."""
    client = _RaisesOnce("none")
    topic = "projects/p/topics/t"
    attributes = pubsub_binding.to_message(contract.restock(0)).attributes
    room = pubsub_binding.MAX_MESSAGE_BYTES - sum(len(k) + len(v) for k, v in attributes.items())
    message = pubsub_binding.PubSubMessage(b"x" * room, attributes)
    assert message.size() == pubsub_binding.MAX_MESSAGE_BYTES  # within the message limit
    assert request_size(topic, message) > MAX_REQUEST_BYTES
    with pytest.raises(PermanentError, match=r"nothing was sent.*event 'ev-0'.*over "
                                             r"Pub/Sub's limit of 10000000 bytes"):
        PubSubPublisher(client, topic).publish_messages([message])
    assert client.calls == []
