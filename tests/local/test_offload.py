"""Worker processes running deliveries' handlers ahead of the write lock (`serve
--processes`): the same outcomes as without them, whatever changes under a speculation,
and whatever happens to the worker process."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.local.offload import MIN_BATCH
from adapters.local.runtime import Runtime, RuntimeSettings
from bench.soak import build_workload
from handlers.catalog import INVENTORY_UPDATED
from handlers.core import tracing
from handlers.core.events import Event
from handlers.core.ports import Update
from handlers.inventory import INVENTORY
from tests.factories import order_created, restock
from tests.invariants import check, snapshot_sqlite, watch_stock
from tests.spans import recording


def _runtime(path: Path, processes: int, **settings: object) -> Runtime:
    runtime = Runtime(path, settings=RuntimeSettings(retry_scale=0.001, processes=processes,
                                                     **settings))  # type: ignore[arg-type]
    if processes:
        assert runtime.start_processes()
        assert runtime.offload is not None
        runtime.offload.min_batch = 1  # every batch through the worker, however small
    return runtime


@pytest.fixture()
def offloaded(tmp_path: Path) -> Iterator[Runtime]:
    runtime = _runtime(tmp_path / "offloaded.db", 1)
    yield runtime
    runtime.close()


def _run_workload(path: Path, processes: int, batches: list[list[Event]]) -> Runtime:
    watch_stock(path)
    runtime = _runtime(path, processes)
    for events in batches:
        runtime.ingest(events)
        runtime.work_once()  # interleave ingest and deliveries, as a server does
    runtime.run_until_idle(timeout=120)
    return runtime


def test_the_soak_mix_ends_as_it_does_without_processes(tmp_path: Path) -> None:
    """Orders, sagas, restocks, triggers that overtake their order, duplicates and poison:
    every invariant holds, and the end state is the one the runtime reaches alone."""
    workload = build_workload(400, 40, random.Random(7))
    refused = {e.id for e in workload.refused}
    batches = [[e for e in batch if e.id not in refused] for batch in workload.batches]
    accepted = [e for batch in batches for e in batch]
    alone = _run_workload(tmp_path / "alone.db", 0, batches)
    ahead = _run_workload(tmp_path / "ahead.db", 1, batches)
    try:
        for runtime in (alone, ahead):
            check(snapshot_sqlite(runtime.db.read), accepted).raise_if_violated()
        def outcomes(runtime: Runtime) -> dict[str, tuple[str, str | None]]:
            return {o["order_id"]: (o["status"], o["reason"]) for o in runtime.orders()}

        assert outcomes(ahead) == outcomes(alone)
        items = {row[0] for row in alone.db.read(
            "SELECT key FROM items WHERE tbl = 'inventory'")}
        assert {i: ahead.available(i) for i in items} == {i: alone.available(i) for i in items}
        assert sorted((d["consumer"], d["event_id"], d["reason"]) for d in ahead.dlq()) == \
            sorted((d["consumer"], d["event_id"], d["reason"]) for d in alone.dlq())
        assert ahead.counts() == alone.counts()
        offload = ahead.offload
        assert offload is not None
        # Most deliveries were settled from the worker's run; the rest ran again here.
        deliveries = ahead.db.read("SELECT count(*) FROM timeline WHERE consumer NOT LIKE "
                                   "'saga:%' AND attempt > 0")[0][0]
        assert offload.settled > deliveries // 2
        # And most sagas' runs (one per saga claimed, at least one per order).
        runs = offload.runs_settled + offload.runs_changed
        assert offload.runs_settled > runs // 2 > 0
        # A settled delivery's duration counts the worker's run and the settling.
        assert ahead.db.read("SELECT min(duration_ms) FROM timeline")[0][0] >= 0
    finally:
        alone.close()
        ahead.close()


def test_a_speculation_whose_reads_changed_runs_again_here(offloaded: Runtime) -> None:
    """The worker read 10 in stock and would remove 5; by the time it is settled only 2
    are left: the delivery runs again in the runtime, sees 2, and is dead-lettered."""
    runtime = offloaded
    runtime.ingest([restock("item-a", 10)])
    runtime.run_until_idle()
    runtime.ingest([Event.new("inventory", INVENTORY_UPDATED,
                              {"item_id": "item-a", "quantity": 5, "action": "remove"})])
    broker, offload = runtime._parts.broker, runtime.offload
    assert offload is not None
    settled = offload.settled
    claimed = broker._claim(32)  # the two steps `deliver_batch` takes, apart
    results = offload.speculate([(c, b, a) for _, c, b, a, _ in claimed], follows=False)
    assert results is not None
    speculations = results()
    assert speculations[0] is not None and speculations[0].writes  # it did remove 5
    runtime.store.transact([Update(INVENTORY, "item-a", add={"available": -8})])
    broker._run(runtime._parts.process, claimed, speculations, offload)
    assert runtime.available("item-a") == 2
    assert [d["reason"] for d in runtime.dlq()] == [
        "permanent error: cannot remove 5 of item 'item-a': only 2 available"]
    assert (offload.settled - settled, offload.changed) == (0, 1)


def test_a_message_past_its_deliveries_is_dead_lettered_though_the_worker_ran_it(
        offloaded: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    """Receives that never finished (a server that died mid-batch) count: a message
    claimed past maxDeliveries is dead-lettered, not settled from what the worker made
    of it. The one settled beside it keeps its attempt in its timeline row and logs its
    delivery line."""
    runtime = offloaded
    late, fine = restock("item-a", 1), restock("item-b", 2)
    runtime.ingest([late, fine])
    limit = runtime.settings.max_deliveries
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = ? WHERE body LIKE '%item-a%'", (limit,))
    broker, offload = runtime._parts.broker, runtime.offload
    assert offload is not None
    settled = offload.settled
    claimed = broker._claim(32)
    results = offload.speculate([(c, b, a) for _, c, b, a, _ in claimed], follows=False)
    assert results is not None
    speculations = results()
    assert all(s is not None for s in speculations)  # the worker ran both
    with caplog.at_level(logging.INFO, logger="switchyard.local"):
        broker._run(runtime._parts.process, claimed, speculations, offload)
    assert [(getattr(r, "event_id", None), getattr(r, "attempt", None)) for r in caplog.records
            if getattr(r, "outcome", None) == "ok"] == [(fine.id, 1)]
    assert [(d["event_id"], d["attempts"]) for d in runtime.dlq()] == [(late.id, limit)]
    assert runtime.available("item-a") == 0 and runtime.available("item-b") == 2
    assert offload.settled - settled == 1
    assert [(r["attempt"], r["outcome"]) for r in runtime.timeline()
            if r["event_id"] == fine.id] == [(1, "processed")]


def test_a_killed_worker_process_is_replaced_and_nothing_is_lost(
        offloaded: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    runtime = offloaded
    offload = runtime.offload
    assert offload is not None
    (helper,) = offload._helpers
    os.kill(helper.process.pid, signal.SIGKILL)
    helper.process.join(10)
    with caplog.at_level(logging.ERROR, logger="switchyard.local"):
        runtime.ingest([restock(f"item-{n}", n) for n in range(1, 41)])
        runtime.run_until_idle()
    assert [runtime.available(f"item-{n}") for n in range(1, 41)] == list(range(1, 41))
    assert any("worker process failed" in r.getMessage() for r in caplog.records)
    assert runtime.start_processes()  # a new one
    (replacement,) = offload._helpers
    assert replacement.process.pid != helper.process.pid
    runtime.ingest([restock("item-1", 1)])
    runtime.run_until_idle()
    assert runtime.available("item-1") == 2
    assert offload.settled >= 1


def test_ctrl_c_is_for_the_runtime_not_its_worker_processes(offloaded: Runtime) -> None:
    offload = offloaded.offload
    assert offload is not None
    (helper,) = offload._helpers
    os.kill(helper.process.pid, signal.SIGINT)
    time.sleep(0.3)
    assert helper.process.is_alive()
    offloaded.ingest([restock("item-a", 3)])
    offloaded.run_until_idle()
    assert offloaded.available("item-a") == 3 and offload.settled == 1


def _left_claimed_after_a_stop(runtime: Runtime, table: str, until: str) -> int:
    """Start the runtime's workers, stop them 50 ms later: the rows of `table` still
    claimed (`until` in the future)."""
    runtime.start(workers=2)
    time.sleep(0.05)
    runtime.stop()
    count: int = runtime.db.read(f"SELECT count(*) FROM {table} WHERE {until} > ?",
                                 (time.time(),))[0][0]
    return count


def test_stopping_delivers_the_batch_claimed_ahead(tmp_path: Path) -> None:
    """`deliver_batch` claims the next batch before it settles one: stopping the workers
    delivers it rather than leaving it claimed until the visibility timeout."""
    runtime = _runtime(tmp_path / "stop.db", 1)
    try:
        runtime.ingest([restock(f"item-{n % 7}", 1) for n in range(300)])
        assert _left_claimed_after_a_stop(runtime, "queue", "visible_at") == 0
        done = runtime.db.read("SELECT count(*) FROM timeline WHERE outcome = 'processed'"
                               )[0][0]
        left = runtime.db.read("SELECT count(*) FROM queue")[0][0]
        assert done + left == 300
    finally:
        runtime.close()


def test_with_tracing_on_every_delivery_runs_in_the_runtime(offloaded: Runtime) -> None:
    """A delivery's span, and the context its emitted events carry, belong to the
    process that exports them."""
    with recording() as spans:
        offloaded.ingest([restock("item-a", 2)])
        offloaded.run_until_idle()
        assert tracing.enabled()
    assert offloaded.available("item-a") == 2
    assert offloaded.offload is not None and offloaded.offload.settled == 0
    assert any(s.name == "process inventory" for s in spans.get_finished_spans())


def test_processes_need_a_database_file_and_an_app_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need a database file"):
        Runtime(":memory:", settings=RuntimeSettings(processes=1))
    import dataclasses

    from handlers.app import APP

    unnamed = dataclasses.replace(APP)
    with pytest.raises(ValueError, match="load the app by name"):
        Runtime(tmp_path / "x.db", app=unnamed, settings=RuntimeSettings(processes=1))
    with pytest.raises(ValueError, match="processes must be >= 0"):
        RuntimeSettings(processes=-1)


def test_a_batch_smaller_than_min_batch_runs_in_the_server(tmp_path: Path) -> None:
    """Under a light load the round trip to a worker would only add latency."""
    runtime = Runtime(tmp_path / "light.db", settings=RuntimeSettings(processes=1))
    try:
        assert runtime.start_processes()
        offload = runtime.offload
        assert offload is not None and offload.min_batch == MIN_BATCH > 1
        runtime.ingest([restock(f"item-{n}", 1) for n in range(MIN_BATCH - 1)])
        runtime.run_until_idle()
        assert offload.settled == 0
        runtime.ingest([restock(f"item-{n}", 1) for n in range(MIN_BATCH)])
        runtime.run_until_idle()
        assert offload.settled == MIN_BATCH
        assert [runtime.available(f"item-{n}") for n in range(MIN_BATCH)] == \
            [2] * (MIN_BATCH - 1) + [1]
    finally:
        runtime.close()


def _deliveries_only(runtime: Runtime) -> None:
    """Every delivery due, in the runtime (no saga step runs)."""
    while runtime._parts.broker.deliver_batch(runtime._parts.process):
        pass


def test_a_saga_run_whose_reads_changed_runs_again_here(offloaded: Runtime) -> None:
    """The worker ran the order's saga with the one item in stock; by the time it is
    settled the item is gone: the saga runs again in the runtime and is cancelled."""
    runtime = offloaded
    runtime.ingest([restock("item-a", 1), order_created("o-1", [("item-a", 1, 5.0)])])
    _deliveries_only(runtime)
    sagas, offload = runtime._parts.sagas, runtime.offload
    assert offload is not None
    leased = sagas._lease(16)  # the two steps `advance_batch` takes, apart
    results = offload.speculate_sagas(leased, follows=False)
    assert results is not None
    (run,) = results()
    assert run is not None and run.state["status"] == "completed"
    runtime.store.transact([Update(INVENTORY, "item-a", add={"available": -1})])
    sagas._run_all(leased, [run])
    runtime.run_until_idle()
    order = runtime.order("o-1")
    assert order is not None and (order["status"], order["reason"]) == \
        ("cancelled", "out_of_stock")
    assert (offload.runs_settled, offload.runs_changed) == (0, 1)


def test_a_saga_run_is_settled_as_the_runtime_would_have_run_it(tmp_path: Path) -> None:
    """The same orders, with and without the worker: the same sagas' states (but for
    the steps' durations), timeline rows and order outcomes."""
    stock = [restock("item-a", 3), restock("item-b", 1)]
    orders = [order_created(f"o-{n}", [("item-a", 1, 5.0), ("item-b", n, 2.0)])
              for n in range(4)]  # o-0 is refused, o-2 and o-3 find too few of item-b

    def run(path: Path, processes: int) -> Runtime:
        runtime = _runtime(path, processes)
        runtime.ingest(stock)
        runtime.ingest(orders)
        _deliveries_only(runtime)
        while runtime._parts.sagas.advance_batch():
            pass
        runtime.run_until_idle()
        return runtime

    alone, ahead = run(tmp_path / "alone.db", 0), run(tmp_path / "ahead.db", 1)
    try:
        assert ahead.offload is not None and ahead.offload.runs_settled >= 3

        def sagas(runtime: Runtime) -> list[tuple[str, str, dict[str, object]]]:
            # (Each runtime gave the orders a trace context of its own.)
            return [(saga_id, status, {**json.loads(state), "traceparent": None})
                    for saga_id, status, state in runtime.db.read(
                        "SELECT saga_id, status, state FROM sagas ORDER BY saga_id")]

        def steps(runtime: Runtime) -> list[tuple[str, str, str, str]]:
            return runtime.db.read(
                "SELECT event_id, event_type, outcome, detail FROM timeline "
                "WHERE consumer LIKE 'saga:%' ORDER BY event_id, seq")

        assert sagas(ahead) == sagas(alone)
        assert steps(ahead) == steps(alone)
        assert {o["order_id"]: o["status"] for o in ahead.orders()} == \
            {o["order_id"]: o["status"] for o in alone.orders()}
    finally:
        alone.close()
        ahead.close()


