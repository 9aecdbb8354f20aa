"""The local broker delivers claimed messages in batches: one claim, one transaction.

A claim takes up to `CLAIM_BATCH` visible messages; the batch runs in one transaction with
a savepoint per message, so a failing handler rolls back only its own writes and records
its retry; a claim that finds nothing writes nothing; a worker that dies mid-batch loses
the batch's uncommitted work, and the claimed messages come back after their visibility
timeout and are applied once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

import adapters.local.bootstrap as bootstrap_module
import adapters.local.sagas as sagas_module
from adapters.local.broker import CLAIM_BATCH
from adapters.local.database import Database
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.core import saga_runner
from handlers.core.engine import Outcome
from handlers.core.errors import PermanentError, TransientError
from handlers.core.events import Event
from tests.factories import order_created, restock


class WorkerDied(BaseException):  # noqa: N818 - an event, as a SIGKILL is
    """Unwinds through every `except Exception`, as a dead process would stop."""


@pytest.fixture
def runtime(tmp_path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path / "batch.db", settings=RuntimeSettings(
        max_deliveries=5, visibility_timeout=30.0, retry_scale=0.001))
    yield rt
    rt.close()


def _outcomes(rt: Runtime, event_id: str) -> list[tuple[int, str]]:
    return [(r["attempt"], r["outcome"]) for r in rt.timeline() if r["event_id"] == event_id]


def _make_due(rt: Runtime) -> None:
    with rt.db.write() as conn:
        conn.execute("UPDATE queue SET visible_at = 0")


def test_one_failing_handler_in_a_batch_leaves_the_others_committed_and_is_retried(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [restock("A", 1), restock("B", 2), restock("C", 4)]
    real_handle = bootstrap_module.handle

    def fail_on_b(app, consumer, event, ports, **labels):  # type: ignore[no-untyped-def]
        result = real_handle(app, consumer, event, ports, **labels)  # its writes happen, then:
        if event.id == events[1].id:
            raise TransientError("downstream unavailable")
        return result

    monkeypatch.setattr(bootstrap_module, "handle", fail_on_b)
    runtime.ingest(events)
    assert runtime._parts.workers._deliver()  # one claim takes all three
    assert runtime.db.read("SELECT COUNT(*) FROM queue WHERE attempts = 0")[0][0] == 0
    assert (runtime.available("A"), runtime.available("B"), runtime.available("C")) == (
        1, 0, 4)  # B's writes rolled back with its savepoint, A's and C's committed
    assert _outcomes(runtime, events[0].id) == [(1, "processed")]
    assert _outcomes(runtime, events[2].id) == [(1, "processed")]
    assert _outcomes(runtime, events[1].id) == [(1, "retry")]
    ((attempts, error),) = runtime.db.read("SELECT attempts, last_error FROM queue")
    assert (attempts, error) == (1, "TransientError: downstream unavailable")

    monkeypatch.setattr(bootstrap_module, "handle", real_handle)
    _make_due(runtime)
    runtime.run_until_idle()
    assert runtime.available("B") == 2
    assert _outcomes(runtime, events[1].id) == [(1, "retry"), (2, "processed")]


def test_a_permanent_failure_in_a_batch_is_dead_lettered_and_the_rest_commit(
        runtime: Runtime) -> None:
    good = restock("A", 3)
    bad = order_created("o1", [("A", 1, 1.0)])
    bad = type(bad)(id=bad.id, source=bad.source, type=bad.type, data={"order_id": "o1"})
    runtime.ingest([bad, good])
    runtime.run_until_idle()
    assert runtime.available("A") == 3
    assert sorted(d["consumer"] for d in runtime.dlq()) == ["order-analytics", "orders"]
    assert _outcomes(runtime, good.id) == [(1, "processed")]


def test_a_claim_takes_at_most_a_batch_and_the_rest_stay_queued(runtime: Runtime) -> None:
    runtime.ingest([restock("A", 1) for _ in range(CLAIM_BATCH + 5)])
    assert runtime._parts.workers._deliver()
    assert runtime.db.read("SELECT COUNT(*) FROM queue")[0][0] == 5
    assert runtime.available("A") == CLAIM_BATCH


class CountingDatabase:
    """The runtime's database, counting the write transactions its parts open."""

    def __init__(self, inner: Database) -> None:
        self._inner, self.writes = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextmanager
    def write(self, durable: bool = False, *,
              savepoint: bool = True) -> Iterator[sqlite3.Connection]:
        self.writes += 1
        with self._inner.write(durable, savepoint=savepoint) as conn:
            yield conn


