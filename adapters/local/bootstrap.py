"""The local runtime's composition root: builds every part once and wires them together.

Order matters only where a part needs another: the broker needs the timeline and the
workers' wake-up signal; the ports need the broker (emitted events go onto the bus) and the
saga starter; the saga executor and the deliveries need the ports. No part holds the
runtime or itself: each gets exactly the collaborators it uses.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from adapters.local.blob_store import FileBlobStore
from adapters.local.broker import CLAIM_CHECK_ABOVE, Broker, Process
from adapters.local.database import Database
from adapters.local.effects import BusPublisher, LocalNotifier, SystemClock
from adapters.local.offload import Offload
from adapters.local.queries import Queries
from adapters.local.sagas import SagaExecutor, SagaStarter, resume_in
from adapters.local.settings import RuntimeSettings
from adapters.local.sqlite_store import SQLiteStore
from adapters.local.timeline import Timeline
from adapters.local.workers import Signal, Workers
from handlers.core.app import App, load_app
from handlers.core.claim_check import ClaimCheckPublisher
from handlers.core.engine import Outcome, handle
from handlers.core.events import Event
from handlers.core.ports import Clock, PaymentGateway, Ports, Publisher, Store
from handlers.payments import SimulatedPaymentGateway


@dataclass(frozen=True, slots=True)
class System:
    app: App
    settings: RuntimeSettings
    db: Database
    store: SQLiteStore
    blobs: FileBlobStore
    timeline: Timeline
    broker: Broker
    ports: Ports
    sagas: SagaExecutor
    starter: SagaStarter
    queries: Queries
    workers: Workers
    signal: Signal
    #: The worker processes that run handlers ahead (None: `settings.processes` is 0).
    offload: Offload | None
    #: What one delivery does (the broker runs it inside its transaction).
    process: Process

    def use_database(self, db: Database) -> None:
        """Make the runtime's own transactions (log, queues, dead letters, sagas, timeline)
        go through `db`, a wrapper of the same database: how the fault-injection tests
        make those writes fail. The store and the notifier keep the database they have."""
        for part in (self.timeline, self.broker, self.sagas, self.starter, self.queries):
            part.db = db


def bootstrap(db_path: str | Path, app: App, settings: RuntimeSettings, *,
              create: bool = True, read_only: bool = False,
              app_spec: str | None = None) -> System:
    """Every part of the runtime over `db_path`. `app_spec` names `app` for `load_app`
    (what worker processes import when `settings.processes` asks for them; None: the
    app SWITCHYARD_APP names, or the default)."""
    db = Database(db_path, create=create, read_only=read_only)
    store = SQLiteStore(db)
    blobs = blob_store(app, db_path, settings)
    timeline = Timeline(db)
    signal, stopping = Signal(), threading.Event()
    broker = Broker(db, app.routes, settings, timeline, signal.wake, resume_in)
    starter = SagaStarter(db, app.saga.name, timeline, signal.wake)
    clock = SystemClock()
    ports = Ports(
        store=store, publisher=producer(app, broker, blobs), notifier=LocalNotifier(db),
        sagas=starter, clock=clock,
        payments=payment_gateway(store, clock, settings), blobs=blobs, atomic=db.atomic)

    def process(consumer: str, event: Event, attempt: int) -> Outcome:
        # The broker runs each delivery inside a savepoint of its own that rolls back
        # whole on any error leaving it: the engine's unit of writes and effects joins it
        # rather than opening a second one inside it (saga steps keep their own: the
        # saga runner catches a step's failure and goes on).
        with db.joined():
            return handle(app, consumer, event, ports, attempt=attempt,
                          max_attempts=settings.max_deliveries)

    offload = None
    if settings.processes and not read_only:
        if str(db_path) == ":memory:":
            raise ValueError("worker processes (processes > 0) need a database file: an "
                             "in-memory database is not shared between processes")
        offload = Offload(str(db_path), settings, settings.processes, store, ports, broker,
                          app_spec=_spec_of(app, app_spec))
    sagas = SagaExecutor(db, app, ports, settings, timeline, stopping, speculator=offload)
    workers = Workers(signal, stopping,
                      deliver=lambda: broker.deliver_batch(process, speculator=offload),
                      advance_saga=sagas.advance_batch,
                      dues=(broker.next_visible, sagas.next_due),
                      poll_interval=settings.poll_interval, checkpoints=db, helpers=offload,
                      finish=lambda: broker.deliver_ahead(process) | sagas.run_ahead())
    return System(app, settings, db, store, blobs, timeline, broker, ports, sagas, starter,
                  Queries(db, store), workers, signal, offload, process)


def _spec_of(app: App, spec: str | None) -> str | None:
    """How a worker process loads `app` (`load_app`'s spec); a ValueError when it cannot
    (an app built in a test or a notebook, not named by any module attribute)."""
    try:
        if load_app(spec) is app:
            return spec
    except (ImportError, ValueError):
        pass
    raise ValueError("worker processes (processes > 0) load the app by name: give the "
                     "runtime the app as 'package.module:ATTRIBUTE' (or set SWITCHYARD_APP)")


def payment_gateway(store: Store, clock: Clock, settings: RuntimeSettings) -> PaymentGateway:
    """The local runtime's payment provider (the worker processes build theirs here too)."""
    return SimulatedPaymentGateway(store, clock, settings.decline_above_cents)


def producer(app: App, broker: Broker, blobs: FileBlobStore) -> Publisher:
    """A publisher onto the local bus for handlers and in-process producers: events
    over the bus limit go by claim check when the app declares a claim-check bucket."""
    claims = app.claim_check_bucket()
    if claims is None:
        return BusPublisher(broker)
    # Measured as the bus encodes it, which keeps the body for the ingest that follows.
    return ClaimCheckPublisher(BusPublisher(broker), blobs, claims.name, CLAIM_CHECK_ABOVE,
                               size=broker.encoded_size)


def blob_store(app: App, db_path: str | Path, settings: RuntimeSettings) -> FileBlobStore:
    if settings.blob_dir:
        root = Path(settings.blob_dir)
    elif str(db_path) == ":memory:":
        root = Path(tempfile.mkdtemp(prefix="switchyard-blobs-"))
    else:
        root = Path(f"{db_path}.blobs")
    overrides = {}
    uploads = next((b.name for b in app.buckets if b.events), None)
    if settings.uploads_dir and uploads:
        overrides[uploads] = settings.uploads_dir
    return FileBlobStore(root, overrides)