def test_a_saga_step_that_raises_is_run_again_here(offloaded: Runtime) -> None:
    """A saga whose order is not there yet: its first step raises in the worker, whose
    ports cannot roll a step back, so the run is handed back and the runtime retries it."""
    runtime = offloaded
    runtime.ports.sagas.start("o-late", {"order_id": "o-late"}, None)
    sagas, offload = runtime._parts.sagas, runtime.offload
    assert offload is not None
    leased = sagas._lease(16)
    results = offload.speculate_sagas(leased, follows=False)
    assert results is not None and results() == [None]
    sagas._run_all(leased, [None])
    (state,) = runtime.db.read("SELECT state FROM sagas WHERE saga_id = 'o-late'")[0]
    (entry,) = json.loads(state)["history"]
    assert (entry["step"], entry["outcome"]) == ("create_order", "error")
    assert "not found" in entry["detail"]


def test_stopping_runs_the_sagas_leased_ahead(tmp_path: Path) -> None:
    """`advance_batch` leases the next sagas before it settles some: stopping the
    workers runs them rather than leaving them leased until the lease ends."""
    runtime = _runtime(tmp_path / "stop.db", 1)
    try:
        runtime.ingest([restock("item-a", 500)])
        runtime.run_until_idle()
        runtime.ingest([order_created(f"o-{n}", [("item-a", 1, 1.0)]) for n in range(200)])
        _deliveries_only(runtime)
        assert _left_claimed_after_a_stop(runtime, "sagas", "lease_until") == 0
    finally:
        runtime.close()


