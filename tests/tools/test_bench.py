"""The benchmark suite's parts: what they count and how they judge (not how fast)."""

from __future__ import annotations

import logging

from bench.engine_limit import JsonTextStore, drive, runtime_cpu_per_event
from bench.handler_path import CountingStore, measure, workload
from bench.run import Figure, _restocks, _stream, table
from handlers.app import APP
from handlers.catalog import ORDER_CREATED
from handlers.core.ports import Put, Update


def test_counting_store_counts_what_a_cloud_database_bills() -> None:
    store = CountingStore()
    assert store.transact([Put("t", "a", {"v": 1})])
    assert store.transact([Put("t", "b", {"v": 1}), Put("t", "c", {"v": 2})])
    assert store.get("t", "a") == {"v": 1}
    assert (store.reads, store.writes, store.transactions, store.transactional_writes) == \
        (1, 3, 2, 2)


def test_handler_path_runs_every_event_through_each_adapter() -> None:
    results = measure(events_per_run=30, repeats=1)
    assert set(results) == {"engine only", "aws", "gcp"}
    # The same workload does the same store work whichever adapter decodes it.
    counts = {name: (r["reads"], r["writes"]) for name, r in results.items()}
    assert len(set(counts.values())) == 1
    assert all(r["cpu_us"] > 0 and r["writes"] > 0 for r in results.values())
    kinds = {e.type for e in workload(6, "x")}
    assert len(kinds) == 3


def test_table_shows_ratio_target_and_verdict() -> None:
    figures = [
        Figure(1, "slow thing", 300.0, "ms", 100.0, "base", "< 3x", False, "why"),
        Figure(3, "size", 80.0, "KB", None, "", "< 200 KB", True),
        Figure(4, "latency", 5.0, "ms", None, "", "(reported)", None),
    ]
    text = table(figures)
    assert "3.00x" in text and "MISS" in text and "PASS" in text
    assert "1 slow thing: why" in text


def test_json_text_store_keeps_text_and_writes_all_or_nothing() -> None:
    store = JsonTextStore()
    assert store.transact([Put("t", "a", {"n": 1})])
    item = store.get("t", "a")
    assert item == {"n": 1}
    item["n"] = 99  # a read is a copy: changing it changes nothing stored
    assert store.get("t", "a") == {"n": 1}
    # The second op's condition fails: neither op is written.
    assert not store.transact([Update("t", "a", add={"n": 1}), Put("t", "a", {"n": 5})])
    assert store.get("t", "a") == {"n": 1}
    assert store.transact([Update("t", "a", add={"n": 1}, require_min={"n": 1})])
    assert store.get("t", "a") == {"n": 2}


def test_engine_limit_drives_every_event_and_what_it_causes_to_the_end() -> None:
    events = _stream(90, 3)
    counts = drive(events)
    orders = sum(1 for e in events if e.type == ORDER_CREATED)
    assert orders and counts["sagas"] == orders  # each order's saga ran to its end
    # Every event reached every consumer it routes to, and the emitted ones did too.
    assert counts["deliveries"] > sum(len(APP.routes(e.type)) for e in events)
    assert drive(_restocks(10)) == {"events": 10, "deliveries": 10, "sagas": 0}


def test_runtime_limit_runs_the_runtime_to_the_end_and_leaves_logging_as_it_was() -> None:
    logger = logging.getLogger("switchyard")
    before = logger.handlers[:], logger.level, logger.propagate
    # A cheap workload; it raises if anything is left queued, dead-lettered or running.
    assert runtime_cpu_per_event(_stream(40, 3), repeats=1, batch=15) > 0
    assert runtime_cpu_per_event(_restocks(20), repeats=1) > 0
    assert (logger.handlers[:], logger.level, logger.propagate) == before
