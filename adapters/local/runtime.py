"""The embedded runtime: the whole system on one machine, on one SQLite database.

Composition root for the local backend. Generated from the app description like the
clouds are: one queue per consumer (rows in `queue`), routed by the catalog types each
consumer consumes; a visibility timeout and attempt counter per message; `maxDeliveries`
then the dead-letter table; the saga executor running the same saga definition with its
state persisted, so a restart resumes sagas mid-way.

Every delivery outcome (ok, duplicate, ignored, retry, dead-lettered, already
dead-lettered) and every saga step logs one INFO line on `switchyard.local` with its
fields (consumer, event type and id, attempt, outcome, reason, duration), after the
transaction that records it has committed.

A delivery that fails for good with exactly the reason of a dead letter still open for
the same consumer and event (a replay, or a resend, of a known poison event) does not add
a second dead letter: the timeline and the log say "already-dead-lettered" instead, and
the open dead letter is the one to redrive or discard.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from adapters.local.blob_store import FileBlobStore
from adapters.local.database import Database, DatabaseMissing
from adapters.local.sources import LocalSources
from adapters.local.sqlite_store import SQLiteStore
from handlers.core import jsonformat, saga_runner
from handlers.core.app import App, load_app
from handlers.core.claim_check import ClaimCheckPublisher
from handlers.core.engine import handle
from handlers.core.errors import PermanentError
from handlers.core.events import Event, ensure_traceparent
from handlers.core.observability import trace_id_of
from handlers.core.ports import Ports
from handlers.payments import DEFAULT_DECLINE_ABOVE_CENTS, SimulatedPaymentGateway

log = logging.getLogger("switchyard.local")

#: The local bus's per-event size limit (the transport constant; EventBridge allows 1 MB).
MAX_EVENT_BYTES: Final = 1024 * 1024
DEFAULT_DB: Final = "switchyard.db"
#: Saga steps one claim may run back to back (bounded so one saga cannot hog a worker).
_STEPS_PER_CLAIM: Final = 16
#: Timeline/log outcome of a delivery whose failure matches a dead letter still open.
ALREADY_DEAD_LETTERED: Final = "already-dead-lettered"
#: Engine statuses as the delivery log names them.
_LOGGED_OUTCOME: Final = {"processed": "ok"}


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    max_deliveries: int = 5
    visibility_timeout: float = 30.0
    #: Multiplies every retry/backoff delay: 1.0 in production, small in demos and tests.
    retry_scale: float = 1.0
    saga_lease: float = 30.0
    decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS
    poll_interval: float = 0.2
    #: Where buckets live (one folder each); default: `<database>.blobs` beside the db.
    blob_dir: str | None = None
    #: The watched uploads folder (the app's bucket with `events`); default: in blob_dir.
    uploads_dir: str | None = None
    #: Fire schedules every this many seconds instead of on their cron (demos, tests).
    schedule_every: float | None = None
    #: How often the timer looks at uploads and schedules.
    sources_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {self.max_deliveries}")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Publisher:
    """Emitted events go back onto the local bus (the same database)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def publish(self, events: Sequence[Event]) -> None:
        self._runtime.ingest(events, origin="emit")


