"""Randomised fault schedules on the local runtime, with the invariants checked after each.

Every example runs a real `Runtime` on a fresh SQLite file, feeds it a random workload
(duplicates, re-sent orders, reordering, poison) in random batches, and fails calls on its
real seams (store, publisher, notifier, saga starter, payment provider, the runtime's own
database writes) before or after they take effect, with transient errors or worker kills.
Once quiet, the invariants of `tests/invariants.py` must hold with whatever the faults
pushed into the DLQ counted as "needs attention"; then the faults stop, an operator
redrives the DLQ, and the invariants must hold strictly: every order terminal, stock and
money exact. Example counts follow the hypothesis profile (`tests/conftest.py`).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, note, settings

from adapters.local import broker, sagas
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.core.engine import step_key
from handlers.core.errors import TransientError
from handlers.core.events import Event
from handlers.core.ports import Item, Op, Put, Store
from handlers.orders import saga_id_for
from tests.factories import order_created, restock, workflow_triggered
from tests.faults.injection import (
    SEAMS,
    WORKER_LOST,
    Fault,
    FaultPlan,
    drive_until_idle,
    install,
)
from tests.faults.scenarios import Scenario, scenarios
from tests.invariants import Report, check, snapshot_sqlite, watch_stock

#: Each example drives a whole runtime on a real file (tens of ms to ~1 s), so CI runs a
#: fixed sample and the soak profile (tests/conftest.py) a longer random search.
PROFILE = settings.get_current_profile_name()
EXAMPLES = {"soak": 1000}.get(PROFILE, 150)
THREADED_EXAMPLES = {"soak": 150}.get(PROFILE, 25)
#: Crash points per (seam, side, kind) in CI; the soak profile tries every one.
CI_CRASH_POINTS = 6

#: Small visibility timeout and lease: a killed worker's claim comes back quickly. Retry
#: backoff scaled down to milliseconds; the counts (maxDeliveries, step retries) are real.
FAST = RuntimeSettings(max_deliveries=5, visibility_timeout=0.05, saga_lease=0.05,
                       retry_scale=0.001, poll_interval=0.01)


def _scratch() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory for throwaway databases, in memory when the OS offers it.

    These tests are about faults, not disks: fsync on tmpfs is free and halves the run
    time. Durability across a real kill is the job of the SIGKILL test and the soak
    (real processes, real files on disk).
    """
    shm = Path("/dev/shm")
    memory = shm.is_dir() and os.access(shm, os.W_OK)
    return tempfile.TemporaryDirectory(dir=shm if memory else None, prefix="switchyard-")


def _ingest(runtime: Runtime, batch: Sequence[Event]) -> None:
    """A producer that retries until the bus acknowledges, as the HTTP clients do; a fault
    after the commit means the batch lands twice, which is the at-least-once contract."""
    for _ in range(20):
        try:
            runtime.ingest(batch)
            return
        except WORKER_LOST:
            continue
    raise AssertionError("ingest kept failing: the fault plan should be one-shot")


def _check(runtime: Runtime, accepted: Sequence[Event], strict: bool) -> Report:
    report = check(snapshot_sqlite(runtime.db.read), accepted,
                   decline_above_cents=runtime.settings.decline_above_cents, strict=strict)
    note(f"{'strict' if strict else 'with faults'}: figures {report.figures}; "
         f"needs attention {report.needs_attention}")
    report.raise_if_violated()
    return report


def _label(plan: FaultPlan, report: Report) -> None:
    """What the examples covered (`--hypothesis-show-statistics`): proof they bite."""
    event(f"faults fired: {min(len(plan.fired), 3)}{'+' if len(plan.fired) > 3 else ''}")
    for fault in plan.fired:
        event(f"fired {fault.kind} {fault.when} {fault.seam}")
    if report.needs_attention:
        event("an operator had to redrive")
    for outcome in ("completed", "cancelled"):
        if report.figures.get(f"orders_{outcome}"):
            event(f"some orders {outcome}")
    if report.figures.get("dead_lettered"):
        event("some events dead-lettered")


