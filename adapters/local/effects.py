"""The local implementations of the handlers' outbound ports: publisher, notifier, clock.

Emitted events go back onto the local bus (the same database, so they commit with the
delivery that emitted them); notifications are a table plus a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.local.database import Database
from handlers.core import fastjson
from handlers.core.events import Event
from handlers.core.observability import log_fields

log = logging.getLogger("switchyard.local")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Bus(Protocol):
    def ingest(self, events: Iterable[Event], origin: str = "http") -> list[str]: ...


class BusPublisher:
    """Emitted events go back onto the local bus."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def publish(self, events: Sequence[Event]) -> None:
        self._bus.ingest(events, origin="emit")


class LocalNotifier:
    """The local notifications topic: a table (deduplicated on the id) plus a log line."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        with self._db.write(savepoint=False) as conn:  # one statement
            conn.execute("INSERT OR IGNORE INTO notifications (id, message, sent_at) "
                         "VALUES (?, ?, ?)",
                         (notification_id, fastjson.dumps(message), time.time()))
        log_fields(log, logging.INFO,
                   {"notification_id": notification_id, "notification": dict(message)},
                   "notification")
