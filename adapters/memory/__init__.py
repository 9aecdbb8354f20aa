"""In-memory implementations of every port: for unit tests, benchmarks and examples."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.core import jsonformat
from handlers.core.errors import PermanentError
from handlers.core.events import Event
from handlers.core.ports import Op, Ports, apply_op
from handlers.payments import SimulatedPaymentGateway


class MemoryStore:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self.tables.get(table, {}).get(key)
            return copy.deepcopy(item) if item is not None else None

    def transact(self, ops: Sequence[Op]) -> bool:
        with self._lock:
            staged: dict[tuple[str, str], dict[str, Any]] = {}
            for op in ops:
                where = (op.table, op.key)
                current = staged[where] if where in staged else \
                    self.tables.get(op.table, {}).get(op.key)
                new = apply_op(current, op)
                if new is None:
                    return False
                staged[where] = new
            for (table, key), item in staged.items():
                self.tables.setdefault(table, {})[key] = copy.deepcopy(item)
            return True

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        from handlers.core.ports import Put
        return self.transact([Put(table, key, item)])

    def scan(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(v) for _, v in sorted(self.tables.get(table, {}).items())]

    def items(self, table: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.tables.get(table, {}))


#: The fake bus's per-event limit (JSON format bytes), the local bus's: a fake that took
#: any size would let a test pass that every real transport fails.
MAX_EVENT_BYTES = 1024 * 1024


class MemoryPublisher:
    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.published: list[Event] = []
        self.max_event_bytes = max_event_bytes

    def publish(self, events: Sequence[Event]) -> None:
        # Checked for every event before any is kept, like the real publishers.
        too_big = [f"event '{e.id}' is {size} bytes"
                   for e in events if (size := len(jsonformat.dumps(e).encode()))
                   > self.max_event_bytes]
        if too_big:
            raise PermanentError(f"over the bus limit of {self.max_event_bytes} bytes; "
                                 "nothing was published", too_big)
        self.published.extend(events)


class MemoryNotifier:
    def __init__(self) -> None:
        self.sent: dict[str, Mapping[str, Any]] = {}
        self.deliveries = 0

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        self.deliveries += 1
        self.sent.setdefault(notification_id, dict(message))


class MemorySagaStarter:
    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        if saga_id in self.started:
            return False
        self.started[saga_id] = {"input": dict(input), "traceparent": traceparent}
        return True


class FixedClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def memory_ports(decline_above_cents: int = 100_000) -> Ports:
    store, clock = MemoryStore(), FixedClock()
    return Ports(store=store, publisher=MemoryPublisher(), notifier=MemoryNotifier(),
                 sagas=MemorySagaStarter(), clock=clock,
                 payments=SimulatedPaymentGateway(store, clock, decline_above_cents))
