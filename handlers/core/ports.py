"""Ports: the narrow interfaces handlers use to touch the world.

Each backend implements them (SQLite locally, DynamoDB/EventBridge/SNS/Step Functions on
AWS, Firestore/Pub/Sub/Workflows on GCP); `tests/` has in-memory fakes. Store writes are
described as data (`Put`, `Update`) so a backend can apply several atomically: a handler's
effects and its idempotency record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import field
from datetime import datetime
from typing import Any, Final, Protocol

from handlers.core.events import Event
from handlers.core.values import FACTORY, valueclass

Item = Mapping[str, Any]

#: The saga-start registry: one record per saga id, never expiring, so a saga starts once
#: per order however late a duplicate trigger arrives (execution names alone are only
#: unique for a while: 90 days after close on Step Functions).
SAGAS: Final = "sagas"


_set: Final = object.__setattr__


@valueclass
class Put:
    """Write a whole item; with `if_absent`, only if no item has that key."""

    table: str
    key: str
    item: Item
    if_absent: bool = True

    def __init__(self, table: str, key: str, item: Item, if_absent: bool = True) -> None:
        _set(self, "table", table)
        _set(self, "key", key)
        _set(self, "item", item)
        _set(self, "if_absent", if_absent)


@valueclass
class Update:
    """Change fields of an item, under conditions checked atomically.

    `set` assigns fields; `add` increments numeric fields (a missing field counts as 0);
    `expect` requires fields to equal the given values (None: field absent);
    `require_min` requires numeric fields to be >= the given values before the change;
    `must_exist` refuses to create the item when it is missing.
    """

    table: str
    key: str
    set: Item = field(default_factory=dict)
    add: Mapping[str, int] = field(default_factory=dict)
    expect: Item = field(default_factory=dict)
    require_min: Mapping[str, int] = field(default_factory=dict)
    must_exist: bool = False

    def __init__(self, table: str, key: str, set: Item = FACTORY, add: Mapping[str, int] = FACTORY,
                 expect: Item = FACTORY, require_min: Mapping[str, int] = FACTORY,
                 must_exist: bool = False) -> None:
        _set(self, "table", table)
        _set(self, "key", key)
        _set(self, "set", {} if set is FACTORY else set)
        _set(self, "add", {} if add is FACTORY else add)
        _set(self, "expect", {} if expect is FACTORY else expect)
        _set(self, "require_min", {} if require_min is FACTORY else require_min)
        _set(self, "must_exist", must_exist)


Op = Put | Update


class Store(Protocol):
    """Key-value tables with conditional, transactional writes."""

    def get(self, table: str, key: str) -> dict[str, Any] | None: ...

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of a table (audits and reports; never on a per-event path)."""
        ...

    def transact(self, ops: Sequence[Op]) -> bool:
        """Apply every op or none; False when any condition does not hold."""
        ...

    def put_if_absent(self, table: str, key: str, item: Item) -> bool: ...


class Publisher(Protocol):
    def publish(self, events: Sequence[Event]) -> None:
        """Publish all events or raise TransientError; implementations resend only the
        entries that failed, so a retry never duplicates what was accepted."""
        ...


class Notifier(Protocol):
    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        """Deliver a notification; `notification_id` lets receivers drop duplicates."""
        ...


class SagaStarter(Protocol):
    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        """Start one execution of the app's saga; False if `saga_id` already started."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class BlobStore(Protocol):
    """Objects in named buckets (the app's logical names: `uploads`, `claims`).

    The local runtime keeps them as files, AWS in S3, GCP in Cloud Storage. Keys are
    relative paths without `..`; a missing object is a `BlobMissing` (permanent: waiting
    will not make it appear, it was never written or its lifecycle rule expired it).
    """

    def read(self, bucket: str, key: str) -> bytes: ...

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...


class PaymentGateway(Protocol):
    def charge(self, key: str, order_id: str, amount_cents: int) -> Mapping[str, Any]:
        """Charge once per `key` (a retry returns the first result); raises StepFailed
        with reason `payment_declined` when declined."""
        ...

    def refund(self, key: str, charge_id: str) -> Mapping[str, Any]: ...

    def find_charge(self, key: str) -> Mapping[str, Any] | None:
        """The successful charge made under `key`, if any (for compensations)."""
        ...


@valueclass(frozen=False)
class Ports:
    """Everything a handler may use. Built once per process by a composition root."""

    # Slots: a misspelt port is an error, not a new attribute (the defaults are __init__'s).
    __slots__ = ("store", "publisher", "notifier", "sagas", "clock", "payments", "blobs",
                 "atomic")

    store: Store
    publisher: Publisher
    notifier: Notifier
    sagas: SagaStarter
    clock: Clock
    payments: PaymentGateway
    #: Object storage, for consumers that declare buckets and for claim checks; None on
    #: backends (or tests) that were built without any.
    blobs: BlobStore | None
    #: A transaction that can hold a handler's writes and its effects together (the local
    #: runtime: one database), so the record is written as done with them. None on the
    #: clouds: there the effects follow the commit and are marked done in a second write.
    atomic: Callable[[], AbstractContextManager[Any]] | None

    def __init__(self, store: Store, publisher: Publisher, notifier: Notifier,
                 sagas: SagaStarter, clock: Clock, payments: PaymentGateway,
                 blobs: BlobStore | None = None,
                 atomic: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.notifier = notifier
        self.sagas = sagas
        self.clock = clock
        self.payments = payments
        self.blobs = blobs
        self.atomic = atomic


def apply_op(current: Mapping[str, Any] | None, op: Op) -> dict[str, Any] | None:
    """The item after `op`, or None when a condition fails.

    Stores that read-then-write inside a transaction (SQLite, Firestore, in-memory) share
    this so every backend means the same thing by each condition; DynamoDB expresses the
    same conditions natively.
    """
    if isinstance(op, Put):
        if op.if_absent and current is not None:
            return None
        return dict(op.item)
    if current is None and op.must_exist:
        return None
    item = dict(current or {})
    for name, value in op.expect.items():
        if item.get(name) != value:
            return None
    for name, minimum in op.require_min.items():
        if item.get(name, 0) < minimum:
            return None
    item.update(op.set)
    for name, delta in op.add.items():
        item[name] = item.get(name, 0) + delta
    return item
