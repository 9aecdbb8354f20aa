"""Figure 4's ceiling: the engine and handlers alone on figure 4's workloads, one thread.

The local runtime adds durability (SQLite, fsynced ingest), HTTP, worker threads and log
lines around the engine. This drives the same events through the engine alone, with
in-memory ports whose store keeps each item as JSON text (as every durable store must
serialise it; no copies beyond that): each event goes to every consumer its type routes
to, the events a handler emits join the queue, a started saga runs to its end, and an
event whose data is not known yet goes round again once the queue is empty, as the
runtime's short retry does. What it costs per event on one core is the most any
runtime of this engine can do per core, before durability, transport or logging.

`runtime_cpu_per_event` is the next step up: the local runtime itself (SQLite, fsynced
ingest, queues, timeline, its log lines written to a file) on the same events in one
thread, with no HTTP and no worker threads: what one core can do with this runtime's
durable work per event, whatever runs it.
"""

from __future__ import annotations

import collections
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.memory import MemoryStore, memory_ports
from handlers.app import APP
from handlers.core.engine import handle
from handlers.core.errors import NotYetKnown
from handlers.core.events import Event
from handlers.core.ports import Op, Ports, apply_op
from handlers.core.saga_runner import new_state, run_to_end

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class JsonTextStore(MemoryStore):
    """The in-memory store with each item held as JSON text: a read decodes it, a
    transaction applies its conditions and writes the new items' text, all or nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[tuple[str, str], str] = {}

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        text = self.texts.get((table, key))
        return None if text is None else json.loads(text)

    def transact(self, ops: Sequence[Op]) -> bool:
        staged: dict[tuple[str, str], dict[str, Any]] = {}
        for op in ops:
            where = (op.table, op.key)
            current = staged.get(where) if where in staged else self.get(*where)
            new = apply_op(current, op)
            if new is None:
                return False
            staged[where] = new
        for where, item in staged.items():
            self.texts[where] = _encode(item)
        return True


def _ports() -> Ports:
    base = memory_ports()
    store = JsonTextStore()
    from handlers.payments import SimulatedPaymentGateway

    return Ports(store=store, publisher=base.publisher, notifier=base.notifier,
                 sagas=base.sagas, clock=base.clock,
                 payments=SimulatedPaymentGateway(store, base.clock, 100_000))


def drive(events: Sequence[Event]) -> dict[str, int]:
    """Process `events` and everything they cause to the end; counts of what ran.

    Raises if any delivery or saga fails for a reason other than "not known yet": the
    workloads are the happy path, and a failure would make the figure meaningless.
    """
    ports = _ports()
    published = ports.publisher.published  # type: ignore[attr-defined]
    started: dict[str, dict[str, Any]] = ports.sagas.started  # type: ignore[attr-defined]
    queue: collections.deque[Event] = collections.deque(events)
    later: list[tuple[str, Event]] = []
    pending: collections.deque[tuple[str, Event]] = collections.deque()
    deliveries = sagas = rounds = 0
    while queue or pending or later:
        if not queue and not pending:
            rounds += 1
            if rounds > 20:
                raise RuntimeError(f"{len(later)} deliveries still not known after 20 rounds")
            pending.extend(later)
            later.clear()
        if pending:
            consumer, event = pending.popleft()
            targets = [consumer]
        else:
            event = queue.popleft()
            targets = [c.name for c in APP.routes(event.type)]
        for consumer in targets:
            deliveries += 1
            try:
                handle(APP, consumer, event, ports)
            except NotYetKnown:
                later.append((consumer, event))
        for saga_id in list(started)[sagas:] if len(started) > sagas else ():
            sagas += 1
            saga = started[saga_id]
            end = run_to_end(APP, ports, new_state(saga_id, saga["input"], saga["traceparent"]))
            if end["status"] not in ("completed", "cancelled"):
                raise RuntimeError(f"saga {saga_id} ended {end['status']}: {end['reason']}")
        queue.extend(published)
        published.clear()
    return {"events": len(events), "deliveries": deliveries, "sagas": sagas}


def cpu_per_event(events: Sequence[Event], repeats: int = 3) -> tuple[float, dict[str, int]]:
    """Median CPU seconds per event over `repeats` runs (after one warm-up run)."""
    logging.disable(logging.CRITICAL)  # the engine logs nothing per event; handlers may
    try:
        samples = []
        counts: dict[str, int] = {}
        for run in range(repeats + 1):
            started = time.process_time()
            counts = drive(events)
            if run:
                samples.append((time.process_time() - started) / len(events))
    finally:
        logging.disable(logging.NOTSET)
    samples.sort()
    return samples[len(samples) // 2], counts


def runtime_cpu_per_event(events: Sequence[Event], repeats: int = 3,
                          batch: int = 100) -> float:
    """Median CPU seconds per event of the local runtime alone, one thread, no HTTP: each
    run a fresh database; the events ingested in batches of `batch` (as the HTTP clients
    post them), then processed with `run_until_idle` to the end, log lines on."""
    from adapters.local.runtime import Runtime, RuntimeSettings
    from handlers.core.observability import configure_logging

    logger = logging.getLogger("switchyard")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    samples = []
    try:
        for run in range(repeats + 1):
            with tempfile.TemporaryDirectory(prefix="switchyard-bench-runtime-") as tmp:
                configure_logging("INFO")  # as `switchyard serve` does, into a file here
                with open(Path(tmp) / "serve.log", "w") as log:
                    handler = logger.handlers[0]
                    assert isinstance(handler, logging.StreamHandler)
                    handler.setStream(log)
                    runtime = Runtime(Path(tmp) / "runtime.db", settings=RuntimeSettings())
                    try:
                        started = time.process_time()
                        for i in range(0, len(events), batch):
                            runtime.ingest(events[i:i + batch])
                        runtime.run_until_idle(timeout=600)
                        used = time.process_time() - started
                        left = runtime.counts()
                    finally:
                        runtime.close()
            if left["queued"] or left["dead_lettered"] or left["sagas_active"]:
                raise RuntimeError(f"the runtime did not finish the workload cleanly: {left}")
            if run:  # the first is a warm-up: first-use imports and caches
                samples.append(used / len(events))
    finally:
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)
    samples.sort()
    return samples[len(samples) // 2]
