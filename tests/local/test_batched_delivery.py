"""The local broker delivers claimed messages in batches: one claim, one transaction.

A claim takes up to `CLAIM_BATCH` visible messages; the batch runs in one transaction with
a savepoint per message, so a failing handler rolls back only its own writes and records
its retry; a claim that finds nothing writes nothing; a worker that dies mid-batch loses
the batch's uncommitted work, and the claimed messages come back after their visibility
timeout and are applied once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import adapters.local.bootstrap as bootstrap_module
from adapters.local.broker import CLAIM_BATCH
from adapters.local.database import Database
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.core.errors import TransientError
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
    def write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        self.writes += 1
        with self._inner.write(durable) as conn:
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
