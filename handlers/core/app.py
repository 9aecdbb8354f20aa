"""The app description: plain data every backend generates from.

`infra/aws`, `infra/gcp` and `adapters/local` read one `App`: its event catalog, its
consumers (handler, consumed types, what they touch) and its saga. Adding a consumer is one
entry here; queues, rules, subscriptions, identities and local routes follow from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Final

from handlers.core.errors import UnknownEventType, ValidationError
from handlers.core.ports import SAGAS
from handlers.core.schema import checker, schema_problems, validate
from handlers.core.values import FACTORY, valueclass

if TYPE_CHECKING:
    from handlers.core.context import Context, StepContext

_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


_set: Final = object.__setattr__


@valueclass
class EventType:
    """One catalog entry: the CloudEvents type and its EventBridge spelling."""

    type: str  # CloudEvents `type`, e.g. com.switchyard.order.created
    source: str  # CloudEvents `source` and EventBridge `Source`
    detail_type: str  # EventBridge `DetailType`, e.g. "Order Created"
    schema: Mapping[str, Any]
    description: str = ""
    #: `schema.checker(schema)`: whether data passes, without wording why not.
    _valid: Callable[[Any], bool] = field(init=False, repr=False, compare=False)

    def __init__(self, type: str, source: str, detail_type: str, schema: Mapping[str, Any],
                 description: str = "") -> None:
        _set(self, "type", type)
        _set(self, "source", source)
        _set(self, "detail_type", detail_type)
        _set(self, "schema", schema)
        _set(self, "description", description)
        # A keyword the validator does not enforce would let data through unchecked.
        problems = schema_problems(schema)
        if problems:
            raise ValueError(f"event type {type}: {'; '.join(problems)}")
        _set(self, "_valid", checker(schema))

    def data_problems(self, data: Any) -> list[str]:
        # Most data passes: the problems are worded only for data that does not.
        return [] if self._valid(data) else validate(self.schema, data)


class Catalog:
    """Event types by CloudEvents type and by EventBridge (source, detail-type)."""

    def __init__(self, types: Sequence[EventType]) -> None:
        self.types: tuple[EventType, ...] = tuple(types)
        self._by_type = {t.type: t for t in self.types}
        self._by_detail = {(t.source, t.detail_type): t for t in self.types}
        if len(self._by_type) != len(self.types) or len(self._by_detail) != len(self.types):
            raise ValueError("catalog has duplicate event types or detail-types")

    def __iter__(self) -> Iterator[EventType]:
        return iter(self.types)

    def get(self, type_: str) -> EventType | None:
        return self._by_type.get(type_)

    def __getitem__(self, type_: str) -> EventType:
        found = self._by_type.get(type_)
        if found is None:
            known = ", ".join(sorted(self._by_type))
            raise UnknownEventType(f"unknown event type '{type_}' (known: {known})")
        return found

    def by_detail_type(self, source: str, detail_type: str) -> EventType | None:
        return self._by_detail.get((source, detail_type))

    def check_data(self, type_: str, data: Any) -> None:
        problems = self[type_].data_problems(data)
        if problems:
            raise ValidationError(f"invalid data for '{type_}'", problems)


@valueclass
class Retry:
    """Retry policy for a saga step: attempts in all, first interval, backoff multiplier."""

    max_attempts: int = 3
    interval_seconds: float = 1.0
    backoff: float = 2.0

    def __init__(self, max_attempts: int = 3, interval_seconds: float = 1.0,
                 backoff: float = 2.0) -> None:
        _set(self, "max_attempts", max_attempts)
        _set(self, "interval_seconds", interval_seconds)
        _set(self, "backoff", backoff)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.interval_seconds * self.backoff ** (attempt - 1)


Handler = Callable[["Context"], None]
StepAction = Callable[["StepContext"], Mapping[str, Any] | None]


@valueclass
class Consumer:
    """One route: the types it consumes, its handler, and what it may touch."""

    name: str
    handler: Handler
    consumes: tuple[str, ...]
    stores: tuple[str, ...] = ()  # tables it reads/writes (besides the dedupe records)
    emits: tuple[str, ...] = ()  # event types it may publish
    notifies: bool = False  # uses the notifier port
    starts_saga: bool = False  # uses the saga starter port
    #: Messages per invocation where the platform batches (the SQS event source on AWS;
    #: Pub/Sub push and the local workers deliver one at a time); None: the stack's
    #: `batchSize` config. A consumer whose handler is slow per event may want fewer.
    batch_size: int | None = None
    #: Concurrent invocations at most; None: the stack's `maxConcurrency` config.
    max_concurrency: int | None = None
    description: str = ""
    buckets: tuple[str, ...] = ()  # buckets it reads (only these: least privilege)
    scans: tuple[str, ...] = ()  # tables (of `stores`) it may read whole, e.g. for audits

    def __init__(self, name: str, handler: Handler, consumes: tuple[str, ...],
                 stores: tuple[str, ...] = (), emits: tuple[str, ...] = (),
                 notifies: bool = False, starts_saga: bool = False,
                 batch_size: int | None = None, max_concurrency: int | None = None,
                 description: str = "", buckets: tuple[str, ...] = (),
                 scans: tuple[str, ...] = ()) -> None:
        _set(self, "name", name)
        _set(self, "handler", handler)
        _set(self, "consumes", consumes)
        _set(self, "stores", stores)
        _set(self, "emits", emits)
        _set(self, "notifies", notifies)
        _set(self, "starts_saga", starts_saga)
        _set(self, "batch_size", batch_size)
        _set(self, "max_concurrency", max_concurrency)
        _set(self, "description", description)
        _set(self, "buckets", buckets)
        _set(self, "scans", scans)


@valueclass
class Bucket:
    """Object storage the app declares.

    `events`: every finished upload becomes a `storage.object.finalized` event on the
    bus (S3 -> EventBridge, GCS -> Pub/Sub notification, a watched folder locally).
    `expire_days`: objects are deleted this long after they were written (a lifecycle
    rule on the clouds, a sweep locally); the claim-check bucket relies on it.
    `claim_check`: oversize events park their data here (at most one bucket may).
    """

    name: str
    events: bool = False
    expire_days: int | None = None
    claim_check: bool = False
    description: str = ""

    def __init__(self, name: str, events: bool = False, expire_days: int | None = None,
                 claim_check: bool = False, description: str = "") -> None:
        _set(self, "name", name)
        _set(self, "events", events)
        _set(self, "expire_days", expire_days)
        _set(self, "claim_check", claim_check)
        _set(self, "description", description)


@valueclass
class Schedule:
    """A scheduled event source: at each time `cron` names (five-field unix cron, UTC),
    publish one event of type `emits` with `data` plus the slot it fired for.

    EventBridge Scheduler on AWS, Cloud Scheduler -> Pub/Sub on GCP, a timer locally.
    The event id is derived from (schedule, slot), so a schedule that fires twice for the
    same slot (the platforms promise at-least-once) has one effect downstream.
    """

    name: str
    cron: str
    emits: str
    data: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __init__(self, name: str, cron: str, emits: str, data: Mapping[str, Any] = FACTORY,
                 description: str = "") -> None:
        _set(self, "name", name)
        _set(self, "cron", cron)
        _set(self, "emits", emits)
        _set(self, "data", {} if data is FACTORY else data)
        _set(self, "description", description)


@valueclass
class Step:
    """A saga step: its action, the compensation that undoes it, and their retries."""

    name: str
    action: StepAction
    compensate: StepAction | None = None
    retry: Retry = field(default_factory=Retry)
    compensate_retry: Retry = field(default_factory=lambda: Retry(5, 1.0, 2.0))
    #: Tables the step (and its compensation) writes or reads, a subset of the saga's
    #: `stores`. A cloud whose store grants stop at a database (Firestore) keeps each
    #: step's idempotency record with these tables, so its writes and its record commit
    #: in one transaction.
    stores: tuple[str, ...] = ()

    def __init__(self, name: str, action: StepAction, compensate: StepAction | None = None,
                 retry: Retry = FACTORY, compensate_retry: Retry = FACTORY,
                 stores: tuple[str, ...] = ()) -> None:
        _set(self, "name", name)
        _set(self, "action", action)
        _set(self, "compensate", compensate)
        _set(self, "retry", Retry() if retry is FACTORY else retry)
        _set(self, "compensate_retry",
             Retry(5, 1.0, 2.0) if compensate_retry is FACTORY else compensate_retry)
        _set(self, "stores", stores)


@valueclass
class Saga:
    """Forward steps, each with an optional compensation; a failure at step k runs the
    compensations of steps k-1..1 in reverse. `on_success` runs after the last step;
    `on_failure` after the last compensation (it records the outcome, e.g. cancels)."""

    name: str
    steps: tuple[Step, ...]
    on_success: Step | None = None
    on_failure: Step | None = None
    stores: tuple[str, ...] = ()
    emits: tuple[str, ...] = ()

    def __init__(self, name: str, steps: tuple[Step, ...], on_success: Step | None = None,
                 on_failure: Step | None = None, stores: tuple[str, ...] = (),
                 emits: tuple[str, ...] = ()) -> None:
        _set(self, "name", name)
        _set(self, "steps", steps)
        _set(self, "on_success", on_success)
        _set(self, "on_failure", on_failure)
        _set(self, "stores", stores)
        _set(self, "emits", emits)

    def all_steps(self) -> tuple[Step, ...]:
        """Forward steps in order, then `on_success` (what runs when nothing fails)."""
        return self.steps + ((self.on_success,) if self.on_success else ())

    def step(self, name: str) -> Step:
        for step in self.all_steps() + ((self.on_failure,) if self.on_failure else ()):
            if step.name == name:
                return step
        raise ValidationError(f"saga '{self.name}' has no step '{name}'")


@valueclass
class App:
    """The whole description: catalog, consumers, saga, tables and event sources; checked
    as a whole when made."""

    name: str
    catalog: Catalog
    consumers: tuple[Consumer, ...]
    saga: Saga
    tables: tuple[str, ...]
    buckets: tuple[Bucket, ...] = ()
    schedules: tuple[Schedule, ...] = ()

    def __init__(self, name: str, catalog: Catalog, consumers: tuple[Consumer, ...],
                 saga: Saga, tables: tuple[str, ...], buckets: tuple[Bucket, ...] = (),
                 schedules: tuple[Schedule, ...] = ()) -> None:
        _set(self, "name", name)
        _set(self, "catalog", catalog)
        _set(self, "consumers", consumers)
        _set(self, "saga", saga)
        _set(self, "tables", tables)
        _set(self, "buckets", buckets)
        _set(self, "schedules", schedules)
        self._check()

    def _check(self) -> None:
        problems: list[str] = []
        problems.extend(self._source_problems())
        names = [c.name for c in self.consumers]
        if len(set(names)) != len(names):
            problems.append("consumer names must be unique")
        for consumer in self.consumers:
            if not _NAME.match(consumer.name):
                problems.append(f"consumer name '{consumer.name}' must match {_NAME.pattern}")
            for type_ in consumer.consumes + consumer.emits:
                if self.catalog.get(type_) is None:
                    problems.append(f"consumer '{consumer.name}' names unknown type '{type_}'")
            for table in consumer.scans:
                if table not in consumer.stores:
                    problems.append(f"consumer '{consumer.name}' scans '{table}', which is "
                                    "not in its stores")
            for table in consumer.stores:
                if table not in self.tables:
                    problems.append(f"consumer '{consumer.name}' names unknown table '{table}'")
            # The SQS event source's limit for standard queues (1-10000): the widest any
            # platform accepts, so the description is valid wherever it is deployed.
            if consumer.batch_size is not None and not 1 <= consumer.batch_size <= 10000:
                problems.append(f"consumer '{consumer.name}': batch_size must be 1-10000, "
                                f"got {consumer.batch_size}")
            if consumer.starts_saga and SAGAS not in self.tables:
                problems.append(f"consumer '{consumer.name}' starts sagas: the app needs the "
                                f"'{SAGAS}' table")
        for table in self.saga.stores:
            if table not in self.tables:
                problems.append(f"saga '{self.saga.name}' names unknown table '{table}'")
        for step in self.saga.all_steps() + ((self.saga.on_failure,)
                                              if self.saga.on_failure else ()):
            for table in step.stores:
                if table not in self.saga.stores:
                    problems.append(f"saga step '{step.name}' names table '{table}', which "
                                    f"is not in the saga's stores")
        if problems:
            raise ValueError("invalid app description: " + "; ".join(problems))

    def _source_problems(self) -> list[str]:
        """Buckets and schedules: names unique and valid, every reference resolvable."""
        from handlers.core.schedule import cron_problems

        problems: list[str] = []
        bucket_names = [b.name for b in self.buckets]
        if len(set(bucket_names)) != len(bucket_names):
            problems.append("bucket names must be unique")
        if sum(b.claim_check for b in self.buckets) > 1:
            problems.append("at most one bucket may be the claim-check bucket")
        for bucket in self.buckets:
            if not _NAME.match(bucket.name):
                problems.append(f"bucket name '{bucket.name}' must match {_NAME.pattern}")
            if bucket.expire_days is not None and bucket.expire_days < 1:
                problems.append(f"bucket '{bucket.name}': expire_days must be >= 1")
            if bucket.claim_check and bucket.expire_days is None:
                problems.append(f"claim-check bucket '{bucket.name}' needs expire_days "
                                "(claimed payloads must not live forever)")
        for consumer in self.consumers:
            for name in consumer.buckets:
                if name not in bucket_names:
                    problems.append(f"consumer '{consumer.name}' names unknown bucket '{name}'")
        schedule_names = [s.name for s in self.schedules]
        if len(set(schedule_names)) != len(schedule_names):
            problems.append("schedule names must be unique")
        for schedule in self.schedules:
            if not _NAME.match(schedule.name):
                problems.append(f"schedule name '{schedule.name}' must match {_NAME.pattern}")
            if self.catalog.get(schedule.emits) is None:
                problems.append(f"schedule '{schedule.name}' emits unknown type "
                                f"'{schedule.emits}'")
            problems.extend(f"schedule '{schedule.name}': {p}"
                            for p in cron_problems(schedule.cron))
        return problems

    def bucket(self, name: str) -> Bucket:
        for bucket in self.buckets:
            if bucket.name == name:
                return bucket
        raise KeyError(f"no bucket named '{name}' (have: "
                       f"{', '.join(b.name for b in self.buckets) or 'none'})")

    def claim_check_bucket(self) -> Bucket | None:
        return next((b for b in self.buckets if b.claim_check), None)

    def bucket_access(self, consumer: Consumer) -> tuple[list[str], list[str]]:
        """(read, write) buckets of a consumer, what each cloud grants: what it declares
        plus the claim-check bucket (read: any event it consumes may be claim-checked;
        write: only if it publishes)."""
        claims = self.claim_check_bucket()
        read = sorted({*consumer.buckets, *([claims.name] if claims else [])})
        write = [claims.name] if claims and consumer.emits else []
        return read, write

    def consumer(self, name: str) -> Consumer:
        for consumer in self.consumers:
            if consumer.name == name:
                return consumer
        raise KeyError(f"no consumer named '{name}' (have: {', '.join(self.consumer_names())})")

    def consumer_names(self) -> list[str]:
        return [c.name for c in self.consumers]

    def routes(self, type_: str) -> list[Consumer]:
        """The consumers an event of this type is delivered to (fan-out when several)."""
        return [c for c in self.consumers if type_ in c.consumes]


#: Environment variable naming the app a runtime hosts, as "module:attribute".
APP_ENV: Final = "SWITCHYARD_APP"
DEFAULT_APP: Final = "handlers.app:APP"


def load_app(spec: str | None = None) -> App:
    """The app named by `spec`, else by $SWITCHYARD_APP, else the order system.

    Runtimes (local, Lambda, Cloud Functions) load their app through this, so the same
    entry points can host another app description — or a test's variant with a fault
    injected — without a code change.
    """
    import importlib
    import os

    spec = spec or os.environ.get(APP_ENV) or DEFAULT_APP
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{APP_ENV} must look like 'package.module:ATTRIBUTE', got {spec!r}")
    app = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(app, App):
        raise ValueError(f"{spec!r} does not name an App (got {type(app).__name__})")
    return app
