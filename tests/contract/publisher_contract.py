"""One contract for the Publisher port, run against every implementation.

Each implementation's test module imports the `test_*` functions below and provides a
`harness` fixture (a `PublisherHarness`): the publisher under test, what actually arrived
on its transport (read back the way a consumer reads it), every id handed to the
transport in order, and, where the transport can fail some entries of a call, a way to
make the next sends of chosen ids fail. The cases are docs/failure-cases.md's: events arrive
intact; more events than one call takes are split; at the size limit passes, one byte over
is refused before anything is sent (case 7); after a partial failure only the failed
entries are re-sent (case 11); ids survive re-sends, so consumers can drop duplicates.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import pytest

from handlers.catalog import INVENTORY_UPDATED, ORDER_CREATED
from handlers.core.errors import PermanentError
from handlers.core.events import Event
from handlers.core.ports import Publisher

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class PublisherHarness(Protocol):
    publisher: Publisher
    #: The transport's size limit, as `size_of` measures it.
    limit_bytes: int
    #: Entries one transport call takes (PutEvents: 10), None when unbounded.
    per_call: int | None
    #: Why this transport cannot fail part of a call (None: it can, see `fail_next`).
    no_partial_failures: str | None

    def size_of(self, event: Event) -> int: ...

    def received(self) -> list[Event]:
        """Every event that arrived on the transport so far, decoded as consumers do."""
        ...

    def sends(self) -> list[list[str]]:
        """Event ids per call handed to the transport, in order (failed ones included)."""
        ...

    def fail_next(self, ids: set[str]) -> None:
        """Make the next send of each of `ids` fail (as the platform reports it)."""
        ...


def restock(n: int, **extensions: str) -> Event:
    return Event.new("inventory", INVENTORY_UPDATED,
                     {"item_id": f"item-{n}", "quantity": n + 1, "action": "restock"},
                     id=f"ev-{n}", extensions=extensions)


def _padded(pad: int) -> Event:
    return Event.new("orders", ORDER_CREATED, {"order_id": "o-big", "pad": "x" * pad},
                     id="ev-big", time="2026-01-01T00:00:00Z")


def _at(harness: PublisherHarness, size: int) -> Event:
    """An event whose size, as the transport counts it, is exactly `size` bytes."""
    # Length prefixes (protobuf varints) grow with the payload, so converge on it.
    pad = size - harness.size_of(_padded(0))
    for _ in range(4):
        event = _padded(pad)
        pad += size - harness.size_of(event)
    event = _padded(pad)
    assert harness.size_of(event) == size
    return event


def _by_id(events: list[Event]) -> dict[str, Event]:
    return {e.id: e for e in events}


def test_events_arrive_intact(harness: PublisherHarness) -> None:
    sent = [
        restock(1, traceparent=TRACEPARENT, tenant="acme"),
        Event(id="ev-full", source="orders", type=ORDER_CREATED,
              data={"order_id": "o-1", "items": [{"item_id": "A", "quantity": 2,
                                                   "unit_price": 9.99}], "note": "ünï ✓"},
              time="2026-01-02T03:04:05.678Z", subject="o-1", datacontenttype="application/json",
              dataschema="https://example.com/schemas/order-created",
              extensions={"traceparent": TRACEPARENT, "dataversion": "2"}),
        Event(id="ev-bytes", source="blobs", type="com.example.blob", data=b"\x00\xffbinary",
              datacontenttype="application/octet-stream"),
    ]
    harness.publisher.publish(sent)
    got = _by_id(harness.received())
    assert set(got) == {e.id for e in sent}
    for event in sent:
        assert got[event.id] == event, f"{event.id} changed on the way"


def test_more_events_than_one_call_takes_are_split_and_all_arrive(
        harness: PublisherHarness) -> None:
    sent = [restock(n) for n in range(23)]
    harness.publisher.publish(sent)
    assert sorted(e.id for e in harness.received()) == sorted(e.id for e in sent)
    if harness.per_call is not None:
        assert all(len(call) <= harness.per_call for call in harness.sends())
        assert len(harness.sends()) == -(-23 // harness.per_call)


def test_an_event_at_the_size_limit_is_published(harness: PublisherHarness) -> None:
    event = _at(harness, harness.limit_bytes)
    harness.publisher.publish([event])
    assert [e.id for e in harness.received()] == [event.id]
    assert harness.received()[0].data == event.data


def test_one_byte_over_the_limit_is_refused_before_anything_is_sent(
        harness: PublisherHarness) -> None:
    over = _at(harness, harness.limit_bytes + 1)
    with pytest.raises(PermanentError) as caught:
        harness.publisher.publish([restock(1), over])
    message = str(caught.value)
    assert over.id in message and str(harness.limit_bytes) in message, message
    assert str(harness.limit_bytes + 1) in message, message  # the actual size is named
    assert harness.sends() == [] and harness.received() == []  # not even the small one


def test_only_the_failed_entries_are_resent(harness: PublisherHarness) -> None:
    if harness.no_partial_failures:
        pytest.skip(f"cannot express: {harness.no_partial_failures}")
    sent = [restock(n) for n in range(8)]
    harness.fail_next({"ev-3", "ev-7"})
    harness.publisher.publish(sent)
    counts = Counter(i for call in harness.sends() for i in call)
    assert counts == Counter({e.id: 2 if e.id in ("ev-3", "ev-7") else 1 for e in sent})
    received = [e.id for e in harness.received()]
    assert sorted(received) == sorted(e.id for e in sent)  # each exactly once


def test_a_republished_event_keeps_its_id(harness: PublisherHarness) -> None:
    """A redelivered handler publishes the same events again: the transport may carry
    them twice, but with the same id and payload, so every consumer's dedupe drops one."""
    event = restock(5, traceparent=TRACEPARENT)
    harness.publisher.publish([event])
    harness.publisher.publish([event])
    got = harness.received()
    assert [e.id for e in got] == [event.id, event.id]
    assert got[0] == got[1] == event
