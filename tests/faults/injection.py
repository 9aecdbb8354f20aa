"""Fault injection through the local runtime's real seams: its ports and its database.

Nothing here patches production code. The runtime exposes `runtime.ports` (store,
publisher, notifier, saga starter, payment gateway) and `runtime.db` (the database every
queue claim, ack, retry, dead-letter and saga update goes through); `install` wraps each in
a proxy that counts calls per seam and, on the calls a `Fault` names, fails *before* the
real call (nothing happened) or *after* it (it happened, but the caller never hears so).

Two kinds of failure:

- `transient`: a `TransientError` (or, for the runtime's own database writes, SQLite's
  "database is locked"), which the engine, the saga runner and the workers must retry;
- `kill`: `WorkerKilled`, a `BaseException`, so no `except Exception` in the engine or the
  runtime catches it. It unwinds straight out of `work_once` the way a dead process would
  stop: a claimed delivery stays claimed until its visibility timeout, a saga keeps its
  lease until it expires, and whatever was committed stays committed.

Faults are one-shot and addressed by call number, so a schedule is deterministic when a
single thread drives the runtime, and hypothesis can shrink a failing one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adapters.local.database import Database
from adapters.local.runtime import Runtime
from handlers.core.errors import TransientError
from handlers.core.events import Event
from handlers.core.ports import Item, Op, PaymentGateway, Publisher, SagaStarter, Store

T = TypeVar("T")

#: Every seam a fault can name, with what a call there means.
SEAMS: Mapping[str, str] = {
    "store.get": "a handler or the engine reads an item",
    "store.transact": "the engine commits writes + idempotency record (or marks it done)",
    "publisher.publish": "emitted events go back onto the bus",
    "notifier.notify": "a notification goes to the topic",
    "sagas.start": "the orders consumer starts a saga",
    "payments.charge": "the payment step charges the provider",
    "payments.refund": "the compensation refunds the provider",
    "db.write": "any runtime write: claim, ack, retry, dead-letter, saga lease/update",
}


class WorkerKilled(BaseException):  # noqa: N818 - it is an event, not an error to handle
    """The worker process died here. BaseException so no handler or runtime code catches
    it, as nothing catches SIGKILL."""


@dataclass(frozen=True, slots=True)
class Fault:
    seam: str
    call: int  # 0-based call number on that seam
    when: Literal["before", "after"]
    kind: Literal["transient", "kill"]

    def __post_init__(self) -> None:
        if self.seam not in SEAMS:
            raise ValueError(f"unknown seam {self.seam!r}; known: {sorted(SEAMS)}")


class FaultPlan:
    """Counts calls per seam and fires each fault once, on the call it names."""

    def __init__(self, faults: Sequence[Fault] = ()) -> None:
        self._faults = {(f.seam, f.call): f for f in faults}
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.enabled = True
        self.fired: list[Fault] = []

    @property
    def calls(self) -> dict[str, int]:
        return dict(self._calls)

    def _next(self, seam: str) -> Fault | None:
        with self._lock:
            n = self._calls[seam]
            self._calls[seam] += 1
            fault = self._faults.get((seam, n)) if self.enabled else None
            if fault is not None:
                self.fired.append(fault)
            return fault

    def call(self, seam: str, fn: Callable[[], T]) -> T:
        fault = self._next(seam)
        if fault is not None and fault.when == "before":
            _raise(fault)
        result = fn()
        if fault is not None and fault.when == "after":
            _raise(fault)
        return result


def _raise(fault: Fault) -> None:
    if fault.kind == "kill":
        raise WorkerKilled(f"injected: worker killed {fault.when} {fault.seam} #{fault.call}")
    if fault.seam == "db.write":
        # What the runtime's own writes really see under contention.
        raise sqlite3.OperationalError(f"database is locked (injected, {fault.when} "
                                       f"{fault.seam} #{fault.call})")
    raise TransientError(f"injected: {fault.seam} #{fault.call} failed {fault.when} the call")


class FaultyStore:
    def __init__(self, inner: Store, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self._plan.call("store.get", lambda: self._inner.get(table, key))

    def scan(self, table: str) -> list[dict[str, Any]]:
        return self._inner.scan(table)  # audits only: no fault seam of its own

    def transact(self, ops: Sequence[Op]) -> bool:
        return self._plan.call("store.transact", lambda: self._inner.transact(ops))

    def put_if_absent(self, table: str, key: str, item: Item) -> bool:
        return self._plan.call("store.transact",
                               lambda: self._inner.put_if_absent(table, key, item))


class FaultyPublisher:
    def __init__(self, inner: Publisher, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def publish(self, events: Sequence[Event]) -> None:
        self._plan.call("publisher.publish", lambda: self._inner.publish(events))


class FaultyNotifier:
    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        self._plan.call("notifier.notify", lambda: self._inner.notify(notification_id, message))


class FaultySagaStarter:
    def __init__(self, inner: SagaStarter, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        return self._plan.call("sagas.start",
                               lambda: self._inner.start(saga_id, input, traceparent))


class FaultyPayments:
    """The provider is reached but the answer is lost: case 14 (timeout after success)."""

    def __init__(self, inner: PaymentGateway, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def charge(self, key: str, order_id: str, amount_cents: int) -> Mapping[str, Any]:
        return self._plan.call("payments.charge",
                               lambda: self._inner.charge(key, order_id, amount_cents))

    def refund(self, key: str, charge_id: str) -> Mapping[str, Any]:
        return self._plan.call("payments.refund", lambda: self._inner.refund(key, charge_id))

    def find_charge(self, key: str) -> Mapping[str, Any] | None:
        return self._inner.find_charge(key)


class FaultyDatabase:
    """The runtime's database with faults around each write transaction.

    `before` fails as the transaction would begin (nothing written); `after` fails once it
    has committed (written, but the worker never goes on to its next step).
    """

    def __init__(self, inner: Database, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def __getattr__(self, name: str) -> Any:  # read, connection, close, path
        return getattr(self._inner, name)

    @contextmanager
    def write(self, durable: bool = False, *,
              savepoint: bool = True) -> Iterator[sqlite3.Connection]:
        fault = self._plan._next("db.write")
        if fault is not None and fault.when == "before":
            _raise(fault)
        with self._inner.write(durable, savepoint=savepoint) as conn:
            yield conn
        if fault is not None and fault.when == "after":
            _raise(fault)


def install(runtime: Runtime, plan: FaultPlan) -> None:
    """Wrap the runtime's ports and database so `plan` decides which calls fail."""
    ports = runtime.ports
    ports.store = FaultyStore(ports.store, plan)
    ports.publisher = FaultyPublisher(ports.publisher, plan)
    ports.notifier = FaultyNotifier(ports.notifier, plan)
    ports.sagas = FaultySagaStarter(ports.sagas, plan)
    ports.payments = FaultyPayments(ports.payments, plan)
    runtime.db = FaultyDatabase(runtime.db, plan)  # type: ignore[assignment]


#: What a driver treats as "this worker is gone, start another": a kill, or a runtime
#: write that failed outside any handler (the runtime leaves those to the next claim).
WORKER_LOST = (WorkerKilled, sqlite3.OperationalError)


def drive_until_idle(runtime: Runtime, timeout: float = 60.0) -> int:
    """Run the runtime to quiet in this thread, replacing each worker that dies.

    Returns how many workers died on the way.
    """
    import time

    deadline = time.monotonic() + timeout
    deaths = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"runtime not idle after {timeout}s ({deaths} worker deaths)")
        try:
            runtime.run_until_idle(timeout=remaining)
            return deaths
        except WORKER_LOST:
            deaths += 1