def _run_schedule(scenario: Scenario, db: Path) -> None:
    note(scenario.describe())
    watch_stock(db)
    runtime = Runtime(db, settings=FAST)
    plan = FaultPlan(scenario.faults)
    install(runtime, plan)
    try:
        for batch, steps in zip(scenario.batches, scenario.work_between, strict=True):
            _ingest(runtime, batch)
            for _ in range(steps):  # new events land on half-finished work
                try:
                    runtime.work_once()
                except WORKER_LOST:
                    pass
        deaths = drive_until_idle(runtime, timeout=60)
        note(f"fired {plan.fired}; {deaths} worker deaths; calls {plan.calls}")
        _label(plan, _check(runtime, scenario.events, strict=False))

        plan.enabled = False  # the outage is over: an operator redrives the DLQ once
        runtime.redrive()
        drive_until_idle(runtime, timeout=60)
        _check(runtime, scenario.events, strict=True)
    finally:
        runtime.close()


@settings(max_examples=EXAMPLES)
@given(scenarios())
def test_random_fault_schedules_keep_the_invariants(scenario: Scenario) -> None:
    with _scratch() as tmp:
        _run_schedule(scenario, Path(tmp) / "faults.db")


@settings(max_examples=THREADED_EXAMPLES)
@given(scenarios(max_orders=10, max_faults=8))
def test_fault_schedules_with_concurrent_workers(scenario: Scenario) -> None:
    """Three workers race on one database while producers keep sending: in-flight
    duplicates, contended reservations and reclaimed deliveries under the same faults.
    Call numbering is not deterministic here, so this explores rather than replays."""
    with _scratch() as tmp:
        watch_stock(Path(tmp) / "threads.db")
        runtime = Runtime(Path(tmp) / "threads.db",
                          settings=RuntimeSettings(max_deliveries=5, visibility_timeout=0.3,
                                                   saga_lease=0.3, retry_scale=0.001,
                                                   poll_interval=0.01))
        plan = FaultPlan(scenario.faults)
        install(runtime, plan)
        stop = threading.Event()

        def worker() -> None:  # a process that is restarted whenever it dies
            while not stop.is_set():
                try:
                    if not runtime.work_once():
                        time.sleep(0.005)
                except WORKER_LOST:
                    pass

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(3)]
        try:
            for thread in threads:
                thread.start()
            for batch in scenario.batches:
                _ingest(runtime, batch)
            deadline = time.monotonic() + 60
            while runtime.counts()["queued"] or runtime.counts()["sagas_active"]:
                assert time.monotonic() < deadline, f"not quiet: {runtime.counts()}"
                time.sleep(0.02)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        try:
            drive_until_idle(runtime, timeout=30)  # anything a dying worker left claimed
            _label(plan, _check(runtime, scenario.events, strict=False))
            plan.enabled = False
            runtime.redrive()
            drive_until_idle(runtime, timeout=30)
            _check(runtime, scenario.events, strict=True)
        finally:
            runtime.close()


# Every crash point, one at a time --------------------------------------------------------

def _small_flow() -> list[list[Event]]:
    """A restock (settled first, so every outcome below is deterministic), then an order
    that completes, one declined, one out of stock, a trigger that overtakes its order and
    a duplicate: every step and every compensation runs at least once."""
    created = order_created("ok", [("A", 2, 10.0)])
    return [[restock("A", 3)],
            [workflow_triggered("ok"), created, created,
             order_created("big", [("A", 1, 1500.0)]),
             order_created("short", [("A", 1, 10.0), ("B", 1, 10.0)])]]


def _run_small_flow(runtime: Runtime) -> list[Event]:
    flow = _small_flow()
    for batch in flow:
        _ingest(runtime, batch)
        drive_until_idle(runtime)
    return [e for batch in flow for e in batch]


@functools.cache
def _calls_in_small_flow() -> dict[str, int]:
    with _scratch() as tmp:
        runtime = Runtime(Path(tmp) / "count.db", settings=FAST)
        plan = FaultPlan()
        install(runtime, plan)
        _run_small_flow(runtime)
        runtime.close()
        return plan.calls


def _crash_points(calls: int) -> list[int]:
    """Every call number under the soak profile; an even spread of at most 6 in CI."""
    if PROFILE == "soak" or calls <= CI_CRASH_POINTS:
        return list(range(calls))
    step = (calls - 1) / (CI_CRASH_POINTS - 1)
    return sorted({round(i * step) for i in range(CI_CRASH_POINTS)})