def test_an_empty_claim_opens_no_write_transaction(runtime: Runtime) -> None:
    runtime.ingest([restock("A", 1), order_created("o1", [("A", 1, 1.0)])])
    runtime.run_until_idle()
    counting = CountingDatabase(runtime.db)
    runtime.db = counting  # type: ignore[assignment]
    for _ in range(5):
        assert runtime.work_once() is False  # no delivery and no saga is due
    assert counting.writes == 0
    runtime.ingest([restock("B", 1)])
    assert runtime.work_once() and counting.writes > 0  # the count does count


def test_an_empty_claim_changes_nothing_in_the_file(runtime: Runtime) -> None:
    runtime.ingest([restock("A", 1), order_created("o1", [("A", 1, 1.0)])])
    runtime.run_until_idle()
    # Another connection sees `data_version` change on every commit anyone else makes.
    watcher = sqlite3.connect(runtime.db.path)
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        for _ in range(5):
            assert runtime.work_once() is False  # no delivery and no saga is due
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
        runtime.ingest([restock("A", 1)])  # the check itself: a commit is seen
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    finally:
        watcher.close()


def test_a_worker_dying_between_claim_and_commit_loses_nothing_and_applies_each_once(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [restock("A", 1), restock("A", 2), restock("A", 4)]
    real_handle = bootstrap_module.handle

    def die_on_the_second(app, consumer, event, ports, **labels):  # type: ignore[no-untyped-def]
        result = real_handle(app, consumer, event, ports, **labels)
        if event.id == events[1].id:
            raise WorkerDied("SIGKILL mid-batch")
        return result

    monkeypatch.setattr(bootstrap_module, "handle", die_on_the_second)
    runtime.ingest(events)
    with pytest.raises(WorkerDied):
        runtime._parts.workers._deliver()
    # The claim had committed (each message hidden, its attempt counted); the batch had
    # not: nothing of it happened, the first restock included.
    assert runtime.available("A") == 0
    assert runtime.db.read("SELECT COUNT(*), MIN(attempts), MAX(attempts) FROM queue") == [
        (3, 1, 1)]
    assert runtime.work_once() is False  # hidden for the visibility timeout

    monkeypatch.setattr(bootstrap_module, "handle", real_handle)
    _make_due(runtime)  # the visibility timeout has passed
    runtime.run_until_idle()
    assert runtime.available("A") == 7  # each restock applied once
    for event in events:
        assert _outcomes(runtime, event.id) == [(2, "processed")]
    assert runtime.db.read("SELECT COUNT(*) FROM queue") == [(0,)]


def test_a_saga_runs_its_steps_in_one_transaction_and_writes_its_state_once(
        runtime: Runtime) -> None:
    runtime.ingest([restock("A", 5), order_created("o1", [("A", 1, 1.0)])])
    while runtime._parts.workers._deliver():
        pass  # the order is taken and its saga started; the saga has not run
    statements: list[str] = []
    conn = runtime.db.connection()  # this thread's: the one the executor writes on
    conn.set_trace_callback(statements.append)
    try:
        assert runtime._parts.sagas.advance_batch()
    finally:
        conn.set_trace_callback(None)
    assert runtime.order("o1")["status"] == "completed"  # every step ran in that call
    assert [s for s in statements if s == "COMMIT"] == ["COMMIT", "COMMIT"]  # lease, run
    assert len([s for s in statements if s.startswith("UPDATE sagas SET status")]) == 1


# --- what a batch tells the handler, the log and the worker loop --------------------------

def _ok(consumer: str, event: Event, attempt: int) -> Outcome:
    return Outcome("processed", consumer, event.id)


def _queued(rt: Runtime) -> list[tuple[str, str]]:
    """(consumer, event id) of every queued message, in the order they were queued."""
    return [(c, e) for c, e in rt.db.read(
        "SELECT q.consumer, e.id FROM queue q JOIN events e ON e.seq = q.event_seq "
        "ORDER BY q.mid")]


def _set_attempts(rt: Runtime, event: Event, attempts: int) -> None:
    with rt.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = ? WHERE event_seq = "
                      "(SELECT seq FROM events WHERE id = ?)", (attempts, event.id))


