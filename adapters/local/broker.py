"""The local broker: the event log, one queue per consumer, and the dead letters.

What SQS/EventBridge and Pub/Sub do on the clouds, over the runtime's SQLite database:
`ingest` appends events to the log and enqueues them for every consumer the catalog
routes their type to (durably, before the caller answers 202); `deliver_batch` claims the
next visible messages (a visibility timeout and an attempt counter per message), runs each
through the `Process` it is given and acks it in the same transaction as the handler's
writes and effects (one transaction per batch, a savepoint per message); failures are
retried with backoff up to `maxDeliveries`, then dead-lettered. Dead letters can be
listed (`adapters.local.queries`), redriven (each at most once) and discarded (kept on
record).

A delivery that fails for good with exactly the reason of a dead letter still open for
the same consumer and event (a replay, or a resend, of a known poison event) does not add
a second dead letter: the timeline and the log say "already-dead-lettered" instead, and
the open dead letter is the one to redrive or discard.

The broker knows nothing of handlers or ports: what a delivery does is passed in, so the
ports can publish through the broker without the broker holding them.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import MappingProxyType
from typing import Any, Final, Protocol

from adapters.local.ahead import Ahead, Results
from adapters.local.database import Database
from adapters.local.timeline import Timeline, log_delivery, subject_of
from handlers.core import fastjson, jsonformat
from handlers.core.engine import Outcome
from handlers.core.errors import NotYetKnown, PermanentError
from handlers.core.events import CORE_ATTRIBUTES, Event, ensure_traceparent
from handlers.core.observability import held_lines

log = logging.getLogger("switchyard.local")

#: The local bus's per-event size limit (the transport constant; EventBridge allows 1 MB).
MAX_EVENT_BYTES: Final = 1024 * 1024
#: Timeline/log outcome of a delivery whose failure matches a dead letter still open.
ALREADY_DEAD_LETTERED: Final = "already-dead-lettered"
#: Engine statuses as the delivery log names them.
_LOGGED_OUTCOME: Final = {"processed": "ok"}
#: Messages one claim takes: delivered in one transaction (a savepoint each), one commit.
CLAIM_BATCH: Final = 32
#: Seconds a batch holds the write lock before it commits what it has done and goes on
#: in a new transaction: new events and other workers wait for at most about this long.
MAX_HOLD: Final = 0.025
#: Seconds before the first retry of `NotYetKnown` (then the usual backoff), unscaled.
NOT_YET_KNOWN_FIRST_RETRY: Final = 0.02
_ANY_VISIBLE: Final = "SELECT 1 FROM queue WHERE visible_at <= ? LIMIT 1"
_CLAIM: Final = (
    "UPDATE queue SET attempts = attempts + 1, visible_at = ? WHERE mid IN ("
    " SELECT mid FROM queue WHERE visible_at <= ? ORDER BY visible_at, mid LIMIT ?)"
    " RETURNING mid, consumer, body, attempts, last_error")

#: The last `seq` the event log gave (or a row took): AUTOINCREMENT numbers go on from
#: the larger of the two, and so do `ingest`'s.
_LAST_SEQ: Final = ("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = "
                    "'events'), 0), coalesce((SELECT max(seq) FROM events), 0))")
_ACK: Final = "DELETE FROM queue WHERE mid = ?"
#: Where `ingest` keeps the last `seq` it gave in the transaction's cache.
_SEQ_KEY: Final = ("events", "seq")
#: The ingest's INSERTs (without their VALUES) and how many parameters a row takes.
_EVENT_INSERT: Final = ("INSERT INTO events (seq, id, source, type, body, accepted_at, origin)",
                        7)
_QUEUE_INSERT: Final = ("INSERT INTO queue (consumer, event_seq, body, visible_at, "
                        "enqueued_at)", 5)
#: Rows per multi-row INSERT at most: a request of 100 events is one statement of events
#: and one of queue rows. Fewer where SQLite binds fewer parameters per statement (999
#: in builds before 3.32).
_ROWS_PER_INSERT: Final = 250
#: What emitted events over this many bytes go by when the app has a claim-check bucket:
#: room is left for what ingest adds (a traceparent) to what the publisher measured.
CLAIM_CHECK_ABOVE: Final = MAX_EVENT_BYTES - 1024

#: An event as the log stores it: id, source, type, body (`jsonformat.dumps`), and the
#: `Event` when the caller has one.
Encoded = tuple[str, str, str, str, Event | None]

#: What one delivery does: run `event` through `consumer` (inside the broker's transaction);
#: the third argument is the delivery's attempt number (1 for the first).
Process = Callable[[str, Event, int], Outcome]
#: Puts a dead-lettered saga back to work, inside the redrive's transaction.
ResumeSaga = Callable[[sqlite3.Connection, str, float], None]


class Speculator(Protocol):
    """Runs deliveries ahead, elsewhere, on the committed state, and applies what they
    did (`adapters.local.offload.Offload`)."""

    def speculate(self, jobs: Sequence[tuple[str, str, int]], follows: bool
                  ) -> Callable[[], Results] | None:
        """Start on these (consumer, stored body, attempt); what it returns waits for
        what each delivery did, or None where it must run here (None instead of the
        function: all of them run here). `follows`: they come right after the jobs
        handed out last, which are not settled yet.

        What a delivery did is an object with `seconds` (the time it took),
        `one_statement` (settling it needs no savepoint), `event()` (the event, as far
        as the timeline and the log line show it), the engine's `status` and `detail`,
        and `events` (those it emits)."""
        ...

    def settle(self, speculation: Any) -> bool:
        """Apply one speculation inside the batch's transaction (in a savepoint of its
        own unless `one_statement`); False (and nothing written) when what it read has
        changed since."""
        ...


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
        #: Bodies `encoded_size` made, per thread, for the `ingest` that follows it.
        self._bodies = threading.local()
        #: A batch claimed and handed to a speculator before the one before it was
        #: settled (see `deliver_batch`).
        self._ahead = Ahead()

    def encoded_size(self, event: Event) -> int:
        """The event's size on the bus: the bytes of the body `ingest` writes (what
        `claim_check.event_bytes` measures). The body is kept for this thread's next
        `ingest` of this very event, so a measured event is encoded once."""
        body = jsonformat.dumps(event)
        kept: dict[int, tuple[Event, str]] | None = getattr(self._bodies, "kept", None)
        if kept is None:
            kept = self._bodies.kept = {}
        kept[id(event)] = (event, body)
        return len(body.encode())

    # ingress ----------------------------------------------------------------
    def ingest(self, events: Iterable[Event], origin: str = "http") -> list[str]:
        """Append events to the log and enqueue them for every consumer, durably, at once.

        Events from outside (`origin` other than "emit") commit with a full fsync, so an
        accepted event survives a power cut; emitted ones commit with their delivery."""
        rows: list[Encoded] = []
        kept: dict[int, tuple[Event, str]] = getattr(self._bodies, "kept", None) or {}
        self._bodies.kept = None
        for event in events:
            if origin != "emit":
                event = ensure_traceparent(event)
            measured = kept.get(id(event))
            body = measured[1] if measured is not None and measured[0] is event \
                else jsonformat.dumps(event)
            # A character is at most 4 bytes in UTF-8: most bodies need no encoding here.
            if len(body) * 4 > MAX_EVENT_BYTES and len(body.encode()) > MAX_EVENT_BYTES:
                raise PermanentError(f"event '{event.id}' is {len(body.encode())} bytes, over "
                                     f"the local bus limit of {MAX_EVENT_BYTES} bytes")
            rows.append((event.id, event.source, event.type, body, event))
        self._append(rows, origin)
        return [row[0] for row in rows]

    def append_emitted(self, rows: Sequence[Encoded]) -> None:
        """`ingest` of emitted events already encoded as the bus stores them, and held to
        `MAX_EVENT_BYTES`, by a worker process (`Event` None there: read back from its
        body if the timeline needs it)."""
        self._append(rows, "emit")

    def _append(self, rows: Sequence[Encoded], origin: str) -> None:
        # Every check is made before this, before the first write: inside a delivery's
        # transaction (emitted events) this needs no savepoint of its own.
        now = time.time()
        routes: dict[str, list[str]] = {}  # consumer names per type, for this call
        with self.db.write(durable=origin != "emit", savepoint=False) as conn:
            # The write lock is held from here to the commit, so the log's next numbers
            # are ours: each event row gets its `seq` given, and the queue rows that point
            # at it go in with it, a few multi-row statements for the whole call. The last
            # number given is kept in the transaction's cache for its next ingest (the
            # events a batch of deliveries emits); a savepoint rolled back drops it.
            cache = self.db.cache()
            seq = cache.get(_SEQ_KEY) if cache is not None else None
            if seq is None:
                seq = conn.execute(_LAST_SEQ).fetchone()[0]
            event_rows: list[Any] = []
            queue_rows: list[Any] = []
            for event_id, source, type_, body, event in rows:
                seq += 1
                event_rows += (seq, event_id, source, type_, body, now, origin)
                consumers = routes.get(type_)
                if consumers is None:
                    consumers = routes[type_] = [c.name for c in self._routes(type_)]
                for name in consumers:
                    queue_rows += (name, seq, body, now, now)
                if not consumers:
                    event = event or stored_event(body)
                    self._timeline.record(event, event.type, None, 0, "unrouted",
                                          "no consumer for this type", None,
                                          subject_of(event), conn=conn)
            _insert_rows(conn, _EVENT_INSERT, event_rows)
            _insert_rows(conn, _QUEUE_INSERT, queue_rows)
            if cache is not None:
                cache[_SEQ_KEY] = seq
        self._wake()

    def next_visible(self) -> float | None:
        """When the next queued message becomes visible (None: the queues are empty)."""
        due = self.db.read("SELECT MIN(visible_at) FROM queue")[0][0]
        return float(due) if due is not None else None

    # deliveries -------------------------------------------------------------
    def deliver_batch(self, process: Process, limit: int = CLAIM_BATCH,
                      speculator: Speculator | None = None) -> bool:
        """Claim up to `limit` visible messages and deliver them; False when none was
        visible (found by a read: an empty claim writes nothing).

        The claim commits first, on its own (each message's attempt counted and hidden for
        the visibility timeout), so a worker that dies mid-batch leaves the messages to
        reappear after it and to count that attempt, as on SQS. Then the batch runs in one
        transaction, a savepoint per delivery: a delivery that fails rolls back only its
        own writes and records its retry or dead letter in the same transaction; one
        commit for the batch, or one per `MAX_HOLD` of work (sooner when an ingest waits),
        so no one waits long for the write lock. The log lines follow each commit.

        With a `speculator` (worker processes), each batch is handed to it as soon as it
        is claimed, and the next one is claimed and handed out before this one is
        settled, so the workers run the next batch's handlers while this process commits
        this one's. Each delivery whose speculation still holds is settled from it; the
        others run through `process`, as without a speculator."""
        hand_out = None
        if speculator is not None:
            def hand_out(claimed: list[Any], follows: bool) -> Callable[[], Results] | None:
                return speculator.speculate(_jobs(claimed), follows=follows)
        return self._ahead.step(lambda: self._claim(limit),
                                lambda claimed, results: self._run(process, claimed, results,
                                                                   speculator),
                                hand_out)

    def deliver_ahead(self, process: Process) -> bool:
        """Deliver the batch claimed ahead for a speculator, if any, without it (when
        the workers stop); False when there was none."""
        return self._ahead.finish(lambda claimed, _: self._run(process, claimed, None, None),
                                  self._settings.visibility_timeout)

    def _claim(self, limit: int) -> list[Any]:
        """Up to `limit` visible messages, claimed and committed, in queue order."""
        now = time.time()
        if not self.db.read(_ANY_VISIBLE, (now,)):
            return []
        with self.db.write() as conn:
            claimed = conn.execute(
                _CLAIM, (now + self._settings.visibility_timeout, now, limit)).fetchall()
        claimed.sort()  # RETURNING has no order: deliver as they were queued
        return claimed

    def _run(self, process: Process, claimed: list[Any], guesses: Results | None,
             speculator: Speculator | None) -> None:
        """Deliver claimed messages (settled from `guesses` where they hold)."""
        max_deliveries = self._settings.max_deliveries
        # (message, its speculation, whether data not known yet may wait for the rest)
        pending = [(row, guess, True) for row, guess in
                   zip(claimed, guesses or [None] * len(claimed), strict=True)]
        pending.reverse()  # popped from the end
        while pending:
            lines: list[Callable[[], None]] = []
            until = time.perf_counter() + MAX_HOLD
            with self.db.write():
                while pending:
                    row, guess, may_wait = pending.pop()
                    mid, consumer, body, attempts, last_error = row
                    try:
                        if (guess is None or attempts > max_deliveries or
                                speculator is None or not self._settle(
                                    speculator, guess, mid, consumer, attempts, lines)) \
                                and not self._deliver(process, mid, consumer, body, attempts,
                                                      last_error, lines,
                                                      may_wait=may_wait and bool(pending)):
                            # Not known yet: once more, same attempt, after the rest of
                            # the batch (a trigger's order is often a few messages later).
                            pending.insert(0, (row, None, False))
                    except Exception:  # noqa: BLE001 - its bookkeeping failed (rolled
                        # back): it stays claimed and reappears after the visibility
                        # timeout; the rest of the batch goes on.
                        log.exception("delivery bookkeeping failed", extra={
                            "consumer": consumer, "attempt": attempts})
                    if self.db.ingest_waiting() or time.perf_counter() > until:
                        break  # commit now: a producer's 202 or another worker waits
            with held_lines():  # one write for the batch's lines
                for line in lines:
                    line()

    def deliver_one(self, process: Process) -> bool:
        """Claim the next visible message and deliver it; False when none was visible."""
        return self.deliver_batch(process, limit=1)

    def _deliver(self, process: Process, mid: int, consumer: str, body: str, attempts: int,
                 last_error: str | None, lines: list[Callable[[], None]], *,
                 may_wait: bool) -> bool:
        """One claimed message, inside the batch's transaction; `lines` gets its log line.
        False (nothing written) when its data is not known yet and `may_wait`: the
        caller tries it again later in the batch, as the same attempt."""
        settings = self._settings
        # The body was checked when it was enqueued (at ingest, or emitted by a handler
        # that checked it): read it back without checking it again.
        event = stored_event(body)
        if attempts > settings.max_deliveries:
            # Earlier receives never finished (the worker died): the platform's count wins.
            self._dead_letter(mid, consumer, event, body, attempts - 1,
                              f"exceeded maxDeliveries={settings.max_deliveries} "
                              f"(last error: {last_error or 'worker stopped mid-delivery'})",
                              lines=lines)
            return True
        started = time.perf_counter()
        try:
            # The handler's writes, its effects (emitted events, notifications, saga
            # starts: rows in this same database) and the ack commit as one unit: a
            # savepoint of the batch's transaction, rolled back alone if it fails.
            with self.db.write() as conn:
                outcome = process(consumer, event, attempts)
                self._ack(mid, consumer, event, attempts, outcome.status, outcome.detail,
                          len(outcome.emitted), started, conn)
        except PermanentError as error:
            self._dead_letter(mid, consumer, event, body, attempts,
                              f"permanent error: {error}", started, lines=lines)
            return True
        except Exception as error:  # noqa: BLE001 - transient or unexpected: retry
            if may_wait and isinstance(error, NotYetKnown):
                return False
            self._retry_or_dead_letter(mid, consumer, event, body, attempts, error, started,
                                       lines)
            return True
        lines.append(lambda: log_delivery(
            consumer, event, attempts, _LOGGED_OUTCOME.get(outcome.status, outcome.status),
            started, detail=outcome.detail))
        return True

    def _settle(self, speculator: Speculator, speculation: Any, mid: int, consumer: str,
                attempts: int, lines: list[Callable[[], None]]) -> bool:
        """One claimed message from its speculation, acked with it, in a savepoint of the
        batch's transaction (unless settling it is one statement); False (nothing
        written) when it must run again."""
        started = time.perf_counter() - speculation.seconds
        event = speculation.event()
        try:
            with self.db.write(savepoint=not speculation.one_statement) as conn:
                if not speculator.settle(speculation):
                    return False
                self._ack(mid, consumer, event, attempts, speculation.status,
                          speculation.detail, len(speculation.events), started, conn)
        except Exception:  # noqa: BLE001 - rolled back: the delivery runs again, here
            log.warning("speculated delivery could not be settled; running it again",
                        exc_info=True, extra={"consumer": consumer, "event_id": event.id})
            return False
        status, detail = speculation.status, speculation.detail
        lines.append(lambda: log_delivery(
            consumer, event, attempts, _LOGGED_OUTCOME.get(status, status), started,
            detail=detail))
        return True

    def _ack(self, mid: int, consumer: str, event: Event, attempts: int, status: str,
             detail: str, emitted: int, started: float, conn: sqlite3.Connection) -> None:
        """A delivery's ack and timeline row (`emitted`: how many events it emitted)."""
        detail = detail or (f"emitted {emitted}" if status == "processed" else "no effect")
        # Deleted at the commit with the batch's other acks (one statement); the
        # delivery's savepoint, rolled back, drops it with the rest of the delivery.
        self.db.defer(_ACK, (mid,))
        self._timeline.record(event, event.type, consumer, attempts, status, detail,
                              (time.perf_counter() - started) * 1000, subject_of(event),
                              conn=conn)

    def retry_delay(self, error: Exception, attempts: int) -> float:
        """Seconds before the next delivery after failed attempt number `attempts`.

        Backoff 1, 2, 4... s (capped at the visibility timeout). Data that has not arrived
        yet (`NotYetKnown`: a trigger that overtook its order) usually arrives within
        milliseconds, so its first retry comes after `NOT_YET_KNOWN_FIRST_RETRY`, and the
        usual backoff follows from its first step. (Before that, `_run` tries it once more
        at the end of its batch.) Scaled by `retry_scale`."""
        settings = self._settings
        if isinstance(error, NotYetKnown):
            if attempts == 1:
                return NOT_YET_KNOWN_FIRST_RETRY * settings.retry_scale
            attempts -= 1
        return min(2 ** (attempts - 1), settings.visibility_timeout) * settings.retry_scale

    def _retry_or_dead_letter(self, mid: int, consumer: str, event: Event, body: str,
                              attempts: int, error: Exception, started: float,
                              lines: list[Callable[[], None]]) -> None:
        settings = self._settings
        message = f"{type(error).__name__}: {error}"
        duration = (time.perf_counter() - started) * 1000
        if attempts >= settings.max_deliveries:
            self._dead_letter(mid, consumer, event, body, attempts,
                              f"failed {attempts} deliveries (maxDeliveries="
                              f"{settings.max_deliveries}); last error: {message}", started,
                              lines=lines)
            return
        delay = self.retry_delay(error, attempts)
        with self.db.write() as conn:
            conn.execute("UPDATE queue SET visible_at = ?, last_error = ? WHERE mid = ?",
                         (time.time() + delay, message, mid))
            self._timeline.record(event, event.type, consumer, attempts, "retry",
                                  f"{message} (next attempt in {delay * 1000:.0f} ms)",
                                  duration, subject_of(event), conn=conn)
        lines.append(lambda: log_delivery(consumer, event, attempts, "retry", started,
                                          reason=message))

    def _dead_letter(self, mid: int, consumer: str, event: Event, body: str, attempts: int,
                     reason: str, started: float | None = None,
                     lines: list[Callable[[], None]] | None = None) -> None:
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

        def line() -> None:
            log_delivery(consumer, event, attempts, outcome, started, reason=reason,
                         level=logging.ERROR if known is None else logging.WARNING)
        if lines is None:
            line()
        else:
            lines.append(line)

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


