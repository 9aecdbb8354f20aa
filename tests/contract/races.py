"""The races each conditional write exists for, driven through the real handlers.

Every scenario takes a `Store` and runs on whichever backend the calling test module
provides (in-memory and SQLite in `tests/contract/test_handler_races.py`, DynamoDB on moto
in `tests/aws`, the Firestore emulator in `tests/gcp`). The interleaving is forced, not
hoped for: a `RendezvousStore` holds each racer at a barrier right after its first read
of the contested table, so every racer decides on the same (stale) state and only the
store's condition at commit can keep the outcome right. Without that barrier, threads on
an in-process store mostly run one after the other and a missing condition goes unseen.

Ids are unique per call, so the scenarios can share one emulator across tests.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from adapters.memory import FixedClock, MemoryNotifier, MemoryPublisher, MemorySagaStarter
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED
from handlers.core.engine import PROCESSED, Outcome, handle
from handlers.core.errors import PermanentError, TransientError
from handlers.core.events import Event
from handlers.core.ports import Op, Ports, Store
from handlers.core.saga_runner import new_state, run_to_end
from handlers.inventory import INVENTORY, LEDGER
from handlers.orders import ORDERS, saga_id_for
from handlers.payments import PAYMENTS, SimulatedPaymentGateway
from tests.factories import order_created, restock

#: Seconds a racer waits at the barrier for the others. Generous: a racer that never
#: arrives means the code under test stopped reading what it must read, and the broken
#: barrier then fails the test with a clear BrokenBarrierError instead of hanging it.
BARRIER_TIMEOUT = 30.0


class RendezvousStore:
    """A store whose first read of `table` in each thread waits for `parties` threads.

    The read itself happens before the wait, so each racer has seen the state as it was
    before any of them wrote. Later reads (the engine's re-run after a failed condition)
    pass straight through. Everything else is the wrapped store's.
    """

    def __init__(self, inner: Store, table: str, parties: int,
                 first_to_commit: int | None = None) -> None:
        self._inner = inner
        self._table = table
        self._barrier = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)
        self._seen = threading.local()
        # `first_to_commit`: the racer (its index in race()) whose write after the barrier
        # goes first; the others' writes wait for it, so the interleaving is fixed.
        self._first = first_to_commit
        self._first_done = threading.Event()
        self._ordered_by_atomic = False

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        item = self._inner.get(table, key)
        if table == self._table and not getattr(self._seen, "done", False):
            self._seen.done = True
            self._barrier.wait()
        return item

    def transact(self, ops: Sequence[Op]) -> bool:
        if self._ordered_by_atomic:
            return self._inner.transact(ops)
        with self._turn():
            return self._inner.transact(ops)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait for the first committer's write (if this racer is not it), then write."""
        waiting = self._first is not None and getattr(self._seen, "done", False)
        first = waiting and threading.current_thread().name == f"racer-{self._first}"
        if waiting and not first:
            self._first_done.wait(BARRIER_TIMEOUT)
        try:
            yield
        finally:
            if first:
                self._first_done.set()

    def ordering(self, atomic: Callable[[], AbstractContextManager[Any]]
                 ) -> Callable[[], AbstractContextManager[Any]]:
        """`atomic`, taking turns before it starts: a racer must not wait for its turn
        while holding the backend's transaction (SQLite's one writer), or none proceeds."""
        self._ordered_by_atomic = True

        @contextmanager
        def ordered() -> Iterator[None]:
            with self._turn(), atomic():
                yield
        return ordered

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return self._inner.put_if_absent(table, key, item)

    def __getattr__(self, name: str) -> Any:  # scan, items: whatever the store has
        return getattr(self._inner, name)


Atomic = Callable[[], AbstractContextManager[Any]] | None


def ports_on(store: Store, atomic: Atomic = None) -> Ports:
    """Ports over `store` with in-memory side effects; `atomic` as the backend has it."""
    clock = FixedClock()
    if atomic is not None and isinstance(store, RendezvousStore):
        atomic = store.ordering(atomic)
    return Ports(store=store, publisher=MemoryPublisher(), notifier=MemoryNotifier(),
                 sagas=MemorySagaStarter(), clock=clock,
                 payments=SimulatedPaymentGateway(store, clock), atomic=atomic)


#: Redeliveries a racer gets on a TransientError (a store may report contention that
#: way, Firestore does once its own retries are spent), as every runtime redelivers.
REDELIVERIES = 10


def race(*racers: Callable[[], Any], redeliveries: int = REDELIVERIES) -> list[Any]:
    """Run the racers in threads at once; their results (or the exceptions they raised).

    A racer that raises TransientError is run again, up to `redeliveries` runs in all,
    as a runtime redelivers; pass 1 to see a transient error as the outcome."""
    results: list[Any] = [None] * len(racers)

    def run(n: int) -> None:
        for _ in range(redeliveries):
            try:
                results[n] = racers[n]()
                return
            except TransientError as error:
                results[n] = error
            except Exception as error:  # noqa: BLE001 - the outcome under test
                results[n] = error
                return

    threads = [threading.Thread(target=run, args=(n,), name=f"racer-{n}")
               for n in range(len(racers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * BARRIER_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a racer never finished"
    return results


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _remove(item_id: str, quantity: int) -> Event:
    return Event.new("inventory", INVENTORY_UPDATED,
                     {"item_id": item_id, "quantity": quantity, "action": "remove"})


def _statuses(results: Sequence[Any]) -> list[str]:
    return sorted(r.status if isinstance(r, Outcome) else type(r).__name__ for r in results)


def one_event_delivered_twice_at_once(store: Store, atomic: Atomic = None) -> None:
    """Both deliveries find no idempotency record; only one may commit its effect.

    A restock adds to the stock and its ledger (no condition of its own), so the
    `processed` record's if-absent condition is all that keeps the second delivery from
    adding again. The loser re-reads, finds the record, and is a duplicate (not an error:
    a concurrent in-flight duplicate is not dead-lettered).
    """
    item = _unique("dup")
    event = restock(item, 3)
    ports = ports_on(RendezvousStore(store, PROCESSED, 2), atomic)
    results = race(lambda: handle(APP, "inventory", event, ports),
                   lambda: handle(APP, "inventory", event, ports))
    assert _statuses(results) == ["duplicate", "processed"], results
    assert store.get(INVENTORY, item) == {"item_id": item, "available": 3}
    assert store.get(LEDGER, item) == {"item_id": item, "received": 3}
    record = store.get(PROCESSED, f"inventory|{event.source}|{event.id}")
    assert record is not None and record["status"] == "done"


def last_unit_removed_twice_at_once(store: Store, atomic: Atomic = None) -> None:
    """Two removals of the last unit, each having read "1 available": one wins.

    The loser's write fails the removal's `require_min` condition at commit; the engine
    re-runs it on fresh state and it is refused permanently (nothing left to remove).
    """
    item = _unique("last")
    plain = ports_on(store, atomic)
    handle(APP, "inventory", restock(item, 1), plain)
    ports = ports_on(RendezvousStore(store, INVENTORY, 2), atomic)
    first, second = _remove(item, 1), _remove(item, 1)
    results = race(lambda: handle(APP, "inventory", first, ports),
                   lambda: handle(APP, "inventory", second, ports))
    assert _statuses(results) == ["PermanentError", "processed"], results
    refused = next(r for r in results if isinstance(r, PermanentError))
    assert f"cannot remove 1 of item '{item}': only 0 available" in str(refused)
    assert store.get(INVENTORY, item)["available"] == 0
    assert store.get(LEDGER, item) == {"item_id": item, "received": 1, "removed": 1}


def _reservation_and_removal(store: Store, atomic: Atomic, removal_first: bool) -> None:
    item, order = _unique("pair"), _unique("order")
    plain = ports_on(store, atomic)
    handle(APP, "inventory", restock(item, 2), plain)
    handle(APP, "orders", order_created(order, [(item, 2, 5.0)]), plain)
    state = new_state(saga_id_for(order), {"order_id": order}, None)
    ports = ports_on(RendezvousStore(store, INVENTORY, 2,
                                     first_to_commit=1 if removal_first else 0), atomic)
    removal = _remove(item, 2)
    saga, removed = race(lambda: run_to_end(APP, ports, state),
                         lambda: handle(APP, "inventory", removal, ports))
    stock = store.get(INVENTORY, item) or {}
    ledger = store.get(LEDGER, item) or {}
    assert stock["available"] >= 0, stock
    assert stock["available"] + stock.get("reserved", 0) + ledger.get("removed", 0) == 2
    if removal_first:
        assert isinstance(removed, Outcome) and removed.status == "processed", removed
        assert saga["status"] == "cancelled" and saga["reason"] == "out_of_stock", saga
        assert stock == {"item_id": item, "available": 0}
        refund = store.get(PAYMENTS, f"{saga['saga_id']}:payment:compensate")
        assert refund is not None and refund["status"] == "refunded"
        assert refund["charge_id"] == saga["results"]["payment"]["charge_id"]
    else:
        assert isinstance(removed, PermanentError), removed
        assert saga["status"] == "completed", saga
        assert stock == {"item_id": item, "available": 0, "reserved": 2}
        assert ledger.get("removed", 0) == 0


def removal_commits_before_a_reservation_of_the_same_units(
        store: Store, atomic: Atomic = None) -> None:
    """An order's reservation and a stock removal both read "2 available"; the removal
    commits first. The reservation's condition must fail at commit: the saga is then
    cancelled out of stock and its payment refunded; stock never goes below zero."""
    _reservation_and_removal(store, atomic, removal_first=True)


def reservation_commits_before_a_removal_of_the_same_units(
        store: Store, atomic: Atomic = None) -> None:
    """The same race, the reservation first: the removal's condition fails at commit,
    and on fresh state the removal is refused; the order completes."""
    _reservation_and_removal(store, atomic, removal_first=False)


def one_order_id_created_twice_at_once(store: Store, atomic: Atomic = None) -> None:
    """Two Order Created events (two event ids) for one order id with other content,
    both having read "no such order": the order's if-absent put lets one commit; the
    other re-runs on fresh state and is refused as a reused id. One order, the
    winner's, and one saga."""
    order = _unique("twice")
    events = (order_created(order, [("A", 1, 5.0)]), order_created(order, [("B", 2, 7.0)]))
    ports = ports_on(RendezvousStore(store, ORDERS, 2), atomic)
    results = race(*(lambda e=e: handle(APP, "orders", e, ports) for e in events))
    assert _statuses(results) == ["ConflictError", "processed"], results
    winner = events[0] if isinstance(results[0], Outcome) else events[1]
    refused = next(r for r in results if isinstance(r, PermanentError))
    assert str(refused) == f"order '{order}' already exists with different content"
    stored = store.get(ORDERS, order) or {}
    assert stored["created_by"] == winner.id, stored
    assert [i["item_id"] for i in stored["items"]] == [winner.data["items"][0]["item_id"]]
    assert list(ports.sagas.started) == [saga_id_for(order)]  # type: ignore[attr-defined]


SCENARIOS: dict[str, Callable[..., None]] = {
    "one_event_delivered_twice_at_once": one_event_delivered_twice_at_once,
    "last_unit_removed_twice_at_once": last_unit_removed_twice_at_once,
    "removal_commits_before_a_reservation_of_the_same_units":
        removal_commits_before_a_reservation_of_the_same_units,
    "reservation_commits_before_a_removal_of_the_same_units":
        reservation_commits_before_a_removal_of_the_same_units,
    "one_order_id_created_twice_at_once": one_order_id_created_twice_at_once,
}
