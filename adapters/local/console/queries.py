"""Read-only queries the console needs beyond the Runtime's own query methods.

Plain SELECTs on the runtime's database (its per-thread connection), never a write: the
console's only state changes go through Runtime methods (ingest, redrive, discard), the
same code the HTTP ingress and the `switchyard dlq` commands use.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Final

from adapters.local.runtime import Runtime
from handlers.core.app import App

#: Timeline columns as the console receives them: one array per row keeps a page of
#: 10,000 events small on the wire (no repeated keys).
TIMELINE_COLUMNS: Final = ("seq", "at", "event_id", "type", "consumer", "attempt", "outcome",
                           "detail", "duration_ms", "subject")
MAX_PAGE: Final = 500


def timeline_after(runtime: Runtime, after: int, limit: int) -> list[list[Any]]:
    """Timeline rows with seq > `after`, oldest first (the stream's resume point)."""
    rows = runtime.db.read(
        "SELECT seq, at, event_id, event_type, consumer, attempt, outcome, detail, "
        "duration_ms, subject FROM timeline WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit))
    return [list(row) for row in rows]


def table_page(runtime: Runtime, table: str, offset: int, limit: int) -> dict[str, Any]:
    """One page of an app table (the store's items), ordered by key."""
    limit = max(1, min(limit, MAX_PAGE))
    total = int(runtime.db.read("SELECT COUNT(*) FROM items WHERE tbl = ?", (table,))[0][0])
    rows = runtime.db.read("SELECT key, doc FROM items WHERE tbl = ? ORDER BY key LIMIT ? "
                           "OFFSET ?", (table, limit, max(0, offset)))
    return {"table": table, "total": total, "offset": offset, "limit": limit,
            "rows": [{"_key": key, **_doc(doc)} for key, doc in rows]}


def _doc(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def saga_state(runtime: Runtime, saga_id: str) -> dict[str, Any] | None:
    rows = runtime.db.read("SELECT status, state, started_at, updated_at FROM sagas WHERE "
                           "saga_id = ?", (saga_id,))
    if not rows:
        return None
    status, state, started, updated = rows[0]
    return {"saga_id": saga_id, "status": status, "state": json.loads(state),
            "started_at": started, "updated_at": updated}


def sources_status(runtime: Runtime) -> dict[str, Any]:
    """Uploads seen per bucket and each schedule's last slot (tables of the local
    event sources; absent until the sources first ran, which reads as nothing yet)."""
    app: App = runtime.app
    uploads: list[dict[str, Any]] = []
    schedules: list[dict[str, Any]] = []
    for bucket in app.buckets:
        if not bucket.events:
            continue
        count, last = _safe(runtime, "SELECT COUNT(*), MAX(seen_at) FROM uploads_seen WHERE "
                                     "bucket = ?", (bucket.name,), (0, None))
        uploads.append({"bucket": bucket.name, "folder": str(runtime.blobs.directory(
            bucket.name)), "files_seen": count, "last_seen_at": last})
    for schedule in app.schedules:
        last_slot, fired = _safe(runtime, "SELECT last_slot, fired FROM schedule_runs WHERE "
                                          "name = ?", (schedule.name,), (None, 0))
        schedules.append({"name": schedule.name, "cron": schedule.cron,
                          "emits": schedule.emits, "last_slot": last_slot,
                          "fired": fired})
    return {"uploads": uploads, "schedules": schedules}


def _safe(runtime: Runtime, sql: str, params: tuple[Any, ...],
          default: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        rows = runtime.db.read(sql, params)
    except sqlite3.OperationalError:  # the sources' tables do not exist yet
        return default
    return tuple(rows[0]) if rows and rows[0] is not None else default


def last_reload(runtime: Runtime) -> dict[str, Any] | None:
    rows = runtime.db.read("SELECT seq, at, detail FROM timeline WHERE outcome = 'reloaded' "
                           "ORDER BY seq DESC LIMIT 1")
    if not rows:
        return None
    seq, at, detail = rows[0]
    return {"seq": seq, "at": at, "detail": detail, "ago_s": round(time.time() - at, 1)}
