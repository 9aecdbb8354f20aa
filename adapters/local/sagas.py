"""The local saga executor: what Step Functions / Cloud Workflows do, on SQLite.

The app's saga definition runs here with its state persisted in the `sagas` table, so a
restart resumes sagas mid-way: `SagaStarter` is the handlers' `sagas` port (one row per
saga id, so a saga starts once), `SagaExecutor.advance_batch` leases the next due sagas
and runs their due steps, every step's writes and effects committing with the saga's new
state and its timeline rows (one transaction for the claimed sagas' runs). A saga that
ends `failed` (a compensation kept failing) gets a dead letter and an ALARM log line;
redriving it resumes it (`resume_in`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from adapters.local.broker import MAX_HOLD
from adapters.local.database import Database
from adapters.local.timeline import Timeline, subject_of_saga
from handlers.core import fastjson, saga_runner
from handlers.core.app import App
from handlers.core.observability import log_fields
from handlers.core.ports import Ports

log = logging.getLogger("switchyard.local")

#: Saga steps one claim may run back to back (bounded so one saga cannot hog a worker).
_STEPS_PER_CLAIM: Final = 16
#: Sagas one claim takes: their runs share one transaction (a savepoint each).
SAGA_BATCH: Final = 16
_ANY_DUE: Final = ("SELECT 1 FROM sagas WHERE status IN ('running', 'compensating')"
                   " AND next_run_at <= ? AND lease_until <= ? LIMIT 1")
_LEASE: Final = (
    "UPDATE sagas SET lease_until = ? WHERE saga_id IN ("
    " SELECT saga_id FROM sagas WHERE status IN ('running', 'compensating')"
    " AND next_run_at <= ? AND lease_until <= ? ORDER BY next_run_at LIMIT ?)"
    " RETURNING saga_id, state")


class SagaSettings(Protocol):
    @property
    def saga_lease(self) -> float: ...
    @property
    def retry_scale(self) -> float: ...


class SagaStarter:
    """The `sagas` port: starts a saga at most once per saga id."""

    def __init__(self, db: Database, saga_name: str, timeline: Timeline,
                 wake: Callable[[], None]) -> None:
        self.db = db
        self._scope = f"saga:{saga_name}"
        self._timeline = timeline
        self._wake = wake

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        state = saga_runner.new_state(saga_id, dict(input), traceparent)
        now = time.time()
        with self.db.write(savepoint=False) as conn:  # one row and its timeline row
            started = conn.execute(
                "INSERT OR IGNORE INTO sagas (saga_id, status, state, next_run_at, started_at,"
                " updated_at) VALUES (?, 'running', ?, ?, ?, ?)",
                (saga_id, fastjson.dumps(state), now, now, now)).rowcount == 1
            self._timeline.record(None, "saga.start", self._scope, 0,
                                  "started" if started else "no-op",
                                  saga_id if started else f"{saga_id} already started",
                                  0.0, subject_of_saga(state), saga_id=saga_id,
                                  traceparent=traceparent, conn=conn)
        if started:
            self._wake()
        return started


class SagaExecutor:
    """Leases due sagas and runs their steps against the handlers' ports."""

    def __init__(self, db: Database, app: App, ports: Ports, settings: SagaSettings,
                 timeline: Timeline, stopping: threading.Event) -> None:
        self.db = db
        self._app = app
        self._ports = ports
        self._settings = settings
        self._timeline = timeline
        self._stopping = stopping
        self._scope = f"saga:{app.saga.name}"

    def next_due(self) -> float | None:
        """When the next active saga is due (None: no saga is active)."""
        due = self.db.read("SELECT MIN(MAX(next_run_at, lease_until)) FROM sagas "
                            "WHERE status IN ('running', 'compensating')")[0][0]
        return float(due) if due is not None else None

    def advance_one(self) -> bool:
        """Run the due steps of one due saga; False when no saga was due."""
        return self.advance_batch(limit=1)

    def advance_batch(self, limit: int = SAGA_BATCH) -> bool:
        """Run the due steps of up to `limit` due sagas; False when none was due (found
        by a read: an empty claim writes nothing).

        The lease commits first, on its own, so a worker that dies mid-run leaves its
        sagas to another after the lease. Then every claimed saga's run of due steps goes
        in one transaction, a savepoint per saga; each saga's state is written once, at
        the end of its run, with its timeline rows. The log lines follow the commit."""
        now = time.time()
        if not self.db.read(_ANY_DUE, (now, now)):
            return False
        with self.db.write() as conn:
            claimed = conn.execute(
                _LEASE, (now + self._settings.saga_lease, now, now, limit)).fetchall()
        if not claimed:
            return False
        pending = sorted(claimed)
        while pending:
            lines: list[Callable[[], None]] = []
            until = time.perf_counter() + MAX_HOLD
            with self.db.write():
                while pending:
                    saga_id, state_json = pending.pop(0)
                    try:
                        with self.db.write():
                            self._run(saga_id, fastjson.loads(state_json), lines)
                    except Exception:  # noqa: BLE001 - rolled back: it keeps its lease,
                        # and runs again once that expires; the other sagas go on.
                        log.exception("saga run failed", extra={"saga_id": saga_id})
                    if self.db.ingest_waiting() or time.perf_counter() > until:
                        break  # commit now: a producer's 202 or another worker waits
            for line in lines:
                line()
        return True

    def _run(self, saga_id: str, state: dict[str, Any],
             lines: list[Callable[[], None]]) -> None:
        """One saga's due steps back to back (inside the caller's transaction), then its
        new state, once."""
        seen = len(state["history"])
        delay: float | None = None
        durations: list[float] = []
        # Run on while the next step is due at once: an order finishes in one go instead
        # of queueing behind every other saga (bounded so one saga cannot hog a worker).
        for _ in range(_STEPS_PER_CLAIM):
            step_started = time.perf_counter()
            before = len(state["history"])
            state, delay = saga_runner.tick(self._app, self._ports, state)
            step_ms = (time.perf_counter() - step_started) * 1000
            durations.extend([step_ms] * (len(state["history"]) - before))
            if not (delay == 0.0 and state["status"] in saga_runner.ACTIVE
                    and not self._stopping.is_set()):
                break
        self._save(saga_id, state, seen, durations,
                   time.time() + (delay or 0.0) * self._settings.retry_scale)
        entries = state["history"][seen:]
        status, reason = state["status"], state.get("reason") or None

        def line() -> None:
            for entry, step_ms in zip(entries, durations, strict=False):
                log_fields(log, logging.INFO, {
                    "saga_id": saga_id, "step": entry["step"], "phase": entry["phase"],
                    "outcome": entry["outcome"], "attempt": entry["attempt"],
                    "detail": entry["detail"], "duration_ms": round(step_ms, 2)}, "saga step")
            if status in saga_runner.TERMINAL:
                log_fields(log, logging.INFO,
                           {"saga_id": saga_id, "outcome": status, "reason": reason},
                           "saga finished")
            if status == "failed":
                log.error("ALARM saga needs attention", extra={"saga_id": saga_id,
                                                               "reason": reason})
        lines.append(line)

    def _save(self, saga_id: str, state: dict[str, Any], seen: int, durations: list[float],
              next_run: float) -> None:
        """Persist a saga's state with its new timeline entries (and its DLQ entry when it
        needs attention), inside the run's transaction; the lease ends with it. The run's
        own savepoint holds it: the last writes of the run need none of their own."""
        with self.db.write(savepoint=False) as conn:
            now = time.time()
            conn.execute("UPDATE sagas SET status = ?, state = ?, next_run_at = ?, "
                         "lease_until = 0, updated_at = ? WHERE saga_id = ?",
                         (state["status"], fastjson.dumps(state), next_run, now, saga_id))
            if state["status"] == "failed":
                conn.execute(
                    "INSERT INTO dlq (consumer, event_id, event_type, reason, attempts, body, "
                    "failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self._scope, saga_id, "saga.needs_attention",
                     state["reason"], len(state["history"]), json.dumps(state), now))
            subject, trace = subject_of_saga(state), state.get("traceparent")
            for entry, step_ms in zip(state["history"][seen:], durations, strict=False):
                self._timeline.record(None, f"saga.{entry['step']}.{entry['phase']}",
                                      self._scope, entry["attempt"], entry["outcome"],
                                      entry["detail"], step_ms, subject, saga_id=saga_id,
                                      traceparent=trace, conn=conn)
            if state["status"] in saga_runner.TERMINAL:
                self._timeline.record(None, "saga.finished", self._scope, 0, state["status"],
                                      state.get("reason") or "", 0.0, subject,
                                      saga_id=saga_id, traceparent=trace, conn=conn)


def resume_in(conn: sqlite3.Connection, body: str, now: float) -> None:
    """Resume a dead-lettered saga (its dead letter's body is its state), inside the
    caller's transaction: the broker's redrive marks the dead letter in the same one."""
    state = saga_runner.resume(json.loads(body))
    conn.execute("UPDATE sagas SET status = ?, state = ?, next_run_at = ?, "
                 "lease_until = 0 WHERE saga_id = ?",
                 (state["status"], json.dumps(state), now, state["saga_id"]))
