"""Handlers in worker processes: the second core for a one-writer runtime.

SQLite takes one writer at a time, and one Python process runs one thread at a time: a
runtime whose handlers run inside its write transaction uses one core, however many
worker threads it has. With `RuntimeSettings.processes` set (`switchyard serve
--processes N`), the broker hands each batch of deliveries it claims, and the saga
executor each batch of sagas it leases, to `Offload`, whose worker processes run the
engine and the handlers (a saga's run of due steps, `run_due_steps`) on the committed
state, outside the write lock, with ports that record instead of writing (`speculate`,
`speculate_sagas`):

- every item read, with the text it had (None: absent); idempotency and payment
  records are items too;
- the writes the engine would commit (the handlers', the records', the payments');
- the events it would publish (encoded as the bus stores them), the notifications and
  the saga starts.

The runtime then settles each result in its batch's transaction, in order
(`Offload.settle`, `Offload.settle_run`): only if every item it read still has the text
it read. The engine and the handlers are functions of the event (or the saga's state), of
what they read and of the clock, so the delivery or the run would then have done exactly
this had it run there, at that point; the writes and effects go through the real ports
and commit with the ack (or the saga's new state), as they do without workers. When
anything it read has changed (an earlier delivery or run wrote it), or the worker could
not finish it, the runtime runs it again itself, inside the lock, as it does without
workers. A worker cannot finish: a delivery whose handler raised; a saga run in which a
step raised (the runtime rolls such a step's writes back, which recording ports cannot
do); a scan; a blob write; an event the publisher would claim-check; and anything when
the worker process died. So outcomes, the exactly-once effects and every failure path
are those of the runtime without workers; what moves to the other cores is the handlers'
and the engine's work, plus decoding, reading and encoding.

Not with tracing on: a delivery's span, and the trace context its emitted events carry,
belong to the process that exports them, so everything then runs in the runtime's.
The workers are started with `start` (and stopped with `stop`) by the runtime's workers;
until they answer, and after they fail, everything simply runs in the runtime's process.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from adapters.local.broker import CLAIM_CHECK_ABOVE, Broker, Encoded, stored_event
from adapters.local.database import Database
from adapters.local.settings import RuntimeSettings
from adapters.local.sqlite_store import SELECT_ITEM, SQLiteStore, encode_doc
from adapters.local.timeline import subject_of
from handlers.core import fastjson, jsonformat, tracing
from handlers.core.app import App, load_app
from handlers.core.engine import handle
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


#: What a speculation recorded (see `Speculation`).
Reads = tuple[tuple[tuple[str, str], str | None], ...]
Writes = tuple[tuple[tuple[str, str], str], ...]
Notifications = tuple[tuple[str, Mapping[str, Any]], ...]
SagaStarts = tuple[tuple[str, Mapping[str, Any], str | None], ...]


class Speculation(NamedTuple):
    """What one delivery did on the state it read, for `Offload.settle` to apply (a
    tuple: it crosses the process boundary once per delivery)."""

    #: ((table, key), the item's text or None) for every item it read or writes.
    reads: Reads
    #: ((table, key), the item's new text) for every item it writes.
    writes: Writes
    #: The events it publishes, each as the bus stores it (`Broker.append_emitted`).
    events: tuple[Encoded, ...]
    notifications: Notifications
    saga_starts: SagaStarts
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


class SagaRun(NamedTuple):
    """What one leased saga's run of due steps did on the state it read, for
    `Offload.settle_run`; the saga executor saves its new state (`SagaExecutor`)."""

    reads: Reads
    writes: Writes
    events: tuple[Encoded, ...]
    notifications: Notifications
    saga_starts: SagaStarts
    #: The saga's state after the run (and as `fastjson.dumps` writes it); its history
    #: from `seen` on is the run's.
    state: dict[str, Any]
    state_text: str
    seen: int
    #: Each new history entry's milliseconds, and the delay before the next step.
    durations: tuple[float, ...]
    delay: float | None


#: One claimed delivery as the worker gets it: consumer, stored body, attempt number.
Job = tuple[str, str, int]
Results = list[Speculation | None]
#: One leased saga as the worker gets it: its id and its state's text.
SagaJob = tuple[str, str]
#: What the worker is asked to run: deliveries or sagas.
DELIVERIES: Final = "deliveries"
SAGAS: Final = "sagas"


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
        #: Requests are numbered; answers come back in order, each with its number, and
        #: one taken while waiting for another is kept here until asked for.
        self._sent = 0
        self._answers: dict[int, Any] = {}

    def request(self, message: tuple[Any, ...]) -> int:
        self._sent += 1
        self.conn.send((self._sent, *message))
        return self._sent

    def answer(self, number: int, timeout: float) -> Any:
        """The answer to request `number`; TimeoutError when none comes in `timeout`
        (EOFError or OSError when the process died)."""
        answers = self._answers
        while number not in answers:
            if not self.conn.poll(timeout):
                raise TimeoutError(f"no answer in {timeout:g}s")
            got, results = self.conn.recv()
            answers[got] = results
        return answers.pop(number)

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
                 store: SQLiteStore, ports: Ports, bus: Broker,
                 app_spec: str | None = None) -> None:
        self._db_path = db_path
        self._bus = bus
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
        #: Numbers the batches of each kind handed out, for the workers' overlays.
        self._batches = {DELIVERIES: 0, SAGAS: 0}
        #: Smaller batches run here (`MIN_BATCH`; the tests set 1 to send every one).
        self.min_batch = MIN_BATCH
        #: Deliveries settled from a speculation; speculated ones that ran again here
        #: because something they read had changed; and ones the workers handed back
        #: (a handler's error, or what the recording ports cannot do).
        self.settled = self.changed = self.handed_back = 0
        #: Saga runs settled from the workers, and ones that ran again here because
        #: something they read had changed (handed back ones count in `handed_back`).
        self.runs_settled = self.runs_changed = 0

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
        """Start speculating deliveries `jobs`; the function returned waits for the results
        (None for a job that must run in this process instead). None when the workers are
        not there, or for fewer than `min_batch` jobs: every job runs here. `follows`: the
        batch handed out last is not settled yet and these come after it, so the workers
        read what it writes as written."""
        return self._hand_out(DELIVERIES, jobs, follows)

    def speculate_sagas(self, runs: Sequence[SagaJob], follows: bool
                        ) -> Callable[[], list[SagaRun | None]] | None:
        """`speculate` for leased sagas: each one's run of due steps (`run_due_steps`)."""
        return self._hand_out(SAGAS, runs, follows)

    def _hand_out(self, kind: str, jobs: Sequence[Any], follows: bool
                  ) -> Callable[[], list[Any]] | None:
        """Worker i gets part i of every batch of a kind, so what it keeps of the batch
        before (its overlay for that kind) is what that part wrote."""
        if len(jobs) < self.min_batch or tracing.enabled() or not self.ready():
            return None
        with self._lock:
            helpers = self._helpers[:len(jobs)]
            if not helpers:
                return None
            self._batches[kind] += 1
            batch = self._batches[kind]
            previous = batch - 1 if follows else 0
            size = -(-len(jobs) // len(helpers))
            try:
                sent = [(helper, helper.request((kind, jobs[i * size:(i + 1) * size], batch,
                                                 previous)))
                        for i, helper in enumerate(helpers)]
            except OSError as error:  # a worker process died: run them here
                self._failed(error, helpers)
                return None
        timeout = self._settings.visibility_timeout

        def results() -> list[Any]:
            done: list[Any] = []
            try:
                for helper, number in sent:
                    done.extend(helper.answer(number, timeout))
                self._deaths = 0
                self.handed_back += done.count(None)
                return done
            except (EOFError, OSError, TimeoutError) as error:
                self._failed(error, helpers)  # a worker died or hung: run them here
                return [None] * len(jobs)
        return results

    def settle(self, speculation: Speculation) -> bool:
        """Apply `speculation` inside the caller's write transaction if every item it
        read still has the text it read; False when one has not (nothing written then)."""
        if not self._apply(speculation):
            self.changed += 1
            return False
        self.settled += 1
        return True

    def settle_run(self, run: SagaRun) -> bool:
        """`settle` for a saga's run: False when something it read has changed."""
        if not self._apply(run):
            self.runs_changed += 1
            return False
        self.runs_settled += 1
        return True

    def _apply(self, recorded: Speculation | SagaRun) -> bool:
        """The writes and effects recorded, through the real ports, if what was read
        still holds (False: nothing done). The events go onto the bus as the worker
        encoded them: the publisher would have sent each as it is (none is over
        `CLAIM_CHECK_ABOVE`, see `_Recording.publish`), and the bus would have written
        that very text."""
        store, ports = self._store, self._ports
        if not store.unchanged(recorded.reads):
            return False
        if recorded.writes:
            store.replace(recorded.writes)  # one statement
        if recorded.events:
            self._bus.append_emitted(recorded.events)
        for notification_id, message in recorded.notifications:
            ports.notifier.notify(notification_id, message)
        for saga_id, input, traceparent in recorded.saga_starts:
            ports.sagas.start(saga_id, input, traceparent)
        return True


# the worker process ---------------------------------------------------------------
class _NeedsWriter(Exception):
    """What the recording ports cannot do: the delivery runs in the broker's process."""


class _Overlay:
    """The texts the speculations of one kind wrote, for those after them (in the
    current batch, and in the one before while the broker has not settled it yet) to
    read as written."""

    def __init__(self) -> None:
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
        return self.previous.get(where) if text is None else text


class _RecordingStore:
    """Reads through the worker's overlay; `transact` works out the items' new texts,
    which later reads and transactions of the same run see."""

    def __init__(self, worker: _Worker, overlay: _Overlay) -> None:
        self._worker = worker
        self._overlay = overlay
        self.reads: dict[tuple[str, str], str | None] = {}
        self.writes: dict[tuple[str, str], str] = {}

    def _text(self, where: tuple[str, str]) -> str | None:
        if where in self.writes:
            return self.writes[where]
        reads = self.reads
        if where in reads:
            return reads[where]
        text = self._overlay.text(where)
        if text is None:
            text = self._worker.text(where)
        reads[where] = text
        return text

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        text = self._text((table, key))
        return fastjson.loads(text) if text is not None else None

    def transact(self, ops: Sequence[Op]) -> bool:
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
        for where, doc in staged.items():
            self.writes[where] = encode_doc(doc)
        return True

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return self.transact([Put(table, key, item)])

    def scan(self, table: str) -> list[dict[str, Any]]:
        raise _NeedsWriter(f"a scan of {table}")


class _Recording:
    """The ports of one speculated delivery or saga run."""

    def __init__(self, worker: _Worker, overlay: _Overlay) -> None:
        from adapters.local.bootstrap import payment_gateway

        self.store = _RecordingStore(worker, overlay)
        self.events: list[Encoded] = []
        self.notifications: list[tuple[str, Mapping[str, Any]]] = []
        self.saga_starts: list[tuple[str, Mapping[str, Any], str | None]] = []
        self._blobs = worker.blobs
        self.ports = Ports(store=self.store, publisher=self, notifier=self, sagas=self,
                           clock=worker.clock,
                           payments=payment_gateway(self.store, worker.clock, worker.settings),
                           blobs=self, atomic=nullcontext)

    def publish(self, events: Sequence[Event]) -> None:
        """Each event as the bus will store it; one that the publisher would claim-check
        (or the bus refuse) is for the broker's process."""
        for event in events:
            body = jsonformat.dumps(event)
            if len(body) * 4 > CLAIM_CHECK_ABOVE and len(body.encode()) > CLAIM_CHECK_ABOVE:
                raise _NeedsWriter("an event over the bus's claim-check size")
            self.events.append((event.id, event.source, event.type, body, None))

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

    def recorded(self) -> tuple[Reads, Writes, tuple[Encoded, ...], Notifications, SagaStarts]:
        """(reads, writes, events as the bus stores them, notifications, saga starts),
        the first five fields of a `Speculation` or a `SagaRun`."""
        store = self.store
        return (tuple(store.reads.items()), tuple(store.writes.items()), tuple(self.events),
                tuple(self.notifications), tuple(self.saga_starts))


class _Worker:
    """One worker process's database, app and overlays (one per kind of speculation)."""

    def __init__(self, db_path: str, settings: RuntimeSettings, app: App) -> None:
        from adapters.local.bootstrap import blob_store
        from adapters.local.effects import SystemClock

        self.db = Database(db_path, read_only=True)
        self.app = app
        self.settings = settings
        self.blobs = blob_store(app, db_path, settings)
        self.clock = SystemClock()
        self.overlays = {DELIVERIES: _Overlay(), SAGAS: _Overlay()}

    def text(self, where: tuple[str, str]) -> str | None:
        """An item's committed text (None: absent)."""
        rows = self.db.read(SELECT_ITEM, where)
        return rows[0][0] if rows else None


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
    try:
        _Requests(conn).serve()
    except (EOFError, OSError):  # the runtime is gone (or going): nothing to answer
        return


class _Requests:
    """The pipe's requests, answered in order, except that deliveries go first: a batch
    of sagas (each run up to 16 steps) takes far longer than a batch of deliveries, and
    the runtime's next deliveries should not wait behind it. Between two sagas, the
    deliveries that came meanwhile are answered (the runtime takes each answer by its
    number, in whatever order they come)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._waiting: collections.deque[Any] = collections.deque()

    def serve(self) -> None:
        """Until told to stop (None)."""
        while True:
            if not self._waiting:
                self._waiting.append(self._conn.recv())
            message = self._waiting.popleft()
            if message is None:
                return
            self._answer(message)

    def _answer(self, message: tuple[int, str, list[Any], int, int]) -> None:
        number, kind, jobs, batch, previous = message
        results: Sequence[Any] = _speculate(jobs, batch, previous) if kind == DELIVERIES \
            else _speculate_sagas(jobs, batch, previous, between=self._deliveries_first)
        self._conn.send((number, results))

    def _deliveries_first(self) -> None:
        while self._conn.poll(0):
            self._waiting.append(self._conn.recv())
        for message in [m for m in self._waiting if m is not None and m[1] == DELIVERIES]:
            self._waiting.remove(message)
            self._answer(message)


def _overlay(kind: str, batch: int, previous: int) -> tuple[_Worker, _Overlay]:
    worker = _worker
    assert worker is not None
    overlay = worker.overlays[kind]
    overlay.begin(batch, previous)
    return worker, overlay


def _speculate(jobs: list[Job], batch: int, previous: int) -> Results:
    worker, overlay = _overlay(DELIVERIES, batch, previous)
    results: Results = []
    for consumer, body, attempt in jobs:
        started = time.perf_counter()
        recording = _Recording(worker, overlay)
        event = stored_event(body)
        try:
            outcome = handle(worker.app, consumer, event, recording.ports,
                             attempt=attempt, max_attempts=worker.settings.max_deliveries)
        except Exception:  # noqa: BLE001 - whatever it was, the broker's run says it
            results.append(None)
            continue
        overlay.current.update(recording.store.writes)
        results.append(Speculation(
            *recording.recorded(), outcome.status, outcome.detail,
            time.perf_counter() - started,
            (event.id, event.source, event.type, subject_of(event), event.traceparent)))
    return results


def _speculate_sagas(jobs: list[SagaJob], batch: int, previous: int,
                     between: Callable[[], None] = lambda: None) -> list[SagaRun | None]:
    """Each saga's run of due steps (`between` is called before each). A run in which
    a step raised (the saga runner notes an `error` and retries or compensates) is
    handed back: the runtime's run rolls that step's writes back, which the recording
    ports cannot."""
    from adapters.local.sagas import run_due_steps

    worker, overlay = _overlay(SAGAS, batch, previous)
    results: list[SagaRun | None] = []
    for _, state_text in jobs:
        between()
        recording = _Recording(worker, overlay)
        state = fastjson.loads(state_text)
        seen = len(state["history"])
        try:
            state, delay, durations = run_due_steps(worker.app, recording.ports, state)
        except Exception:  # noqa: BLE001 - whatever it was, the broker's run says it
            results.append(None)
            continue
        if any(entry["outcome"] == "error" for entry in state["history"][seen:]):
            results.append(None)
            continue
        overlay.current.update(recording.store.writes)
        results.append(SagaRun(*recording.recorded(), state, fastjson.dumps(state), seen,
                               tuple(durations), delay))
    return results
