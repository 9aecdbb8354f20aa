"""Worker processes running deliveries' handlers ahead of the write lock (`serve
--processes`): the same outcomes as without them, whatever changes under a speculation,
and whatever happens to the worker process."""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Iterator
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
from tests.factories import restock
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


def test_stopping_delivers_the_batch_claimed_ahead(tmp_path: Path) -> None:
    """`deliver_batch` claims the next batch before it settles one: stopping the workers
    delivers it rather than leaving it claimed until the visibility timeout."""
    runtime = _runtime(tmp_path / "stop.db", 1)
    try:
        runtime.ingest([restock(f"item-{n % 7}", 1) for n in range(300)])
        runtime.start(workers=2)
        time.sleep(0.05)
        runtime.stop()
        stuck = runtime.db.read("SELECT count(*) FROM queue WHERE visible_at > ?",
                                (time.time(),))[0][0]
        assert stuck == 0
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
