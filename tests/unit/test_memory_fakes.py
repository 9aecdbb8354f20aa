"""The in-memory fakes keep the promises of the ports they stand in for.

A fake that is kinder than the real thing lets a test pass that every backend fails: the
store hands out copies (a caller's change never leaks into it), sees its own staged
writes inside a transaction, the saga starter starts a saga id once, the notifier counts
every delivery but keeps one message per id, and `memory_ports` honours the decline limit.
"""

from __future__ import annotations

import pytest

from adapters.memory import (
    FixedClock,
    MemoryNotifier,
    MemorySagaStarter,
    MemoryStore,
    memory_ports,
)
from handlers.core.errors import StepFailed
from handlers.core.ports import Put, Update


def test_the_store_hands_out_copies_never_its_own_items() -> None:
    store = MemoryStore()
    store.put_if_absent("orders", "o1", {"items": [{"q": 1}]})
    got = store.get("orders", "o1")
    got["items"][0]["q"] = 99
    store.scan("orders")[0]["items"].append("x")
    store.items("orders")["o1"]["items"].append("y")
    assert store.get("orders", "o1") == {"items": [{"q": 1}]}


def test_a_table_never_written_scans_empty() -> None:
    store = MemoryStore()
    assert store.scan("orders") == [] and store.items("orders") == {}


def test_the_store_keeps_a_copy_of_what_it_was_given() -> None:
    store = MemoryStore()
    item = {"items": [{"q": 1}]}
    store.transact([Put("orders", "o1", item)])
    item["items"][0]["q"] = 99
    assert store.get("orders", "o1") == {"items": [{"q": 1}]}


def test_a_transaction_sees_its_own_earlier_writes_to_an_item() -> None:
    store = MemoryStore()
    assert store.transact([Put("inventory", "A", {"available": 1}),
                           Update("inventory", "A", add={"available": -1},
                                  require_min={"available": 1})]) is True
    assert store.get("inventory", "A") == {"available": 0}
    assert store.transact([Update("inventory", "A", add={"available": 2}),
                           Update("inventory", "A", add={"available": -2},
                                  require_min={"available": 2})]) is True
    assert store.get("inventory", "A") == {"available": 0}


def test_the_saga_starter_starts_each_saga_id_once() -> None:
    sagas = MemorySagaStarter()
    assert sagas.start("s1", {"order_id": "o1"}, "00-trace-01") is True
    assert sagas.start("s1", {"order_id": "other"}, None) is False
    assert sagas.started == {"s1": {"input": {"order_id": "o1"}, "traceparent": "00-trace-01"}}


def test_the_notifier_counts_every_delivery_and_keeps_the_first_message_per_id() -> None:
    notifier = MemoryNotifier()
    notifier.notify("n1", {"text": "first"})
    notifier.notify("n1", {"text": "again"})
    notifier.notify("n2", {"text": "other"})
    assert notifier.deliveries == 3
    assert notifier.sent == {"n1": {"text": "first"}, "n2": {"text": "other"}}


def test_the_fixed_clock_starts_at_its_documented_instant_and_only_moves_when_told() -> None:
    clock = FixedClock()
    assert clock.now().isoformat() == "2026-01-01T00:00:00+00:00"
    assert clock.now() == clock.now()
    clock.advance(90)
    assert clock.now().isoformat() == "2026-01-01T00:01:30+00:00"


def test_memory_ports_pass_the_decline_limit_to_the_payments() -> None:
    ports = memory_ports(decline_above_cents=500)
    assert ports.payments.charge("k1", "o1", 500)["status"] == "charged"
    with pytest.raises(StepFailed):
        ports.payments.charge("k2", "o1", 501)


def test_a_minimum_on_a_field_an_item_lacks_counts_it_as_zero() -> None:
    store = MemoryStore()
    assert store.transact([Put("t", "k", {"other": 5})])
    # Absent is 0: a minimum of 1 fails, a minimum of 0 holds (and the add then sets it).
    assert not store.transact([Update("t", "k", add={"n": 1}, require_min={"n": 1})])
    assert store.transact([Update("t", "k", add={"n": 1}, require_min={"n": 0})])
    assert store.get("t", "k") == {"other": 5, "n": 1}
