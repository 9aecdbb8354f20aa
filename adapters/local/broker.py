"""The local broker: the event log, one queue per consumer, and the dead letters.

What SQS/EventBridge and Pub/Sub do on the clouds, over the runtime's SQLite database:
`ingest` appends events to the log and enqueues them for every consumer the catalog
routes their type to (durably, before the caller answers 202); `deliver_one` claims the
next visible message (a visibility timeout and an attempt counter per message), runs it
through the `Process` it is given and acks it in the same transaction as the handler's
writes and effects; failures are retried with backoff up to `maxDeliveries`, then
dead-lettered. Dead letters can be listed (`adapters.local.queries`), redriven (each at
most once) and discarded (kept on record).

A delivery that fails for good with exactly the reason of a dead letter still open for
the same consumer and event (a replay, or a resend, of a known poison event) does not add
a second dead letter: the timeline and the log say "already-dead-lettered" instead, and
the open dead letter is the one to redrive or discard.

The broker knows nothing of handlers or ports: what a delivery does is passed in, so the
ports can publish through the broker without the broker holding them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from adapters.local.database import Database
from adapters.local.timeline import Timeline, log_delivery, subject_of
from handlers.core import jsonformat
from handlers.core.engine import Outcome
from handlers.core.errors import PermanentError
from handlers.core.events import Event, ensure_traceparent

log = logging.getLogger("switchyard.local")

#: The local bus's per-event size limit (the transport constant; EventBridge allows 1 MB).
MAX_EVENT_BYTES: Final = 1024 * 1024
#: Timeline/log outcome of a delivery whose failure matches a dead letter still open.
ALREADY_DEAD_LETTERED: Final = "already-dead-lettered"
#: Engine statuses as the delivery log names them.
_LOGGED_OUTCOME: Final = {"processed": "ok"}

#: What one delivery does: run `event` through `consumer` (inside the broker's transaction);
#: the third argument is the delivery's attempt number (1 for the first).
Process = Callable[[str, Event, int], Outcome]
#: Puts a dead-lettered saga back to work, inside the redrive's transaction.
ResumeSaga = Callable[[sqlite3.Connection, str, float], None]


class DeliverySettings(Protocol):
    @property
    def max_deliveries(self) -> int: ...
    @property
    def visibility_timeout(self) -> float: ...
    @property
    def retry_scale(self) -> float: ...


class Broker:
    """Queues, claim/ack, visibility, attempts, dead letters, redrive and discard."""

    def __init__(self, db: Database, routes: Callable[[str], Sequence[Any]],
                 settings: DeliverySettings, timeline: Timeline,
                 wake: Callable[[], None], resume_saga: ResumeSaga) -> None:
        self.db = db
        self._routes = routes
        self._settings = settings
        self._timeline = timeline
        self._wake = wake
        self._resume_saga = resume_saga

    # ingress ----------------------------------------------------------------
    def ingest(self, events: Iterable[Event], origin: str = "http") -> list[str]:
        """Append events to the log and enqueue them for every consumer, durably, at once.

        Events from outside (`origin` other than "emit") commit with a full fsync, so an
        accepted event survives a power cut; emitted ones commit with their delivery."""
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
                consumers = self._routes(event.type)
                conn.executemany(
                    "INSERT INTO queue (consumer, event_seq, body, visible_at, enqueued_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(c.name, seq, body, now, now) for c in consumers])
                if not consumers:
                    self._timeline.record(event, event.type, None, 0, "unrouted",
                                          "no consumer for this type", None,
                                          subject_of(event), conn=conn)
        self._wake()
        return [event.id for event, _ in rows]

    def next_visible(self) -> float | None:
        """When the next queued message becomes visible (None: the queues are empty)."""
        due = self.db.read("SELECT MIN(visible_at) FROM queue")[0][0]
        return float(due) if due is not None else None

    # deliveries -------------------------------------------------------------
    def deliver_one(self, process: Process) -> bool:
        """Claim the next visible message and deliver it; False when none was visible."""
        settings = self._settings
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(
                "UPDATE queue SET attempts = attempts + 1, visible_at = ? WHERE mid = ("
                " SELECT mid FROM queue WHERE visible_at <= ? ORDER BY visible_at, mid LIMIT 1)"
                " RETURNING mid, consumer, body, attempts, last_error",
                (now + settings.visibility_timeout, now)).fetchone()
        if row is None:
            return False
        mid, consumer, body, attempts, last_error = row
        event = jsonformat.loads(body)
        if attempts > settings.max_deliveries:
            # Earlier receives never finished (the worker died): the platform's count wins.
            self._dead_letter(mid, consumer, event, body, attempts - 1,
                              f"exceeded maxDeliveries={settings.max_deliveries} "
                              f"(last error: {last_error or 'worker stopped mid-delivery'})")
            return True
        started = time.perf_counter()
        try:
            # The handler's writes, its effects (emitted events, notifications, saga
            # starts: rows in this same database) and the ack commit as one transaction.
            with self.db.write() as conn:
                outcome = process(consumer, event, attempts)
                self._ack(mid, consumer, event, attempts, outcome, started, conn)
            log_delivery(consumer, event, attempts,
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

    def _ack(self, mid: int, consumer: str, event: Event, attempts: int, outcome: Outcome,
             started: float, conn: sqlite3.Connection) -> None:
        detail = outcome.detail or (
            f"emitted {len(outcome.emitted)}" if outcome.status == "processed" else "no effect")
        conn.execute("DELETE FROM queue WHERE mid = ?", (mid,))
        self._timeline.record(event, event.type, consumer, attempts, outcome.status, detail,
                              (time.perf_counter() - started) * 1000, subject_of(event),
                              conn=conn)

    def _retry_or_dead_letter(self, mid: int, consumer: str, event: Event, body: str,
                              attempts: int, error: Exception, started: float) -> None:
        settings = self._settings
        message = f"{type(error).__name__}: {error}"
        duration = (time.perf_counter() - started) * 1000
        if attempts >= settings.max_deliveries:
            self._dead_letter(mid, consumer, event, body, attempts,
                              f"failed {attempts} deliveries (maxDeliveries="
                              f"{settings.max_deliveries}); last error: {message}", started)
            return
        delay = min(2 ** (attempts - 1), settings.visibility_timeout)
        with self.db.write() as conn:
            conn.execute("UPDATE queue SET visible_at = ?, last_error = ? WHERE mid = ?",
                         (time.time() + delay * settings.retry_scale, message, mid))
            self._timeline.record(event, event.type, consumer, attempts, "retry", message,
                                  duration, subject_of(event), conn=conn)
        log_delivery(consumer, event, attempts, "retry", started, reason=message)

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
            self._timeline.record(
                event, event.type, consumer, attempts, outcome,
                reason if known is None else f"dead letter #{known[0]}: {reason}",
                duration, subject_of(event), conn=conn)
        log_delivery(consumer, event, attempts, outcome, started, reason=reason,
                     level=logging.ERROR if known is None else logging.WARNING)

    # dead letters -----------------------------------------------------------
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
                    self._resume_saga(conn, body, now)
                else:
                    seq = conn.execute("SELECT seq FROM events WHERE id = ? LIMIT 1",
                                       (json.loads(body)["id"],)).fetchone()
                    conn.execute(
                        "INSERT INTO queue (consumer, event_seq, body, visible_at, enqueued_at)"
                        " VALUES (?, ?, ?, ?, ?)", (name, seq[0] if seq else 0, body, now, now))
                conn.execute("UPDATE dlq SET redriven_at = ? WHERE did = ?", (now, did))
                redriven.append(did)
        self._wake()
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
                self._timeline.record(None, event_type or "?", consumer, attempts, "discarded",
                                      f"dead letter #{did} discarded by {by}", 0.0, None,
                                      saga_id=event_id, conn=conn)
        log.warning("dead letters discarded", extra={"dlq_ids": done, "discarded_by": by})
        return done