class _Notifier:
    """The local notifications topic: a table (deduplicated on the id) plus a log line."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        with self._db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO notifications (id, message, sent_at) "
                         "VALUES (?, ?, ?)", (notification_id, json.dumps(message), time.time()))
        log.info("notification", extra={"notification_id": notification_id,
                                        "notification": dict(message)})


class _SagaStarter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        state = saga_runner.new_state(saga_id, dict(input), traceparent)
        now = time.time()
        with self._runtime.db.write() as conn:
            started = conn.execute(
                "INSERT OR IGNORE INTO sagas (saga_id, status, state, next_run_at, started_at,"
                " updated_at) VALUES (?, 'running', ?, ?, ?, ?)",
                (saga_id, json.dumps(state), now, now, now)).rowcount == 1
            self._runtime._record(None, "saga.start", f"saga:{self._runtime.app.saga.name}", 0,
                                  "started" if started else "no-op",
                                  saga_id if started else f"{saga_id} already started",
                                  0.0, _subject_of_saga(state), saga_id=saga_id,
                                  traceparent=traceparent, conn=conn)
        if started:
            self._runtime.wake()
        return started


def _subject_of_saga(state: Mapping[str, Any]) -> str | None:
    order_id = state.get("input", {}).get("order_id")
    return str(order_id) if order_id is not None else None


def _subject(event: Event) -> str | None:
    if event.subject:
        return event.subject
    data = event.data
    if isinstance(data, Mapping):
        for key in ("order_id", "item_id"):
            if key in data:
                return str(data[key])
    return None


def _blob_store(app: App, db_path: str | Path, settings: RuntimeSettings) -> FileBlobStore:
    if settings.blob_dir:
        root = Path(settings.blob_dir)
    elif str(db_path) == ":memory:":
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="switchyard-blobs-"))
    else:
        root = Path(f"{db_path}.blobs")
    overrides = {}
    uploads = next((b.name for b in app.buckets if b.events), None)
    if settings.uploads_dir and uploads:
        overrides[uploads] = settings.uploads_dir
    return FileBlobStore(root, overrides)


class Runtime:
    """Queues, workers, dead letters and the saga executor over one SQLite file."""

    def __init__(self, db_path: str | Path = DEFAULT_DB, app: App | None = None,
                 settings: RuntimeSettings | None = None, *, create: bool = True,
                 read_only: bool = False) -> None:
        """`create=False`: the database must exist (`DatabaseMissing` otherwise);
        `read_only=True` also opens it read-only, for commands that only look."""
        self.app = app or load_app()
        self.settings = settings or RuntimeSettings()
        self.db = Database(db_path, create=create, read_only=read_only)
        self.store = SQLiteStore(self.db)
        self.blobs = _blob_store(self.app, db_path, self.settings)
        clock = SystemClock()
        self.ports = Ports(
            store=self.store, publisher=self.producer(), notifier=_Notifier(self.db),
            sagas=_SagaStarter(self), clock=clock,
            payments=SimulatedPaymentGateway(self.store, clock,
                                             self.settings.decline_above_cents),
            blobs=self.blobs,
            atomic=self.db.write,
        )
        self._sources: LocalSources | None = None
        if not read_only:
            _ = self.sources  # their tables exist from the start, as before
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._turn = False

    @property
    def sources(self) -> LocalSources:
        """Uploads, schedules and expiry; made on first use, as they write their tables
        (a read-only runtime never needs them)."""
        if self._sources is None:
            if self.db.read_only:
                raise DatabaseMissing(f"{self.db.path} is open read-only: no event sources")
            self._sources = LocalSources(self.app, self.db, self.blobs,
                                         lambda events: self.ingest(events, origin="source"),
                                         self.settings.schedule_every)
        return self._sources

    def producer(self) -> _Publisher | ClaimCheckPublisher:
        """A publisher onto the local bus for handlers and in-process producers: events
        over the bus limit go by claim check when the app declares a claim-check bucket."""
        claims = self.app.claim_check_bucket()
        if claims is None:
            return _Publisher(self)
        # Headroom for what ingest adds (a traceparent) to what the publisher measured.
        return ClaimCheckPublisher(_Publisher(self), self.blobs, claims.name,
                                   MAX_EVENT_BYTES - 1024)

    # ingress ----------------------------------------------------------------
    def ingest(self, events: Iterable[Event], origin: str = "http") -> list[str]:
        """Append events to the log and enqueue them for every consumer, durably, at once."""
        now = time.time()
        rows = []
        for event in events:
            if origin != "emit":
                event = ensure_traceparent(event)
            body = jsonformat.dumps(event)
            if len(body.encode()) > MAX_EVENT_BYTES:
                raise PermanentError(f"event '{event.id}' is {len(body.encode())} bytes, over "
                                     f"the local bus limit of {MAX_EVENT_BYTES} bytes")
            rows.append((event, body))
        with self.db.write(durable=origin != "emit") as conn:
            for event, body in rows:
                seq = conn.execute(
                    "INSERT INTO events (id, source, type, body, accepted_at, origin) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (event.id, event.source, event.type, body, now, origin)).lastrowid
                consumers = self.app.routes(event.type)
                conn.executemany(
                    "INSERT INTO queue (consumer, event_seq, body, visible_at, enqueued_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(c.name, seq, body, now, now) for c in consumers])
                if not consumers:
                    conn.execute(
                        "INSERT INTO timeline (at, event_id, event_type, consumer, attempt, "
                        "outcome, detail, subject, trace_id) VALUES (?,?,?,?,?,?,?,?,?)",
                        (now, event.id, event.type, None, 0, "unrouted",
                         "no consumer for this type", _subject(event),
                         trace_id_of(event.traceparent)))
        self.wake()
        return [event.id for event, _ in rows]

    # workers ----------------------------------------------------------------
    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def start(self, workers: int = 4) -> None:
        if workers < 1:  # events would be accepted and never processed
            raise ValueError(f"workers must be >= 1, got {workers}")
        if self.db.read_only:
            raise DatabaseMissing(f"{self.db.path} is open read-only: cannot process")
        self._stopping.clear()
        for n in range(workers):
            thread = threading.Thread(target=self._loop, name=f"switchyard-worker-{n}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.app.schedules or self.app.buckets:
            timer = threading.Thread(target=self._timer, name="switchyard-timer", daemon=True)
            timer.start()
            self._threads.append(timer)

    def _timer(self) -> None:
        """Uploads, schedules and expiry: the managed event sources of the clouds."""
        interval = self.settings.sources_interval
        if self.settings.schedule_every:
            interval = min(interval, self.settings.schedule_every / 4)
        while not self._stopping.is_set():
            try:
                self.sources.poll()
            except Exception:  # noqa: BLE001 - the timer must outlive any one failure
                log.exception("event source error")
            self._stopping.wait(interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.work_once():
                    continue
            except Exception:  # noqa: BLE001 - a worker must outlive any one failure
                log.exception("worker error")
            with self._wake:
                self._wake.wait(self.settings.poll_interval)

    def work_once(self) -> bool:
        """Do one unit of work (a delivery, or a saga's run of due steps); False when
        nothing was due. Alternates which kind goes first, so a backlog of deliveries
        never starves the sagas (or the other way round)."""
        self._turn = not self._turn
        if self._turn:
            return self._deliver_one() or self._advance_one_saga()
        return self._advance_one_saga() or self._deliver_one()

    def run_until_idle(self, timeout: float = 60.0) -> None:
        """Process in the calling thread until no delivery or saga step is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.work_once():
                continue
            due = self._next_due()
            if due is None:
                return
            time.sleep(min(max(due - time.time(), 0.001), 0.05))
        raise TimeoutError(f"runtime not idle after {timeout}s")

    def _next_due(self) -> float | None:
        queue = self.db.read("SELECT MIN(visible_at) FROM queue")[0][0]
        sagas = self.db.read("SELECT MIN(MAX(next_run_at, lease_until)) FROM sagas "
                             "WHERE status IN ('running', 'compensating')")[0][0]
        dues = [d for d in (queue, sagas) if d is not None]
        return min(dues) if dues else None

    # deliveries -------------------------------------------------------------
    def _deliver_one(self) -> bool:
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(
                "UPDATE queue SET attempts = attempts + 1, visible_at = ? WHERE mid = ("
                " SELECT mid FROM queue WHERE visible_at <= ? ORDER BY visible_at, mid LIMIT 1)"
                " RETURNING mid, consumer, body, attempts, last_error",
                (now + self.settings.visibility_timeout, now)).fetchone()
        if row is None:
            return False
        mid, consumer, body, attempts, last_error = row
        event = jsonformat.loads(body)
        if attempts > self.settings.max_deliveries:
            # Earlier receives never finished (the worker died): the platform's count wins.
            self._dead_letter(mid, consumer, event, body, attempts - 1,
                              f"exceeded maxDeliveries={self.settings.max_deliveries} "
                              f"(last error: {last_error or 'worker stopped mid-delivery'})")
            return True
        started = time.perf_counter()
        try:
            # The handler's writes, its effects (emitted events, notifications, saga
            # starts: rows in this same database) and the ack commit as one transaction.
            with self.db.write() as conn:
                outcome = handle(self.app, consumer, event, self.ports)
                self._ack(mid, consumer, event, attempts, outcome, started, conn)
            _log_delivery(consumer, event, attempts,
                          _LOGGED_OUTCOME.get(outcome.status, outcome.status), started,
                          detail=outcome.detail)
        except PermanentError as error:
            self._dead_letter(mid, consumer, event, body, attempts,
                              f"permanent error: {error}", started)
            return True
        except Exception as error:  # noqa: BLE001 - transient or unexpected: retry
            self._retry_or_dead_letter(mid, consumer, event, body, attempts, error, started)
            return True
        return True

    def _ack(self, mid: int, consumer: str, event: Event, attempts: int, outcome: Any,
             started: float, conn: sqlite3.Connection) -> None:
        detail = outcome.detail or (
            f"emitted {len(outcome.emitted)}" if outcome.status == "processed" else "no effect")
        conn.execute("DELETE FROM queue WHERE mid = ?", (mid,))
        self._record(event, event.type, consumer, attempts, outcome.status, detail,
                     (time.perf_counter() - started) * 1000, _subject(event), conn=conn)

    def _retry_or_dead_letter(self, mid: int, consumer: str, event: Event, body: str,
                              attempts: int, error: Exception, started: float) -> None:
        message = f"{type(error).__name__}: {error}"
        duration = (time.perf_counter() - started) * 1000
        if attempts >= self.settings.max_deliveries:
            self._dead_letter(mid, consumer, event, body, attempts,
                              f"failed {attempts} deliveries (maxDeliveries="
                              f"{self.settings.max_deliveries}); last error: {message}", started)
            return
        delay = min(2 ** (attempts - 1), self.settings.visibility_timeout)
        with self.db.write() as conn:
            conn.execute("UPDATE queue SET visible_at = ?, last_error = ? WHERE mid = ?",
                         (time.time() + delay * self.settings.retry_scale, message, mid))
            self._record(event, event.type, consumer, attempts, "retry", message, duration,
                         _subject(event), conn=conn)
        _log_delivery(consumer, event, attempts, "retry", started, reason=message)

    def _dead_letter(self, mid: int, consumer: str, event: Event, body: str, attempts: int,
                     reason: str, started: float | None = None) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM queue WHERE mid = ?", (mid,))
            # A dead letter still open for this consumer and event with this very reason
            # says it all already; a second copy would only be discarded or redriven twice.
            known = conn.execute(
                "SELECT did FROM dlq WHERE consumer = ? AND event_id = ? AND reason = ? "
                "AND redriven_at IS NULL LIMIT 1", (consumer, event.id, reason)).fetchone()
            if known is None:
                conn.execute(
                    "INSERT INTO dlq (consumer, event_id, event_type, reason, attempts, body, "
                    "failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (consumer, event.id, event.type, reason, attempts, body, time.time()))
            outcome = "dead-lettered" if known is None else ALREADY_DEAD_LETTERED
            duration = (time.perf_counter() - started) * 1000 if started else 0.0
            self._record(event, event.type, consumer, attempts, outcome,
                         reason if known is None else f"dead letter #{known[0]}: {reason}",
                         duration, _subject(event), conn=conn)
        _log_delivery(consumer, event, attempts, outcome, started, reason=reason,
                      level=logging.ERROR if known is None else logging.WARNING)

    # sagas ------------------------------------------------------------------
    def _advance_one_saga(self) -> bool:
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(
                "UPDATE sagas SET lease_until = ? WHERE saga_id = ("
                " SELECT saga_id FROM sagas WHERE status IN ('running', 'compensating')"
                " AND next_run_at <= ? AND lease_until <= ? ORDER BY next_run_at LIMIT 1)"
                " RETURNING saga_id, state", (now + self.settings.saga_lease, now, now)
            ).fetchone()
        if row is None:
            return False
        saga_id, state_json = row
        state = json.loads(state_json)
        # Keep the lease while the next step is due at once: one claim per run of steps,
        # and an order finishes in one go instead of queueing behind every other saga.
        for _ in range(_STEPS_PER_CLAIM):
            seen = len(state["history"])
            started = time.perf_counter()
            # A step's writes and effects commit with the saga's new state: one commit.
            with self.db.write():
                state, delay = saga_runner.tick(self.app, self.ports, state)
                duration = (time.perf_counter() - started) * 1000
                keep = (delay == 0.0 and state["status"] in saga_runner.ACTIVE
                        and not self._stopping.is_set())
                now = time.time()
                lease = now + self.settings.saga_lease if keep else 0.0
                self._save_saga(saga_id, state, seen, duration, now + (delay or 0.0) *
                                self.settings.retry_scale, lease)
            for entry in state["history"][seen:]:
                log.info("saga step", extra={
                    "saga_id": saga_id, "step": entry["step"], "phase": entry["phase"],
                    "outcome": entry["outcome"], "attempt": entry["attempt"],
                    "detail": entry["detail"], "duration_ms": round(duration, 2)})
            if state["status"] in saga_runner.TERMINAL:
                log.info("saga finished", extra={"saga_id": saga_id,
                                                 "outcome": state["status"],
                                                 "reason": state.get("reason") or None})
            if not keep:
                break
        if state["status"] in saga_runner.TERMINAL:
            if state["status"] == "failed":
                log.error("ALARM saga needs attention", extra={"saga_id": saga_id,
                                                               "reason": state["reason"]})
        return True

    def _save_saga(self, saga_id: str, state: dict[str, Any], seen: int, duration: float,
                   next_run: float, lease_until: float) -> None:
        """Persist a saga's state with its new timeline entries (and its DLQ entry when it
        needs attention) in one commit."""
        with self.db.write() as conn:
            conn.execute("UPDATE sagas SET status = ?, state = ?, next_run_at = ?, "
                         "lease_until = ?, updated_at = ? WHERE saga_id = ?",
                         (state["status"], json.dumps(state), next_run, lease_until,
                          time.time(), saga_id))
            if state["status"] == "failed":
                conn.execute(
                    "INSERT INTO dlq (consumer, event_id, event_type, reason, attempts, body, "
                    "failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (f"saga:{self.app.saga.name}", saga_id, "saga.needs_attention",
                     state["reason"], len(state["history"]), json.dumps(state), time.time()))
            subject, scope = _subject_of_saga(state), f"saga:{self.app.saga.name}"
            trace = state.get("traceparent")
            for entry in state["history"][seen:]:
                self._record(None, f"saga.{entry['step']}.{entry['phase']}", scope,
                             entry["attempt"], entry["outcome"], entry["detail"], duration,
                             subject, saga_id=saga_id, traceparent=trace, conn=conn)
            if state["status"] in saga_runner.TERMINAL:
                self._record(None, "saga.finished", scope, 0, state["status"],
                             state.get("reason") or "", 0.0, subject, saga_id=saga_id,
                             traceparent=trace, conn=conn)

    # observability ----------------------------------------------------------
    def _record(self, event: Event | None, type_: str, consumer: str, attempt: int,
                outcome: str, detail: str, duration_ms: float, subject: str | None,
                saga_id: str | None = None, traceparent: str | None = None,
                conn: sqlite3.Connection | None = None) -> None:
        """Append to the timeline, inside the caller's transaction when it passes one."""
        row = (time.time(), event.id if event else saga_id, type_, consumer, attempt, outcome,
               detail, duration_ms, subject,
               trace_id_of(event.traceparent if event else traceparent))
        sql = ("INSERT INTO timeline (at, event_id, event_type, consumer, attempt, outcome, "
               "detail, duration_ms, subject, trace_id) VALUES (?,?,?,?,?,?,?,?,?,?)")
        if conn is not None:
            conn.execute(sql, row)
            return
        with self.db.write() as own:
            own.execute(sql, row)

    # queries ----------------------------------------------------------------
    def order(self, order_id: str) -> dict[str, Any] | None:
        return self.store.get("orders", order_id)

    def orders(self) -> list[dict[str, Any]]:
        return self.store.scan("orders")

    def available(self, item_id: str) -> int:
        return int((self.store.get("inventory", item_id) or {}).get("available", 0))

    def dlq(self, consumer: str | None = None, include_redriven: bool = False
            ) -> list[dict[str, Any]]:
        sql = ("SELECT did, consumer, event_id, event_type, reason, attempts, body, failed_at,"
               " redriven_at FROM dlq WHERE 1=1")
        params: list[Any] = []
        if not include_redriven:
            sql += " AND redriven_at IS NULL"
        if consumer:
            sql += " AND consumer = ?"
            params.append(consumer)
        rows = self.db.read(sql + " ORDER BY did", tuple(params))
        return [{"dlq_id": r[0], "consumer": r[1], "event_id": r[2], "type": r[3],
                 "reason": r[4], "attempts": r[5], "event": json.loads(r[6]),
                 "failed_at": r[7], "redriven_at": r[8]} for r in rows]

    def redrive(self, consumer: str | None = None, ids: Sequence[int] | None = None
                ) -> list[int]:
        """Put dead-lettered events back on their consumer's queue (or resume their saga),
        each at most once: the row is marked redriven in the same transaction. `ids`
        limits it to those dead-letter rows."""
        now = time.time()
        redriven: list[int] = []
        with self.db.write() as conn:
            sql = "SELECT did, consumer, body FROM dlq WHERE redriven_at IS NULL"
            params: list[Any] = []
            if consumer:
                sql += " AND consumer = ?"
                params.append(consumer)
            if ids is not None:
                sql += f" AND did IN ({','.join('?' * len(ids))})"
                params.extend(ids)
            for did, name, body in conn.execute(sql + " ORDER BY did", params).fetchall():
                if name.startswith("saga:"):
                    state = saga_runner.resume(json.loads(body))
                    conn.execute("UPDATE sagas SET status = ?, state = ?, next_run_at = ?, "
                                 "lease_until = 0 WHERE saga_id = ?",
                                 (state["status"], json.dumps(state), now, state["saga_id"]))
                else:
                    seq = conn.execute("SELECT seq FROM events WHERE id = ? LIMIT 1",
                                       (json.loads(body)["id"],)).fetchone()
                    conn.execute(
                        "INSERT INTO queue (consumer, event_seq, body, visible_at, enqueued_at)"
                        " VALUES (?, ?, ?, ?, ?)", (name, seq[0] if seq else 0, body, now, now))
                conn.execute("UPDATE dlq SET redriven_at = ? WHERE did = ?", (now, did))
                redriven.append(did)
        self.wake()
        return redriven

    def discard(self, ids: Sequence[int], by: str) -> list[int]:
        """Give up on dead letters for good: each row moves to `dlq_discarded` with who
        and when, in one transaction, so it is never redriven, nor counted as dead
        again, and the record of what was dropped stays. Already redriven or discarded
        rows are left alone."""
        if not ids:
            return []
        now = time.time()
        marks = ",".join("?" * len(ids))
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT did, consumer, event_id, event_type, attempts FROM dlq WHERE "
                f"redriven_at IS NULL AND did IN ({marks}) ORDER BY did", list(ids)).fetchall()
            done = [r[0] for r in rows]
            if not done:
                return []
            chosen = ",".join("?" * len(done))
            conn.execute(
                "INSERT INTO dlq_discarded (did, consumer, event_id, event_type, reason, "
                "attempts, body, failed_at, discarded_by, discarded_at) SELECT did, consumer,"
                " event_id, event_type, reason, attempts, body, failed_at, ?, ? FROM dlq "
                f"WHERE did IN ({chosen})", [by, now, *done])
            conn.execute(f"DELETE FROM dlq WHERE did IN ({chosen})", done)
            for did, consumer, event_id, event_type, attempts in rows:
                self._record(None, event_type or "?", consumer, attempts, "discarded",
                             f"dead letter #{did} discarded by {by}", 0.0, None,
                             saga_id=event_id, conn=conn)
        log.warning("dead letters discarded", extra={"dlq_ids": done, "discarded_by": by})
        return done

    def discarded(self) -> list[dict[str, Any]]:
        """The record of every discarded dead letter, oldest first."""
        names = ("dlq_id", "consumer", "event_id", "type", "reason", "attempts", "event",
                 "failed_at", "discarded_by", "discarded_at")
        rows = self.db.read("SELECT did, consumer, event_id, event_type, reason, attempts, "
                            "body, failed_at, discarded_by, discarded_at FROM dlq_discarded "
                            "ORDER BY discarded_at, did")
        out = [dict(zip(names, row, strict=True)) for row in rows]
        for entry in out:
            entry["event"] = json.loads(entry["event"])
        return out

    def timeline(self, subject: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT at, event_id, event_type, consumer, attempt, outcome, detail, "
               "duration_ms, subject, trace_id FROM timeline")
        params: tuple[Any, ...] = ()
        if subject is not None:
            sql += " WHERE subject = ?"
            params = (subject,)
        names = ("at", "event_id", "type", "consumer", "attempt", "outcome", "detail",
                 "duration_ms", "subject", "trace_id")
        return [dict(zip(names, row, strict=True))
                for row in self.db.read(sql + " ORDER BY seq", params)]

    def trace(self, order_id: str) -> list[dict[str, Any]]:
        """Everything that happened to an order: rows about it, and rows sharing its trace."""
        direct = self.timeline(subject=order_id)
        traces = {row["trace_id"] for row in direct if row["trace_id"]}
        if not traces:
            return direct
        marks = ",".join("?" * len(traces))
        names = ("at", "event_id", "type", "consumer", "attempt", "outcome", "detail",
                 "duration_ms", "subject", "trace_id")
        rows = self.db.read(
            "SELECT at, event_id, event_type, consumer, attempt, outcome, detail, duration_ms,"
            f" subject, trace_id FROM timeline WHERE subject = ? OR trace_id IN ({marks})"
            " ORDER BY seq", (order_id, *sorted(traces)))
        return [dict(zip(names, row, strict=True)) for row in rows]

    def counts(self) -> dict[str, int]:
        def one(sql: str) -> int:
            return int(self.db.read(sql)[0][0])
        return {
            "events": one("SELECT COUNT(*) FROM events"),
            "queued": one("SELECT COUNT(*) FROM queue"),
            "dead_lettered": one("SELECT COUNT(*) FROM dlq WHERE redriven_at IS NULL"),
            "sagas_active": one("SELECT COUNT(*) FROM sagas WHERE status IN "
                                "('running', 'compensating')"),
            "notifications": one("SELECT COUNT(*) FROM notifications"),
        }

    def close(self) -> None:
        self.stop()
        self.db.close()


def _log_delivery(consumer: str, event: Event, attempt: int, outcome: str,
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
    log.log(level, "delivery %s", outcome, extra=fields)