def test_an_emitted_event_over_the_claim_check_size_is_for_the_runtime() -> None:
    """The publisher would claim-check it (a blob write): the worker hands it back."""
    from types import SimpleNamespace

    from adapters.local.broker import CLAIM_CHECK_ABOVE
    from adapters.local.effects import SystemClock
    from adapters.local.offload import _NeedsWriter, _Overlay, _Recording
    from handlers.core import jsonformat

    worker = SimpleNamespace(blobs=None, clock=SystemClock(), settings=RuntimeSettings())
    recording = _Recording(worker, _Overlay())  # type: ignore[arg-type]
    small = restock("item-a", 1)
    recording.publish([small])
    assert recording.events == [(small.id, small.source, small.type,
                                 jsonformat.dumps(small), None)]
    big = Event.new("inventory", INVENTORY_UPDATED, {
        "item_id": "item-a", "quantity": 1, "action": "restock",
        "manifest": "é" * (CLAIM_CHECK_ABOVE // 2)})  # fewer characters than bytes
    with pytest.raises(_NeedsWriter, match="claim-check"):
        recording.publish([big])


def test_a_worker_answers_deliveries_before_the_rest_of_a_batch_of_sagas(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of deliveries that arrives while a worker runs a batch of sagas is
    answered between two sagas, not after the whole batch; a stop waits its turn."""
    from collections import deque

    from adapters.local import offload

    def sagas(jobs: list[str], batch: int, previous: int,
              between: Callable[[], None]) -> list[str]:
        done = []
        for job in jobs:
            between()
            done.append(job)
        return done

    monkeypatch.setattr(offload, "_speculate", lambda jobs, batch, previous: list(jobs))
    monkeypatch.setattr(offload, "_speculate_sagas", sagas)

    class Pipe:
        def __init__(self) -> None:
            self.inbox: deque[object] = deque([(1, offload.SAGAS, ["s1", "s2"], 1, 0)])
            # What the runtime sends once the sagas are under way.
            self.later: deque[object] = deque([(2, offload.DELIVERIES, ["d1"], 1, 0), None])
            self.sent: list[object] = []

        def recv(self) -> object:
            return self.inbox.popleft()

        def poll(self, timeout: float) -> bool:
            if self.later and not self.inbox:
                self.inbox.append(self.later.popleft())
            return bool(self.inbox)

        def send(self, message: object) -> None:
            self.sent.append(message)

    pipe = Pipe()
    offload._Requests(pipe).serve()
    assert pipe.sent == [(2, ["d1"]), (1, ["s1", "s2"])]