def _jobs(claimed: list[Any]) -> list[tuple[str, str, int]]:
    return [(consumer, body, attempts) for _, consumer, body, attempts, _ in claimed]


def _insert_rows(conn: sqlite3.Connection, insert: tuple[str, int], values: list[Any]
                 ) -> None:
    """`values` (the rows' parameters one after the other) in multi-row INSERTs of at
    most `_ROWS_PER_INSERT` rows, and of no more parameters than the connection binds:
    one statement (and one step of SQLite) per chunk rather than per row."""
    sql, width = insert
    step = min(_ROWS_PER_INSERT, _variable_limit(conn) // width) * width
    for start in range(0, len(values), step):
        chunk = values[start:start + step]
        conn.execute(_rows_sql(sql, width, len(chunk) // width), chunk)


def _variable_limit(conn: sqlite3.Connection) -> int:
    return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


@functools.lru_cache(maxsize=64)
def _rows_sql(sql: str, width: int, count: int) -> str:
    row = f"({', '.join('?' * width)})"
    return f"{sql} VALUES {', '.join([row] * count)}"


def stored_event(body: str) -> Event:
    """A queued event read back. `ingest` wrote it with `jsonformat.dumps` from an `Event`
    that was checked on the way in (or emitted by a handler, checked by the engine), so its
    attributes are not checked again here."""
    doc = fastjson.loads(body)
    data = doc.pop("data", None)
    if "data_base64" in doc:
        data = base64.b64decode(doc.pop("data_base64"))
    get = doc.get
    # Positional, and the extensions already frozen: `Event` copies a plain dict.
    return Event(doc["id"], doc["source"], doc["type"], data, doc["specversion"],
                 get("time"), get("subject"), get("datacontenttype"), get("dataschema"),
                 MappingProxyType({k: v for k, v in doc.items() if k not in CORE_ATTRIBUTES}))
