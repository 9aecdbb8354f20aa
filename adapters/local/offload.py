"""Deliveries' handlers in worker processes: the second core for a one-writer runtime.

SQLite takes one writer at a time, and one Python process runs one thread at a time: a
runtime whose handlers run inside its write transaction uses one core, however many
worker threads it has. With `RuntimeSettings.processes` set (`switchyard serve
--processes N`), the broker hands each batch it claims to `Offload`, whose worker
processes run the engine and the handlers on the committed state, outside the write lock,
with ports that record instead of writing (`speculate`):

- every item read, with the text it had (None: absent); the idempotency record is one;
- the writes the engine would commit (the handler's and the record's);
- the events it would publish, the notifications and the saga starts.

The broker then settles each result in its batch's transaction, in queue order
(`Offload.settle`): only if every item the delivery read still has the text it read. The
engine and the handlers are functions of the event, of what they read and of the clock,
so the delivery would then have done exactly this had it run there, at that point; the
writes and effects go through the real ports and commit with the ack, as they do without
workers. When anything it read has changed (an earlier delivery of the same batch wrote
it), or the worker could not finish it (any exception from a handler, a scan, a payment,
a blob write: whatever the recording ports cannot do, and the worker process dying), the
broker runs the delivery again itself, inside the lock, as the runtime does without
workers. So outcomes, the exactly-once effects and every failure path are those of the
runtime without workers; what moves to the other cores is the handlers' and the engine's
work, plus decoding and reading.

Not with tracing on: a delivery's span, and the trace context its emitted events carry,
belong to the process that exports them, so every delivery then runs in the broker's.
The workers are started with `start` (and stopped with `stop`) by the runtime's workers;
until they answer, and after they fail, deliveries simply run in the broker's process.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from adapters.local.broker import stored_event
from adapters.local.database import Database
from adapters.local.settings import RuntimeSettings
from adapters.local.sqlite_store import SELECT_ITEM, SQLiteStore, encode_doc
from adapters.local.timeline import subject_of
from handlers.core import fastjson, jsonformat, tracing
from handlers.core.app import App, load_app
from handlers.core.engine import Outcome, handle
from handlers.core.events import Event
from handlers.core.observability import JsonFormatter, configure_logging
from handlers.core.ports import Op, Ports, Put, apply_op

log = logging.getLogger("switchyard.local")

#: How long `stop` gives a worker process to end before it is killed.
STOP_TIMEOUT: Final = 10.0
#: Worker processes that failed in a row before `Offload` stops starting new ones.
MAX_RESTARTS: Final = 3
#: A claimed batch smaller than this runs in the server: under a light load the round
#: trip to a worker (about a millisecond) costs more latency than the second core saves.
MIN_BATCH: Final = 4
#: What a worker process sends once it has imported the app.
_READY: Final = "ready"


class Speculation(NamedTuple):
    """What one delivery did on the state it read, for `Offload.settle` to apply (a
    tuple: it crosses the process boundary once per delivery)."""

    #: ((table, key), the item's text or None) for every item it read or writes.
    reads: tuple[tuple[tuple[str, str], str | None], ...]
    #: ((table, key), the item's new text) for every item it writes.
    writes: tuple[tuple[tuple[str, str], str], ...]
    #: The events it publishes, each as the bus stores it (`jsonformat.dumps`).
    events: tuple[str, ...]
    notifications: tuple[tuple[str, Mapping[str, Any]], ...]
    saga_starts: tuple[tuple[str, Mapping[str, Any], str | None], ...]
    status: str
    detail: str
    seconds: float  # how long it took in the worker
    #: The delivered event's id, source, type, subject (as the timeline finds it) and
    #: traceparent: what the timeline row and the log line show of it.
    head: tuple[str, str, str, str | None, str | None]

    @property
    def one_statement(self) -> bool:
        """Settling it writes its items in one statement and nothing else: it needs no
        savepoint (a statement that fails leaves nothing behind)."""
        return not (self.events or self.notifications or self.saga_starts)

    def event(self) -> Event:
        """The delivered event without its data: as much of it as the timeline and the
        log line show."""
        event_id, source, type_, subject, traceparent = self.head
        return Event(event_id, source, type_, None, "1.0", None, subject, None, None,
                     MappingProxyType({"traceparent": traceparent} if traceparent else {}))


#: One claimed delivery as the worker gets it: consumer, stored body, attempt number.
Job = tuple[str, str, int]
Results = list[Speculation | None]


class _Helper:
    """One worker process and the pipe to it: a batch (or a part of one) goes down,
    its results come back, one message each way."""

    def __init__(self, args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked
        self.conn, theirs = context.Pipe()              # threads, no inherited locks
        self.process = context.Process(target=_serve, args=(theirs, *args),
                                       name="switchyard-speculator", daemon=True)
        self.process.start()
        theirs.close()
        self.ready = False

    def answered(self) -> bool:
        """Whether it has started (said so once its app is imported); raises if it died."""
        if not self.ready and self.conn.poll():
            self.ready = self.conn.recv() == _READY
        return self.ready

    def stop(self, timeout: float) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class Offload:
    """The broker's side: worker processes to speculate in, and the settling of results."""

    def __init__(self, db_path: str, settings: RuntimeSettings, processes: int,
                 store: SQLiteStore, ports: Ports, app_spec: str | None = None) -> None:
        self._db_path = db_path
        self._settings = settings
        self._processes = processes
        self._store = store
        self._ports = ports
        self._app_spec = app_spec
        self._helpers: list[_Helper] = []
        #: Guards the helpers: the deliveries' thread uses them, `ready` and `stop` may
        #: come from another (re-entrant: `ready` replaces a helper that died).
        self._lock = threading.RLock()
        self._stopped = False
        self._deaths = 0
        self._batch = 0  # numbers the batches handed out, for the workers' overlays
        #: Smaller batches run here (`MIN_BATCH`; the tests set 1 to send every one).
        self.min_batch = MIN_BATCH
        #: Deliveries settled from a speculation; speculated ones that ran again here
        #: because something they read had changed; and ones the workers handed back
        #: (a handler's error, or what the recording ports cannot do).
        self.settled = self.changed = self.handed_back = 0

    # the workers ------------------------------------------------------------
    def start(self) -> None:
        """Start the worker processes. Deliveries run in this process until they have
        imported the app and said so."""
        with self._lock:
            self._stopped = False
            self._start()

    def _start(self) -> None:
        if self._helpers or self._stopped or self._deaths >= MAX_RESTARTS:
            return
        logger = logging.getLogger("switchyard")
        formatter = logger.handlers[0].formatter if logger.handlers else None
        logs = (logger.getEffectiveLevel(), isinstance(formatter, JsonFormatter)) \
            if logger.handlers else None
        args = (self._db_path, self._settings, self._app_spec, logs)
        self._helpers = [_Helper(args) for _ in range(self._processes)]

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            helpers, self._helpers = self._helpers, []
        for helper in helpers:
            helper.stop(STOP_TIMEOUT)

    def ready(self) -> bool:
        """Whether every worker process has started (`Runtime.start_processes` waits
        for this from another thread than the deliveries')."""
        with self._lock:
            try:
                return bool(self._helpers) and all(h.answered() for h in self._helpers)
            except (EOFError, OSError) as error:
                self._failed(error)
                return False

    def _failed(self, error: BaseException, helpers: Sequence[_Helper] = ()) -> None:
        """A worker died, hung or never started: start new ones (not after `stop`), a
        few times in a row. `helpers`: the ones that failed (nothing to do when they
        were replaced meanwhile)."""
        with self._lock:
            if any(helper not in self._helpers for helper in helpers):
                return
            self._deaths += 1
            log.error("delivery worker process failed; deliveries run in the server "
                      "process until a new one answers",
                      extra={"error": repr(error),
                             "restarts_left": MAX_RESTARTS - self._deaths})
            failed, self._helpers = self._helpers, []
            for helper in failed:
                helper.stop(0)
            self._start()

    # speculation, on the broker's side --------------------------------------
    def speculate(self, jobs: Sequence[Job], follows: bool) -> Callable[[], Results] | None:
        """Start speculating `jobs`; the function returned waits for the results (None
        for a job that must run in this process instead). None when the workers are not
        there, or for fewer than `min_batch` jobs: every job runs here. `follows`: the
        batch handed out last is not settled yet and these come after it, so the
        workers read what it writes as written.

        Worker i gets part i of every batch, so what it keeps of the batch before (its
        overlay) is what that part wrote."""
        if len(jobs) < self.min_batch or tracing.enabled() or not self.ready():
            return None
        with self._lock:
            helpers = self._helpers[:len(jobs)]
        if not helpers:
            return None
        self._batch += 1
        batch, previous = self._batch, self._batch - 1 if follows else 0
        size = -(-len(jobs) // len(helpers))
        parts = [(helper, list(jobs[i * size:(i + 1) * size]))
                 for i, helper in enumerate(helpers)]
        try:
            for helper, part in parts:
                helper.conn.send((part, batch, previous))
        except OSError as error:  # a worker process died: run them here
            self._failed(error, helpers)
            return None
        timeout = self._settings.visibility_timeout

        def results() -> Results:
            done: Results = []
            try:
                for helper, _ in parts:
                    if not helper.conn.poll(timeout):
                        raise TimeoutError(f"no answer in {timeout:g}s")
                    done.extend(helper.conn.recv())
                self._deaths = 0
                self.handed_back += done.count(None)
                return done
            except (EOFError, OSError, TimeoutError) as error:
                self._failed(error, helpers)  # a worker died or hung: run them here
                return [None] * len(jobs)
        return results

    def settle(self, consumer: str, event: Event, speculation: Speculation) -> Outcome | None:
        """Apply `speculation` inside the caller's write transaction if every item it
        read still has the text it read; None when one has not (nothing written then)."""
        store, ports = self._store, self._ports
        if not store.unchanged(speculation.reads):
            self.changed += 1
            return None
        if speculation.writes:
            store.replace(speculation.writes)  # one statement
        emitted = tuple(stored_event(body) for body in speculation.events)
        if emitted:
            ports.publisher.publish(emitted)
        for notification_id, message in speculation.notifications:
            ports.notifier.notify(notification_id, message)
        for saga_id, input, traceparent in speculation.saga_starts:
            ports.sagas.start(saga_id, input, traceparent)
        self.settled += 1
        return Outcome(speculation.status, consumer, event.id, emitted,  # type: ignore[arg-type]
                       speculation.detail)


# the worker process ---------------------------------------------------------------
class _NeedsWriter(Exception):
    """What the recording ports cannot do: the delivery runs in the broker's process."""


class _RecordingStore:
    """Reads through the worker's overlay; `transact` works out the items' new texts."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self.reads: dict[tuple[str, str], str | None] = {}
        self.writes: dict[tuple[str, str], str] | None = None

    def _text(self, where: tuple[str, str]) -> str | None:
        reads = self.reads
        if where in reads:
            return reads[where]
        text = reads[where] = self._worker.text(where)
        return text

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        text = self._text((table, key))
        return fastjson.loads(text) if text is not None else None

    def transact(self, ops: Sequence[Op]) -> bool:
        if self.writes is not None:
            raise _NeedsWriter("a second transaction")
        staged: dict[tuple[str, str], dict[str, Any]] = {}
        for op in ops:
            where = (op.table, op.key)
            if where in staged:
                current: dict[str, Any] | None = staged[where]
            else:
                text = self._text(where)
                current = fastjson.loads(text) if text is not None else None
            new = apply_op(current, op)
            if new is None:
                raise _NeedsWriter("a condition that does not hold")
            staged[where] = new
        self.writes = {where: encode_doc(doc) for where, doc in staged.items()}
        return True

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return self.transact([Put(table, key, item)])

    def scan(self, table: str) -> list[dict[str, Any]]:
        raise _NeedsWriter(f"a scan of {table}")


class _Recording:
    """The ports of one speculated delivery."""

    def __init__(self, worker: _Worker) -> None:
        self.store = _RecordingStore(worker)
        self.events: list[Event] = []
        self.notifications: list[tuple[str, Mapping[str, Any]]] = []
        self.saga_starts: list[tuple[str, Mapping[str, Any], str | None]] = []
        self._blobs = worker.blobs
        self.ports = Ports(store=self.store, publisher=self, notifier=self, sagas=self,
                           clock=worker.clock, payments=self, blobs=self, atomic=nullcontext)

    def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        self.notifications.append((notification_id, message))

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        self.saga_starts.append((saga_id, input, traceparent))
        return True

    def read(self, bucket: str, key: str) -> bytes:
        data: bytes = self._blobs.read(bucket, key)
        return data

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        raise _NeedsWriter("a blob write")

    def __getattr__(self, name: str) -> Any:  # payments: saga steps, never a delivery's
        raise _NeedsWriter(f"port method {name}")


class _Worker:
    """One worker process's database, app and overlay: the texts the deliveries it
    speculated write, for the deliveries after them (in its current batch, and in the
    one before while the broker has not settled it yet) to read as written."""

    def __init__(self, db_path: str, settings: RuntimeSettings, app: App) -> None:
        from adapters.local.bootstrap import blob_store
        from adapters.local.effects import SystemClock

        self.db = Database(db_path, read_only=True)
        self.app = app
        self.settings = settings
        self.blobs = blob_store(app, db_path, settings)
        self.clock = SystemClock()
        self.batch = 0
        self.current: dict[tuple[str, str], str] = {}
        self.previous: dict[tuple[str, str], str] = {}

    def begin(self, batch: int, previous: int) -> None:
        if batch == self.batch:
            return  # another part of the same batch
        self.previous = self.current if previous and previous == self.batch else {}
        self.current = {}
        self.batch = batch

    def text(self, where: tuple[str, str]) -> str | None:
        text = self.current.get(where)
        if text is None:
            text = self.previous.get(where)
        if text is None:
            rows = self.db.read(SELECT_ITEM, where)
            text = rows[0][0] if rows else None
        return text


_worker: _Worker | None = None


def _start_worker(db_path: str, settings: RuntimeSettings, app_spec: str | None,
                  logs: tuple[int, bool] | None) -> None:
    global _worker
    if logs is not None:
        configure_logging(logs[0], json_lines=logs[1])
    _worker = _Worker(db_path, settings, load_app(app_spec))


def _serve(conn: Any, db_path: str, settings: RuntimeSettings, app_spec: str | None,
           logs: tuple[int, bool] | None) -> None:
    """A worker process: speculate each batch that comes down the pipe until it is
    told to stop, or the runtime's end of the pipe closes (the runtime ended, even by
    SIGKILL). Ctrl-C is for the runtime: it stops this process through the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _start_worker(db_path, settings, app_spec, logs)
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
            if message is None:
                return
            conn.send(_speculate(*message))
        except (EOFError, OSError):  # the runtime is gone (or going): nothing to answer
            return


def _speculate(jobs: list[Job], batch: int, previous: int) -> Results:
    worker = _worker
    assert worker is not None
    worker.begin(batch, previous)
    results: Results = []
    for consumer, body, attempt in jobs:
        started = time.perf_counter()
        recording = _Recording(worker)
        event = stored_event(body)
        try:
            outcome = handle(worker.app, consumer, event, recording.ports,
                             attempt=attempt, max_attempts=worker.settings.max_deliveries)
        except Exception:  # noqa: BLE001 - whatever it was, the broker's run says it
            results.append(None)
            continue
        store = recording.store
        writes = store.writes or {}
        worker.current.update(writes)
        results.append(Speculation(
            tuple(store.reads.items()), tuple(writes.items()),
            tuple(jsonformat.dumps(e) for e in recording.events),
            tuple(recording.notifications), tuple(recording.saga_starts),
            outcome.status, outcome.detail, time.perf_counter() - started,
            (event.id, event.source, event.type, subject_of(event), event.traceparent)))
    return results
