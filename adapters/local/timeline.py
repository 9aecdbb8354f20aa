"""The local runtime's timeline: one row per thing that happened, and the log line for it.

Every delivery outcome (ok, duplicate, ignored, retry, dead-lettered, already
dead-lettered) and every saga step is a timeline row, written inside the transaction that
records the outcome itself, so the timeline never says something happened that did not
commit (or the other way round): the rows of one transaction go in one statement at its
commit (`Database.defer`), and a savepoint rolled back drops its own. The INFO line on
`switchyard.local` is logged after that commit. `switchyard trace` and the demo read the
rows back here.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping
from typing import Any, Final

from adapters.local.database import Database
from handlers.core.events import Event
from handlers.core.observability import log_fields, trace_id_of

log = logging.getLogger("switchyard.local")

_COLUMNS: Final = ("at", "event_id", "type", "consumer", "attempt", "outcome", "detail",
                   "duration_ms", "subject", "trace_id")
_SELECT: Final = ("SELECT at, event_id, event_type, consumer, attempt, outcome, detail, "
                  "duration_ms, subject, trace_id FROM timeline")
_INSERT: Final = ("INSERT INTO timeline (at, event_id, event_type, consumer, attempt, outcome, "
                  "detail, duration_ms, subject, trace_id) VALUES (?,?,?,?,?,?,?,?,?,?)")


def subject_of(event: Event) -> str | None:
    """What a row is about (an order, an item), so `trace ORDER` finds it."""
    if event.subject:
        return event.subject
    data = event.data
    if isinstance(data, Mapping):
        for key in ("order_id", "item_id"):
            if key in data:
                return str(data[key])
    return None


def subject_of_saga(state: Mapping[str, Any]) -> str | None:
    order_id = state.get("input", {}).get("order_id")
    return str(order_id) if order_id is not None else None


class Timeline:
    """Appends rows (inside the caller's transaction) and reads them back."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, event: Event | None, type_: str, consumer: str | None, attempt: int,
               outcome: str, detail: str, duration_ms: float | None, subject: str | None,
               saga_id: str | None = None, traceparent: str | None = None,
               conn: sqlite3.Connection | None = None) -> None:
        """Append a row, inside the caller's transaction when it passes one."""
        row = (time.time(), event.id if event else saga_id, type_, consumer, attempt, outcome,
               detail, duration_ms, subject,
               trace_id_of(event.traceparent if event else traceparent))
        if conn is not None:
            # Written at the commit of the caller's transaction, with the other rows of
            # that transaction in one statement (dropped with a savepoint rolled back).
            self.db.defer(_INSERT, row)
            return
        with self.db.write() as own:
            own.execute(_INSERT, row)

    def rows(self, subject: str | None = None) -> list[dict[str, Any]]:
        sql = _SELECT
        params: tuple[Any, ...] = ()
        if subject is not None:
            sql += " WHERE subject = ?"
            params = (subject,)
        return [dict(zip(_COLUMNS, row, strict=True))
                for row in self.db.read(sql + " ORDER BY seq", params)]

    def trace(self, order_id: str) -> list[dict[str, Any]]:
        """Everything that happened to an order: rows about it, and rows sharing its trace."""
        direct = self.rows(subject=order_id)
        traces = {row["trace_id"] for row in direct if row["trace_id"]}
        if not traces:
            return direct
        marks = ",".join("?" * len(traces))
        rows = self.db.read(
            f"{_SELECT} WHERE subject = ? OR trace_id IN ({marks}) ORDER BY seq",
            (order_id, *sorted(traces)))
        return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


def log_delivery(consumer: str, event: Event, attempt: int, outcome: str,
                 started: float | None, *, reason: str | None = None,
                 detail: str | None = None, level: int = logging.INFO) -> None:
    """One line per delivery outcome, with the fields an operator filters on."""
    fields: dict[str, Any] = {
        "consumer": consumer, "event_type": event.type, "event_id": event.id,
        "attempt": attempt, "outcome": outcome,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else 0.0,
        "trace_id": trace_id_of(event.traceparent)}
    if reason:
        fields["reason"] = reason
    if detail:
        fields["detail"] = detail
    log_fields(log, level, fields, "delivery %s", outcome)
