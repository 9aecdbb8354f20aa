"""The invariant checker catches what it claims to: a checker that never fails proves nothing.

A real run on the local runtime gives a clean snapshot; each case breaks it the way a bug
would (a lost event, stock off by one, a double charge, a missing refund...) and the
checker must name the violation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.core.engine import dedupe_key
from handlers.core.events import Event
from handlers.core.ports import Put
from tests.factories import order_created, restock, workflow_triggered
from tests.invariants import DeadLetter, Snapshot, check, snapshot_sqlite, watch_stock


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, list[Event]]]:
    runtime = Runtime(tmp_path_factory.mktemp("inv") / "inv.db",
                      settings=RuntimeSettings(retry_scale=0.001, max_deliveries=2))
    events = [restock("A", 5), order_created("done", [("A", 2, 10.0)]),
              order_created("big", [("A", 1, 1500.0)]),
              order_created("short", [("A", 1, 10.0), ("B", 1, 1.0)]),
              workflow_triggered("never")]
    runtime.ingest(events)
    runtime.run_until_idle()
    snapshot = snapshot_sqlite(runtime.db.read)
    runtime.close()
    report = check(snapshot, events)
    assert report.ok, report.violations
    assert report.figures["orders_completed"] == 1 and report.figures["refunded"] == 1
    yield snapshot, events


def _charge_key(order_id: str, s: Snapshot) -> str:
    return next(k for k, p in s.payments.items()
                if p["kind"] == "charge" and p["order_id"] == order_id)


def _refund_key(s: Snapshot) -> str:
    return next(k for k, p in s.payments.items() if p["kind"] == "refund")


def _lose(s: Snapshot, events: list[Event]) -> None:
    del s.processed[dedupe_key("orders", events[1])]
    s.bus = [e for e in s.bus if e.id != events[1].id]


Mutation = Callable[[Snapshot, list[Event]], None]
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "not quiet": (lambda s, e: setattr(s, "pending", 1), "not quiet"),
    "lost event": (_lose, "lost: accepted"),
    "effects never finished": (
        lambda s, e: s.processed[dedupe_key("orders", e[1])].update(status="committed"),
        "never finished its side effects"),
    "order left pending": (lambda s, e: s.orders["done"].update(status="pending"),
                           "still pending once quiet"),
    "stock off by one": (lambda s, e: s.inventory["A"].update(available=4),
                         "item A: available 4, expected 3"),
    "negative stock": (lambda s, e: s.inventory["A"].update(available=-1), "negative stock"),
    "reserved drifts": (lambda s, e: s.inventory["A"].update(reserved=0),
                        "item A: reserved 0, expected 2"),
    "double charge": (
        lambda s, e: s.payments.__setitem__("x", {**s.payments[_charge_key("done", s)],
                                                  "charge_id": "ch_x"}),
        "order done has 2 charges"),
    "refund missing": (lambda s, e: s.payments.pop(_refund_key(s)), "refunded 0 times"),
    "completed order refunded": (
        lambda s, e: s.payments.__setitem__("r", {
            "kind": "refund", "charge_id": s.payments[_charge_key("done", s)]["charge_id"]}),
        "completed order done was refunded"),
    "declined order completed": (lambda s, e: s.orders["big"].update(status="completed"),
                                 "above the decline limit"),
    "notification twice": (lambda s, e: s.notifications.append(dict(s.notifications[0])),
                           "notifications, expected exactly 1"),
    "dead letter without reason": (
        lambda s, e: s.dead_letters.append(DeadLetter("orders", "x", " ", {})),
        "has no reason"),
    "stock negative in between": (
        lambda s, e: setattr(s, "negative_stock_writes", ['A: {"available":-1}']),
        "stock went negative at a commit"),
    "saga disagrees": (lambda s, e: s.sagas["order-done"].update(status="cancelled"),
                       "its saga is cancelled"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_checker_catches(name: str, clean: tuple[Snapshot, list[Event]]) -> None:
    original, events = clean
    # Events are immutable (their data is a read-only mapping): share them, copy the rest.
    snapshot = Snapshot(**{name: list(getattr(original, name)) if name == "bus"
                           else copy.deepcopy(getattr(original, name))
                           for name in Snapshot.__slots__})
    events = list(events)
    mutate, expected = MUTATIONS[name]
    mutate(snapshot, events)
    violations = check(snapshot, events).violations
    assert any(expected in v for v in violations), violations


def test_a_database_file_snapshots_like_a_live_runtime(tmp_path: Path) -> None:
    runtime = Runtime(tmp_path / "f.db", settings=RuntimeSettings(retry_scale=0.001))
    events = [restock("A", 1), order_created("o", [("A", 1, 1.0)])]
    runtime.ingest(events)
    runtime.run_until_idle()
    live = check(snapshot_sqlite(runtime.db.read), events)
    runtime.close()
    offline = check(snapshot_sqlite(tmp_path / "f.db"), events)
    assert live.ok and offline.ok and live.figures == offline.figures


def test_the_stock_audit_sees_a_negative_commit_the_end_state_hides(tmp_path: Path) -> None:
    watch_stock(tmp_path / "audit.db")
    runtime = Runtime(tmp_path / "audit.db")
    runtime.store.transact([Put("inventory", "A", {"item_id": "A", "available": -1})])
    runtime.store.transact([Put("inventory", "A", {"item_id": "A", "available": 0},
                                if_absent=False)])
    snapshot = snapshot_sqlite(runtime.db.read)
    runtime.close()
    assert snapshot.inventory["A"]["available"] == 0
    assert snapshot.negative_stock_writes == ['A: {"item_id":"A","available":-1}']
    assert any("stock went negative" in v for v in check(snapshot, []).violations)
