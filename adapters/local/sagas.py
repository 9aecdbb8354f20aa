"""The local saga executor: what Step Functions / Cloud Workflows do, on SQLite.

The app's saga definition runs here with its state persisted in the `sagas` table, so a
restart resumes sagas mid-way: `SagaStarter` is the handlers' `sagas` port (one row per
saga id, so a saga starts once), `SagaExecutor.advance_batch` leases the next due sagas
and runs their due steps, every step's writes and effects committing with the saga's new
state and its timeline rows (one transaction for the claimed sagas' runs). A saga that
ends `failed` (a compensation kept failing) gets a dead letter and an ALARM log line;
redriving it resumes it (`resume_in`). With worker processes the runs are computed
there and settled here (`adapters.local.offload`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from adapters.local.ahead import Ahead, Results
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


class SagaSpeculator(Protocol):
    """Worker processes that run claimed sagas' steps ahead of the write lock
    (`adapters.local.offload.Offload`)."""

    def speculate_sagas(self, runs: Sequence[tuple[str, str]], follows: bool
                        ) -> Callable[[], Results] | None: ...

    def settle_run(self, run: Any) -> bool: ...


class SagaExecutor:
    """Leases due sagas and runs their steps against the handlers' ports."""

    def __init__(self, db: Database, app: App, ports: Ports, settings: SagaSettings,
                 timeline: Timeline, stopping: threading.Event,
                 speculator: SagaSpeculator | None = None) -> None:
        self.db = db
        self._app = app
        self._ports = ports
        self._settings = settings
        self._timeline = timeline
        self._stopping = stopping
        self._scope = f"saga:{app.saga.name}"
        self._speculator = speculator
        #: Sagas leased ahead and handed to the speculator, not run yet.
        self._ahead = Ahead()

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
        the end of its run, with its timeline rows. The log lines follow the commit.

        With a speculator (worker processes), the claimed sagas are handed to it as soon
        as they are leased, and the next ones are leased and handed out before these are
        settled, as the broker does with deliveries (`adapters.local.ahead`): each saga
        whose run still holds is settled from it, the others run here."""
        speculator = self._speculator
        hand_out = None
        if speculator is not None and limit > 1:
            def hand_out(claimed: list[Any], follows: bool) -> Callable[[], Results] | None:
                return speculator.speculate_sagas(claimed, follows=follows)
        return self._ahead.step(lambda: self._lease(limit), self._run_all, hand_out)

    def run_ahead(self) -> bool:
        """Run the sagas leased ahead for the speculator, if any, here (when the workers
        stop); False when there were none."""
        return self._ahead.finish(self._run_all, self._settings.saga_lease)

    def _lease(self, limit: int) -> list[Any]:
        """Up to `limit` due sagas (id, state text), leased and committed, by id."""
        now = time.time()
        if not self.db.read(_ANY_DUE, (now, now)):
            return []
        with self.db.write() as conn:
            claimed = conn.execute(
                _LEASE, (now + self._settings.saga_lease, now, now, limit)).fetchall()
        return sorted(claimed)

    def _run_all(self, claimed: list[Any], runs: Results | None) -> None:
        """Each claimed saga's run, settled from the speculator's `runs` where that
        holds, else run here; one transaction (or one per `MAX_HOLD`)."""
        pending = list(zip(claimed, runs or [None] * len(claimed), strict=True))
        pending.reverse()  # popped from the end: in the order claimed
        speculator = self._speculator
        while pending:
            lines: list[Callable[[], None]] = []
            until = time.perf_counter() + MAX_HOLD
            with self.db.write():
                while pending:
                    (saga_id, state_json), run = pending.pop()
                    try:
                        with self.db.write():
                            if run is None or speculator is None \
                                    or not speculator.settle_run(run):
                                self._run(saga_id, fastjson.loads(state_json), lines)
                            else:
                                self._finish(saga_id, run.state, run.seen, run.durations,
                                             run.delay, lines, run.state_text)
                    except Exception:  # noqa: BLE001 - rolled back: it keeps its lease,
                        # and runs again once that expires; the other sagas go on.
                        log.exception("saga run failed", extra={"saga_id": saga_id})
                    if self.db.ingest_waiting() or time.perf_counter() > until:
                        break  # commit now: a producer's 202 or another worker waits
            for line in lines:
                line()

    def _run(self, saga_id: str, state: dict[str, Any],
             lines: list[Callable[[], None]]) -> None:
        """One saga's due steps back to back (inside the caller's transaction), then its
        new state, once."""
        seen = len(state["history"])
        state, delay, durations = run_due_steps(self._app, self._ports, state,
                                                self._stopping.is_set)
        self._finish(saga_id, state, seen, durations, delay, lines)

    def _finish(self, saga_id: str, state: dict[str, Any], seen: int,
                durations: Sequence[float], delay: float | None,
                lines: list[Callable[[], None]], text: str | None = None) -> None:
        """A run's new state saved (its history from `seen` on is new; `text`: the state
        already encoded), and its log lines for after the commit."""
        self._save(saga_id, state, seen, durations,
                   time.time() + (delay or 0.0) * self._settings.retry_scale, text)
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

    def _save(self, saga_id: str, state: dict[str, Any], seen: int,
              durations: Sequence[float], next_run: float, text: str | None = None) -> None:
        """Persist a saga's state with its new timeline entries (and its DLQ entry when it
        needs attention), inside the run's transaction; the lease ends with it. The run's
        own savepoint holds it: the last writes of the run need none of their own."""
        with self.db.write(savepoint=False) as conn:
            now = time.time()
            conn.execute("UPDATE sagas SET status = ?, state = ?, next_run_at = ?, "
                         "lease_until = 0, updated_at = ? WHERE saga_id = ?",
                         (state["status"], text or fastjson.dumps(state), next_run, now,
                          saga_id))
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


def run_due_steps(app: App, ports: Ports, state: dict[str, Any],
                  stopping: Callable[[], bool] = lambda: False
                  ) -> tuple[dict[str, Any], float | None, list[float]]:
    """One saga's run: its due steps back to back, while the next one is due at once
    (an order finishes in one go instead of queueing behind every other saga), at most
    `_STEPS_PER_CLAIM` (so one saga cannot hog a worker). Returns the new state, the
    delay before its next step (None: none) and each new history entry's milliseconds."""
    delay: float | None = None
    durations: list[float] = []
    for _ in range(_STEPS_PER_CLAIM):
        step_started = time.perf_counter()
        before = len(state["history"])
        state, delay = saga_runner.tick(app, ports, state)
        step_ms = (time.perf_counter() - step_started) * 1000
        durations.extend([step_ms] * (len(state["history"]) - before))
        if not (delay == 0.0 and state["status"] in saga_runner.ACTIVE and not stopping()):
            break
    return state, delay, durations


def resume_in(conn: sqlite3.Connection, body: str, now: float) -> None:
    """Resume a dead-lettered saga (its dead letter's body is its state), inside the
    caller's transaction: the broker's redrive marks the dead letter in the same one."""
    state = saga_runner.resume(json.loads(body))
    conn.execute("UPDATE sagas SET status = ?, state = ?, next_run_at = ?, "
                 "lease_until = 0 WHERE saga_id = ?",
                 (state["status"], json.dumps(state), now, state["saga_id"]))