def test_each_delivery_is_told_its_attempt_number(runtime: Runtime) -> None:
    event = restock("A", 1)
    runtime.ingest([event])
    told: list[tuple[str, int]] = []

    def fail_first(consumer: str, ev: Event, attempt: int) -> Outcome:
        told.append((consumer, attempt))
        if attempt == 1:
            raise TransientError("not yet")
        return _ok(consumer, ev, attempt)

    broker = runtime._parts.broker
    assert broker.deliver_batch(fail_first)
    _make_due(runtime)
    assert broker.deliver_batch(fail_first)
    consumers = [c for c, _ in told[:len(told) // 2]]
    assert told == [(c, 1) for c in consumers] + [(c, 2) for c in consumers]
    assert runtime.db.read("SELECT COUNT(*) FROM queue") == [(0,)]


def test_the_delivery_log_follows_the_commit_in_delivery_order_dead_letters_included(
        runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    ok1, exceeded, permanent, last, ok2 = (restock(item, 1) for item in "ABCDE")
    runtime.ingest([ok1, exceeded, permanent, last, ok2])
    _set_attempts(runtime, exceeded, 5)  # its earlier receives never finished: over the max
    _set_attempts(runtime, last, 4)  # the next failure is its fifth, the last allowed
    queued = _queued(runtime)

    def process(consumer: str, event: Event, attempt: int) -> Outcome:
        if event.id == permanent.id:
            raise PermanentError("malformed")
        if event.id == last.id:
            raise TransientError("still down")
        return _ok(consumer, event, attempt)

    with caplog.at_level(logging.INFO, logger="switchyard.local"):
        assert runtime._parts.broker.deliver_batch(process)
    logged = [(r.consumer, r.event_id, r.outcome) for r in caplog.records  # type: ignore[attr-defined]
              if r.msg == "delivery %s"]
    outcome_of = {ok1.id: "ok", ok2.id: "ok", exceeded.id: "dead-lettered",
                  permanent.id: "dead-lettered", last.id: "dead-lettered"}
    # Each line is written once its delivery has committed, all in the order delivered: a
    # dead letter's line is not written ahead of the lines of the deliveries before it.
    assert logged == [(c, e, outcome_of[e]) for c, e in queued]
    assert len(runtime.dlq()) == 3 * len(queued) // 5


def test_a_delivery_whose_bookkeeping_fails_is_logged_and_the_batch_goes_on(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    good, bad = restock("A", 1), restock("B", 2)
    runtime.ingest([bad, good])
    bad_consumers = {c for c, e in _queued(runtime) if e == bad.id}
    timeline = runtime._parts.broker._timeline
    real_record = timeline.record

    def record(event: Event | None, *args: Any, **kwargs: Any) -> None:
        if event is not None and event.id == bad.id:
            raise sqlite3.OperationalError("disk I/O error")
        real_record(event, *args, **kwargs)

    monkeypatch.setattr(timeline, "record", record)
    with caplog.at_level(logging.INFO, logger="switchyard.local"):
        assert runtime._parts.workers._deliver()
    failed = [r for r in caplog.records if r.getMessage() == "delivery bookkeeping failed"]
    assert {(r.consumer, r.attempt) for r in failed} == {  # type: ignore[attr-defined]
        (c, 1) for c in bad_consumers}
    assert all(r.levelno == logging.ERROR and r.exc_info for r in failed)
    assert runtime.available("A") == 1  # the rest of the batch went on
    assert runtime.available("B") == 0  # rolled back: it stays claimed, to come back
    assert {e for _, e in _queued(runtime)} == {bad.id}


class RacingDatabase:
    """The runtime's database, where another worker takes everything due right after this
    worker has looked (between its read and its claim)."""

    def __init__(self, inner: Database, steal: str) -> None:
        self._inner, self._steal, self.raced = inner, steal, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows = self._inner.read(sql, params)
        if not self.raced:
            self.raced = True
            with self._inner.write() as conn:
                conn.execute(self._steal, (time.time() + 3600,))
        return rows


def test_a_worker_that_loses_the_race_for_every_message_reports_no_work(
        runtime: Runtime) -> None:
    runtime.ingest([restock("A", 1)])
    racing = RacingDatabase(runtime.db, "UPDATE queue SET visible_at = ?")
    runtime.db = racing  # type: ignore[assignment]
    called: list[str] = []

    def process(consumer: str, event: Event, attempt: int) -> Outcome:
        called.append(consumer)
        return _ok(consumer, event, attempt)

    assert runtime._parts.broker.deliver_batch(process) is False
    assert racing.raced and called == []


def test_a_worker_that_loses_the_race_for_every_saga_reports_no_work(runtime: Runtime) -> None:
    runtime.ingest([restock("A", 5), order_created("o1", [("A", 1, 1.0)])])
    while runtime._parts.workers._deliver():
        pass  # the saga is started, due, not run
    racing = RacingDatabase(runtime.db, "UPDATE sagas SET lease_until = ?")
    runtime.db = racing  # type: ignore[assignment]
    assert runtime._parts.sagas.advance_batch() is False
    assert racing.raced and runtime.order("o1")["status"] != "completed"


def _commits(rt: Runtime, work: Callable[[], bool]) -> int:
    statements: list[str] = []
    conn = rt.db.connection()
    conn.set_trace_callback(statements.append)
    try:
        assert work()
    finally:
        conn.set_trace_callback(None)
    return len([s for s in statements if s == "COMMIT"])


def test_a_batch_commits_after_each_delivery_while_a_producer_waits(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.ingest([restock("A", 1), restock("A", 2), restock("A", 4)])
    messages = len(_queued(runtime))
    monkeypatch.setattr(runtime.db, "ingest_waiting", lambda: True)
    assert _commits(runtime, runtime._parts.workers._deliver) == 1 + messages  # claim, each
    assert runtime.available("A") == 7


def _started_sagas(rt: Runtime, orders: list[str]) -> None:
    rt.ingest([restock("A", 10)] + [order_created(o, [("A", 1, 1.0)]) for o in orders])
    while rt._parts.workers._deliver():
        pass  # the orders are taken and their sagas started; none has run


def test_a_saga_batch_commits_after_each_saga_while_a_producer_waits(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    _started_sagas(runtime, ["o1", "o2"])
    monkeypatch.setattr(runtime.db, "ingest_waiting", lambda: True)
    assert _commits(runtime, runtime._parts.sagas.advance_batch) == 3  # lease, each saga
    assert [runtime.order(o)["status"] for o in ("o1", "o2")] == ["completed"] * 2


def test_a_saga_batch_within_its_hold_commits_once(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    _started_sagas(runtime, ["o1", "o2"])
    # The executor's clock stands still: the batch is always within its hold time.
    monkeypatch.setattr(sagas_module, "time", SimpleNamespace(
        time=time.time, perf_counter=lambda: 100.0))
    assert _commits(runtime, runtime._parts.sagas.advance_batch) == 2  # lease, both sagas
    assert [runtime.order(o)["status"] for o in ("o1", "o2")] == ["completed"] * 2


#: Timeline rows of a saga that are not steps.
_SAGA_MARKS = ("saga.start", "saga.finished")


def _saga_id(rt: Runtime, order_id: str) -> str:
    for saga_id, state in rt.db.read("SELECT saga_id, state FROM sagas"):
        if json.loads(state)["input"].get("order_id") == order_id:
            return str(saga_id)
    raise AssertionError(f"no saga for {order_id}")


def test_a_saga_run_that_fails_is_logged_and_the_other_sagas_go_on(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _started_sagas(runtime, ["o1", "o2"])
    broken = _saga_id(runtime, "o1")
    executor = runtime._parts.sagas
    real_save = executor._save

    def save(saga_id: str, *args: Any) -> None:
        if saga_id == broken:
            raise sqlite3.OperationalError("disk I/O error")
        real_save(saga_id, *args)

    monkeypatch.setattr(executor, "_save", save)
    with caplog.at_level(logging.INFO, logger="switchyard.local"):
        assert executor.advance_batch()
    failed = [r for r in caplog.records if r.getMessage() == "saga run failed"]
    assert [(r.saga_id, r.levelno) for r in failed] == [  # type: ignore[attr-defined]
        (broken, logging.ERROR)]
    assert failed[0].exc_info
    assert runtime.order("o2")["status"] == "completed"
    assert runtime.order("o1")["status"] != "completed"  # rolled back: runs after its lease


def test_a_saga_cut_short_by_its_step_budget_is_due_again_at_once_and_logged_once(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Backoff a minute long: a saga put off by any retry delay would not be due again.
    rt = Runtime(tmp_path / "steps.db", settings=RuntimeSettings(retry_scale=60.0))
    try:
        _started_sagas(rt, ["o1"])
        monkeypatch.setattr(sagas_module, "_STEPS_PER_CLAIM", 1)
        runs = 0
        while rt._parts.sagas.advance_batch():
            runs += 1
            assert runs < 50
        assert rt.order("o1")["status"] == "completed"
        (state,) = [json.loads(s) for (s,) in rt.db.read("SELECT state FROM sagas")]
        assert runs == len(state["history"]) > 1  # one step a run, each due at once
        steps = [(r["type"], r["attempt"], r["outcome"]) for r in rt.timeline()
                 if r["event_id"] == state["saga_id"] and r["type"] not in _SAGA_MARKS]
        assert steps == [(f"saga.{e['step']}.{e['phase']}", e["attempt"], e["outcome"])
                         for e in state["history"]]  # each step on the timeline once
    finally:
        rt.close()


def test_each_saga_step_is_timed_by_itself(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    _started_sagas(runtime, ["o1"])
    # A clock that only the steps move: step n takes n ms.
    clock = [100.0]
    monkeypatch.setattr(sagas_module, "time", SimpleNamespace(
        time=time.time, perf_counter=lambda: clock[0]))
    real_tick = saga_runner.tick
    took: list[float] = []

    def tick(app: Any, ports: Any, state: dict[str, Any]) -> Any:
        took.append(len(took) + 1.0)
        clock[0] += took[-1] / 1000
        return real_tick(app, ports, state)

    monkeypatch.setattr(saga_runner, "tick", tick)
    monkeypatch.setattr(sagas_module, "_STEPS_PER_CLAIM", 2)  # a run resumes mid-saga
    while runtime._parts.sagas.advance_batch():
        pass
    assert runtime.order("o1")["status"] == "completed"
    saga_id = _saga_id(runtime, "o1")
    timed = [r["duration_ms"] for r in runtime.timeline()
             if r["event_id"] == saga_id and r["type"] not in _SAGA_MARKS]
    assert len(timed) == len(took) > 2  # one history entry per step here
    assert timed == pytest.approx(took)
