"""The embedded runtime: the whole system on one machine, on one SQLite database.

`Runtime` is the one object the CLI, the HTTP server, the demo and the tests hold: a thin
facade over the parts `adapters.local.bootstrap` wires, generated from the app description
like the clouds are:

- `broker`: the event log, one queue per consumer routed by the catalog, a visibility
  timeout and attempt counter per message, `maxDeliveries` then the dead letters,
  redrive and discard;
- `sagas`: the saga executor, running the same saga definition with its state persisted,
  so a restart resumes sagas mid-way;
- `timeline`: one row per delivery outcome and saga step, committed with it, and a log
  line on `switchyard.local` after the commit;
- `queries`: orders, inventory, dead letters and counts;
- `workers`: the threads that deliver and advance sagas, and the event sources' timer;
- `sources`: uploads, schedules and expiry (`adapters.local.sources`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from adapters.local.bootstrap import bootstrap, producer
from adapters.local.broker import ALREADY_DEAD_LETTERED, MAX_EVENT_BYTES
from adapters.local.database import Database, DatabaseMissing
from adapters.local.offload import Offload
from adapters.local.settings import DEFAULT_DB, RuntimeSettings
from adapters.local.sources import LocalSources
from handlers.core import tracing
from handlers.core.app import App, load_app
from handlers.core.events import Event
from handlers.core.ports import Publisher

__all__ = ["ALREADY_DEAD_LETTERED", "DEFAULT_DB", "MAX_EVENT_BYTES", "Runtime",
           "RuntimeSettings"]


class Runtime:
    """Queues, workers, dead letters and the saga executor over one SQLite file."""

    def __init__(self, db_path: str | Path = DEFAULT_DB, app: App | str | None = None,
                 settings: RuntimeSettings | None = None, *, create: bool = True,
                 read_only: bool = False) -> None:
        """`app`: the app, or its `load_app` spec ('package.module:ATTRIBUTE'; None: the
        one SWITCHYARD_APP names, or the order system). Worker processes
        (`settings.processes`) load it by that name. `create=False`: the database must
        exist (`DatabaseMissing` otherwise); `read_only=True` also opens it read-only,
        for commands that only look."""
        spec = app if isinstance(app, str) else None
        self.app = app if isinstance(app, App) else load_app(spec)
        self.settings = settings or RuntimeSettings()
        self._parts = parts = bootstrap(db_path, self.app, self.settings, create=create,
                                        read_only=read_only, app_spec=spec)
        self._db, self.store, self.blobs, self.ports = parts.db, parts.store, parts.blobs, \
            parts.ports
        self._sources: LocalSources | None = None
        if not read_only:
            _ = self.sources  # their tables exist from the start

    @property
    def db(self) -> Database:
        return self._db

    @db.setter
    def db(self, db: Database) -> None:
        """Route the runtime's own transactions through `db` (a wrapper of the same
        database, e.g. one that injects faults around each write)."""
        self._db = db
        self._parts.use_database(db)

    @property
    def sources(self) -> LocalSources:
        """Uploads, schedules and expiry; made on first use, as they write their tables
        (a read-only runtime never needs them)."""
        if self._sources is None:
            if self.db.read_only:
                raise DatabaseMissing(f"{self.db.path} is open read-only: no event sources")
            self._sources = LocalSources(self.app, self.db, self.blobs,
                                         lambda events: self.ingest(events, origin="source"),
                                         self.settings.schedule_every)
        return self._sources

    def producer(self) -> Publisher:
        """A publisher onto the local bus (by claim check over the bus limit)."""
        return producer(self.app, self._parts.broker, self.blobs)

    # ingress and workers ----------------------------------------------------
    def ingest(self, events: Iterable[Event], origin: str = "http") -> list[str]:
        """Append events to the log and enqueue them for every consumer, durably, at once
        (each in an ingress span when tracing is on)."""
        if origin == "emit":
            return self._parts.broker.ingest(events, origin)
        with tracing.ingress(events, origin) as traced:
            return self._parts.broker.ingest(traced, origin)

    def wake(self) -> None:
        self._parts.signal.wake()

    def start(self, workers: int = 4) -> None:
        if workers < 1:  # events would be accepted and never processed
            raise ValueError(f"workers must be >= 1, got {workers}")
        if self.db.read_only:
            raise DatabaseMissing(f"{self.db.path} is open read-only: cannot process")
        interval = self.settings.sources_interval
        if self.settings.schedule_every:
            interval = min(interval, self.settings.schedule_every / 4)
        timer = self.sources.poll if self.app.schedules or self.app.buckets else None
        self._parts.workers.start(workers, timer, interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._parts.workers.stop(timeout)

    @property
    def offload(self) -> Offload | None:
        """The worker processes running handlers ahead (None without any): their
        counters say how many deliveries were settled from them."""
        return self._parts.offload

    def start_processes(self, timeout: float = 60.0) -> bool:
        """Start the worker processes `settings.processes` asks for, if they are not
        running, and wait until they answer (`start` does not wait: deliveries run in
        this process meanwhile); False when there are none. TimeoutError if they do
        not answer in time."""
        return self._parts.workers.start_helpers(timeout)

    def work_once(self) -> bool:
        """One delivery or one saga's run of due steps; False when nothing was due."""
        return self._parts.workers.work_once()

    def run_until_idle(self, timeout: float = 60.0) -> None:
        """Process in the calling thread until no delivery or saga step is pending."""
        self._parts.workers.run_until_idle(timeout)

    # dead letters -----------------------------------------------------------
    def redrive(self, consumer: str | None = None, ids: Sequence[int] | None = None
                ) -> list[int]:
        return self._parts.broker.redrive(consumer, ids)

    def discard(self, ids: Sequence[int], by: str) -> list[int]:
        return self._parts.broker.discard(ids, by)

    # queries ----------------------------------------------------------------
    def order(self, order_id: str) -> dict[str, Any] | None:
        return self._parts.queries.order(order_id)

    def orders(self) -> list[dict[str, Any]]:
        return self._parts.queries.orders()

    def available(self, item_id: str) -> int:
        return self._parts.queries.available(item_id)

    def dlq(self, consumer: str | None = None, include_redriven: bool = False
            ) -> list[dict[str, Any]]:
        return self._parts.queries.dlq(consumer, include_redriven)

    def discarded(self) -> list[dict[str, Any]]:
        return self._parts.queries.discarded()

    def counts(self) -> dict[str, int]:
        return self._parts.queries.counts()

    def consumer_status(self, recent: int = 3) -> list[dict[str, Any]]:
        """Backlog, in flight, dead letters and latest failures of every consumer and of
        the saga (`saga:NAME`)."""
        names = [*self.app.consumer_names(), f"saga:{self.app.saga.name}"]
        return self._parts.queries.consumer_status(names, recent)

    def timeline(self, subject: str | None = None) -> list[dict[str, Any]]:
        return self._parts.timeline.rows(subject)

    def trace(self, order_id: str) -> list[dict[str, Any]]:
        return self._parts.timeline.trace(order_id)

    def close(self) -> None:
        self.stop()
        self.db.close()