@pytest.fixture()
def _commits_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the clock out of where a batch commits, so call n is the same write in every
    run (the fault plans address calls by number).

    A worker commits a claimed batch early once it has held the write lock for
    `MAX_HOLD` (25 ms) of wall-clock time. On a loaded machine that happens mid-batch:
    extra `db.write` calls shift the numbering the counting run saw, and a fault can land
    between two parts of a batch. There, a kill (or a failed write) after the part that
    recorded a trigger's `NotYetKnown` retry leaves the trigger's order claimed for a
    visibility timeout while the trigger spends its `maxDeliveries` attempts and is
    dead-lettered: a redrive finishes it, so the random schedules above (which redrive)
    cover that case; this test's promise, no operator for any single fault, is about
    batches that commit whole.
    """
    monkeypatch.setattr(broker, "MAX_HOLD", math.inf)
    monkeypatch.setattr(sagas, "MAX_HOLD", math.inf)


@pytest.mark.usefixtures("_commits_by_count")
@pytest.mark.parametrize("kind", ["transient", "kill"])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("seam", sorted(SEAMS))
def test_every_single_crash_point(seam: str, when: str, kind: str) -> None:
    """Fail the n-th call of one seam, for every n the flow makes: a single fault must
    never need an operator, so the strict invariants hold without any redrive."""
    calls = _calls_in_small_flow().get(seam, 0)
    assert calls > 0, f"the flow never reaches {seam}: this case would prove nothing"
    with _scratch() as tmp:
        for n in _crash_points(calls):
            watch_stock(Path(tmp) / f"{n}.db")
            runtime = Runtime(Path(tmp) / f"{n}.db", settings=FAST)
            plan = FaultPlan([Fault(seam, n, when, kind)])  # type: ignore[arg-type]
            install(runtime, plan)
            try:
                flow = _run_small_flow(runtime)
                assert plan.fired, f"{seam} #{n} never fired"
                report = check(snapshot_sqlite(runtime.db.read), flow)
                assert report.ok, f"{kind} {when} {seam} #{n}: {report.violations}"
                assert runtime.dlq() == [], f"{kind} {when} {seam} #{n}: {runtime.dlq()}"
                statuses = {o["order_id"]: (o["status"], o.get("reason"))
                            for o in runtime.orders()}
                assert statuses == {"ok": ("completed", None),
                                    "big": ("cancelled", "payment_declined"),
                                    "short": ("cancelled", "out_of_stock")}, (n, statuses)
            finally:
                runtime.close()


# A finding of these schedules, kept as a regression test ----------------------------

class _CompletionOutage:
    """A store whose commits of one order's `complete_order` step fail until switched off:
    the on_success step exhausts its retries and the saga ends `failed` (needs attention)."""

    def __init__(self, inner: Store, order_id: str) -> None:
        self._inner, self._prefix = inner, step_key(saga_id_for(order_id), "complete_order", "")
        self.down = True

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self._inner.get(table, key)

    def put_if_absent(self, table: str, key: str, item: Item) -> bool:
        return self._inner.put_if_absent(table, key, item)

    def transact(self, ops: Sequence[Op]) -> bool:
        if self.down and any(isinstance(op, Put) and op.key.startswith(self._prefix)
                             for op in ops):
            raise TransientError("injected: the order store is down")
        return self._inner.transact(ops)


def test_redrive_of_a_saga_that_failed_to_complete_finishes_it() -> None:
    """Found by these schedules: redrive used to resume every failed saga as
    'compensating', so one whose complete_order step had failed was cancelled with its
    charge kept and its stock still reserved. It must finish the order instead."""
    with _scratch() as tmp:
        runtime = Runtime(Path(tmp) / "redrive.db", settings=FAST)
        outage = _CompletionOutage(runtime.ports.store, "o1")
        runtime.ports.store = outage
        events = [restock("A", 5), order_created("o1", [("A", 2, 10.0)])]
        try:
            runtime.ingest(events)
            drive_until_idle(runtime)
            assert [d["reason"] for d in runtime.dlq()] == ["complete_order_failed"]
            outage.down = False  # fixed; the operator redrives
            runtime.redrive()
            drive_until_idle(runtime)
            check(snapshot_sqlite(runtime.db.read), events).raise_if_violated()
            assert runtime.order("o1")["status"] == "completed"
        finally:
            runtime.close()
