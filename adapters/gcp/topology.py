"""The GCP shape of an app, as plain data: every name and delivery setting, no SDK.

`infra/gcp` turns a `Topology` into Pulumi resources, and the emulator tests create
their topics and subscriptions from the very same `Topology` (through
`subscription_request`), so what the tests prove about routing, dead-lettering and
retries is what the stack deploys. Nothing here imports pulumi or google.*.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from adapters.gcp import settings as env
from handlers.core.app import App, Consumer
from handlers.core.engine import PROCESSED
from handlers.core.ports import SAGAS

#: Pub/Sub accepts a dead_letter_policy's max_delivery_attempts only in this range.
MIN_DELIVERIES: Final = 5
MAX_DELIVERIES: Final = 100
#: Pub/Sub's push ack deadline ceiling.
MAX_ACK_DEADLINE_S: Final = 600
#: Time Pub/Sub waits beyond the function timeout before it counts a push as failed: a
#: deadline shorter than the function timeout would redeliver work still in progress.
ACK_MARGIN_S: Final = 10
#: Exponential backoff between redeliveries of a nacked push (Pub/Sub retry_policy).
MIN_BACKOFF_S: Final = 10
MAX_BACKOFF_S: Final = 600
#: Dead letters are kept as long as Pub/Sub allows, to give time to redrive: 7 days on
#: the pull subscription (its maximum), 31 days on the topic (so a seek can bring back
#: what was acked by mistake).
DEAD_LETTER_RETENTION_S: Final = 7 * 86400
DEAD_LETTER_TOPIC_RETENTION_S: Final = 31 * 86400
#: Service account ids: 6-30 characters.
_ACCOUNT_ID_MAX: Final = 30
#: The attribute the Pub/Sub CloudEvents binding puts the event type in.
TYPE_ATTRIBUTE: Final = "ce-type"
#: Firestore database ids: 4-63 characters (lowercase letters, digits, hyphens).
_DATABASE_ID_MAX: Final = 63
#: Cloud Functions entry points (targets) exported by the zip's main.py.
CONSUMER_ENTRY: Final = "consume"
SAGA_ENTRY: Final = "saga_step"
INGRESS_ENTRY: Final = "ingest"


def account_id(prefix: str, role: str) -> str:
    """A service-account id for `role`, shortened with a hash when over 30 characters.

    The hash keeps two long roles that share a truncated prefix distinct.
    """
    full = f"{prefix}-{role}"
    if len(full) <= _ACCOUNT_ID_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[:_ACCOUNT_ID_MAX - 7].rstrip('-')}-{digest}"


def type_filter(types: Iterable[str]) -> str:
    """A subscription filter matching any of `types` on the `ce-type` attribute (ORed)."""
    quoted = [_quote(t) for t in sorted(set(types))]
    if not quoted:
        raise ValueError("a consumer must consume at least one type")
    return " OR ".join(f"attributes.{TYPE_ATTRIBUTE} = {q}" for q in quoted)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ack_deadline(timeout_s: int) -> int:
    """Push ack deadline: at least the function timeout (plus a margin), at most 600 s."""
    return min(MAX_ACK_DEADLINE_S, timeout_s + ACK_MARGIN_S)


@dataclass(frozen=True, slots=True)
class FunctionData:
    """Where one function's data lives: what it opens, and where its idempotency records go.

    `home` keeps the records of a consumer (and of saga steps that declare no tables);
    `tables` maps every table the function touches to its database; `steps` maps each saga
    step that declares tables to the database holding them (the step's record goes there).
    """

    home: str
    tables: Mapping[str, str]
    steps: Mapping[str, str]

    @property
    def databases(self) -> tuple[str, ...]:
        """Every database this function may read and write, and nothing else."""
        return tuple(sorted({self.home, *self.tables.values(), *self.steps.values()}))

    def environment(self) -> dict[str, str]:
        """The function's SWITCHYARD_DATABASE / _TABLE_DATABASES / _STEP_DATABASES
        (adapters.gcp.settings), as the stack sets them and the emulator tests do."""
        def compact(mapping: Mapping[str, str]) -> str:
            return json.dumps(dict(sorted(mapping.items())), separators=(",", ":"))
        out = {env.DATABASE: self.home, env.TABLE_DATABASES: compact(self.tables)}
        if self.steps:
            out[env.STEP_DATABASES] = compact(self.steps)
        return out


@dataclass(frozen=True, slots=True)
class DataLayout:
    """The app's tables split into Firestore databases, so that each function's grants can
    name only databases holding its own data.

    Firestore IAM stops at the database (a condition on the database's `resource.name`),
    and a transaction cannot span databases. The engine commits a handler's writes with
    its idempotency record in one transaction, so the tables one consumer (or one saga
    step) declares share a database with its records: tables are grouped by "declared
    together by one consumer or one step", and each group is a database. Each database
    has its own `processed` collection for the records of the functions whose home it is.
    A consumer that declares no table gets a database of its own for its records only.
    The saga-start registry (`sagas`) is written outside the handler's transaction, so
    it is a database of its own unless a consumer declares it.
    """

    databases: Mapping[str, tuple[str, ...]]  # database id -> the tables it holds
    consumers: Mapping[str, FunctionData]
    saga: FunctionData

    def table_databases(self) -> dict[str, str]:
        """Every table -> its database (what an operator's or a test's reader opens)."""
        return {t: db for db, tables in self.databases.items() for t in tables}

    def shared_beyond_declared(self) -> dict[str, tuple[str, ...]]:
        """Per function ("saga" for the steps): tables it can reach without declaring them
        (they share a database with tables it does declare). The price of the
        one-transaction rule; README.md lists them."""
        return {name: extra for name, extra in self._extras().items() if extra}

    def _extras(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for name, data in (*self.consumers.items(), ("saga", self.saga)):
            reachable = {t for db in data.databases for t in self.databases[db]}
            out[name] = tuple(sorted(reachable - set(data.tables)))
        return out


def database_id(prefix: str, name: str) -> str:
    """A Firestore database id for `name`: lowercase, hyphens for underscores, shortened
    with a hash when over 63 characters (like `account_id`)."""
    full = f"{prefix}-{name}".lower().replace("_", "-")
    if len(full) <= _DATABASE_ID_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[:_DATABASE_ID_MAX - 7].rstrip('-')}-{digest}"


def _consumer_tables(consumer: Consumer) -> tuple[str, ...]:
    return consumer.stores + ((SAGAS,) if consumer.starts_saga and
                              SAGAS not in consumer.stores else ())


def data_layout(app: App, prefix: str) -> DataLayout:
    """Split the app's tables into databases (see `DataLayout`)."""
    parent: dict[str, str] = {t: t for t in app.tables}

    def find(table: str) -> str:
        while parent[table] != table:
            parent[table] = parent[parent[table]]
            table = parent[table]
        return table

    def join(tables: Iterable[str]) -> None:
        first, *rest = list(tables) or [""]
        for other in rest:  # (nothing to join for one table or none)
            a, b = find(first), find(other)
            if a != b:  # the root is the table the app lists first: stable names
                keep, drop = sorted((a, b), key=app.tables.index)
                parent[drop] = keep

    for consumer in app.consumers:
        join(consumer.stores)
    steps = app.saga.all_steps() + ((app.saga.on_failure,) if app.saga.on_failure else ())
    for step in steps:
        join(step.stores)
    groups: dict[str, list[str]] = {}
    for table in app.tables:
        if table != PROCESSED:
            groups.setdefault(find(table), []).append(table)
    db_of = {t: database_id(prefix, root) for root, ts in groups.items() for t in ts}
    databases: dict[str, tuple[str, ...]] = {
        database_id(prefix, root): tuple(sorted(ts)) for root, ts in groups.items()}

    consumers: dict[str, FunctionData] = {}
    for consumer in app.consumers:
        tables = {t: db_of[t] for t in _consumer_tables(consumer)}
        if consumer.stores:
            home = db_of[consumer.stores[0]]
        else:
            home = database_id(prefix, f"{consumer.name}-records")
            if home in databases:
                raise ValueError(f"database id '{home}' of consumer '{consumer.name}' "
                                 "collides with a table's database")
            databases[home] = ()
        consumers[consumer.name] = FunctionData(home, tables, {})
    step_dbs = {s.name: db_of[s.stores[0]] for s in steps if s.stores}
    saga_tables = {t: db_of[t] for t in app.saga.stores}
    if app.saga.stores:
        saga_home = db_of[app.saga.stores[0]]
    else:
        saga_home = database_id(prefix, f"saga-{app.saga.name}-records")
        databases[saga_home] = ()
    return DataLayout(databases, consumers, FunctionData(saga_home, saga_tables, step_dbs))


@dataclass(frozen=True, slots=True)
class Route:
    """One consumer's delivery path: push subscription -> function, and its dead letters."""

    consumer: str
    function: str
    subscription: str
    filter: str
    dead_letter_topic: str
    dead_letter_subscription: str
    ack_deadline_seconds: int
    max_delivery_attempts: int
    minimum_backoff_s: int
    maximum_backoff_s: int
    account_id: str  # the function's own identity
    invoker_account_id: str  # the identity Pub/Sub pushes as (may invoke only this function)

    def dead_letter_policy(self, project: str) -> dict[str, Any]:
        return {"dead_letter_topic": topic_path(project, self.dead_letter_topic),
                "max_delivery_attempts": self.max_delivery_attempts}

    def retry_policy(self) -> dict[str, str]:
        return {"minimum_backoff": f"{self.minimum_backoff_s}s",
                "maximum_backoff": f"{self.maximum_backoff_s}s"}


@dataclass(frozen=True, slots=True)
class Topology:
    """Every GCP name and delivery setting of one stack, derived from the app alone."""

    prefix: str
    bus_topic: str
    notifications_topic: str
    routes: tuple[Route, ...]
    saga_function: str
    saga_account_id: str
    workflow: str
    workflow_account_id: str
    ingress_function: str
    ingress_account_id: str
    database: str
    message_retention_s: int

    def route(self, consumer: str) -> Route:
        for route in self.routes:
            if route.consumer == consumer:
                return route
        raise KeyError(f"no route for consumer '{consumer}'")


def topology(app: App, prefix: str, *, max_deliveries: int = MIN_DELIVERIES,
             timeout_s: int = 30, retention_days: int = 7,
             min_backoff_s: int = MIN_BACKOFF_S,
             max_backoff_s: int = MAX_BACKOFF_S) -> Topology:
    """The topology of `app` under `prefix`; raises ValueError naming every problem."""
    problems: list[str] = []
    if not MIN_DELIVERIES <= max_deliveries <= MAX_DELIVERIES:
        problems.append(f"max_deliveries must be between {MIN_DELIVERIES} and "
                        f"{MAX_DELIVERIES} (Pub/Sub dead_letter_policy), got {max_deliveries}")
    if not 0 <= min_backoff_s <= max_backoff_s <= MAX_BACKOFF_S:
        problems.append(f"backoff must satisfy 0 <= min <= max <= {MAX_BACKOFF_S}, got "
                        f"{min_backoff_s}..{max_backoff_s}")
    if timeout_s + ACK_MARGIN_S > MAX_ACK_DEADLINE_S:
        problems.append(f"timeout {timeout_s}s leaves no room under Pub/Sub's "
                        f"{MAX_ACK_DEADLINE_S}s ack deadline")
    if problems:
        raise ValueError("invalid GCP topology: " + "; ".join(problems))
    routes = tuple(
        Route(
            consumer=c.name,
            function=f"{prefix}-{c.name}",
            subscription=f"{prefix}-{c.name}",
            filter=type_filter(c.consumes),
            dead_letter_topic=f"{prefix}-{c.name}-dlq",
            dead_letter_subscription=f"{prefix}-{c.name}-dlq",
            ack_deadline_seconds=ack_deadline(timeout_s),
            max_delivery_attempts=max_deliveries,
            minimum_backoff_s=min_backoff_s,
            maximum_backoff_s=max_backoff_s,
            account_id=account_id(prefix, c.name),
            invoker_account_id=account_id(prefix, f"{c.name}-push"),
        )
        for c in app.consumers
    )
    saga = app.saga.name
    return Topology(
        prefix=prefix,
        bus_topic=f"{prefix}-events",
        notifications_topic=f"{prefix}-notifications",
        routes=routes,
        saga_function=f"{prefix}-saga-{saga}",
        saga_account_id=account_id(prefix, f"saga-{saga}"),
        workflow=f"{prefix}-saga-{saga}",
        workflow_account_id=account_id(prefix, f"wf-{saga}"),
        ingress_function=f"{prefix}-ingress",
        ingress_account_id=account_id(prefix, "ingress"),
        database=f"{prefix}-db",
        message_retention_s=retention_days * 86400,
    )


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    return f"projects/{project}/subscriptions/{subscription}"


def subscription_request(route: Route, project: str, bus_topic: str, push_endpoint: str,
                         *, invoker_email: str | None = None,
                         audience: str | None = None) -> dict[str, Any]:
    """The `CreateSubscription` request (google-cloud-pubsub dict form) for a route.

    Durations are "<n>s" strings, which the client's proto-plus marshal accepts.
    """
    push: dict[str, Any] = {"push_endpoint": push_endpoint}
    if invoker_email:
        push["oidc_token"] = {"service_account_email": invoker_email,
                              "audience": audience or push_endpoint}
    return {
        "name": subscription_path(project, route.subscription),
        "topic": topic_path(project, bus_topic),
        "filter": route.filter,
        "ack_deadline_seconds": route.ack_deadline_seconds,
        "push_config": push,
        "dead_letter_policy": route.dead_letter_policy(project),
        "retry_policy": route.retry_policy(),
    }


def dead_letter_subscription_request(route: Route, project: str) -> dict[str, Any]:
    """The pull subscription that keeps whatever lands on a dead-letter topic."""
    return {
        "name": subscription_path(project, route.dead_letter_subscription),
        "topic": topic_path(project, route.dead_letter_topic),
        "ack_deadline_seconds": 60,
        "message_retention_duration": f"{DEAD_LETTER_RETENTION_S}s",
        # Unset ttl = never expires: the default deletes a subscription after 31 idle
        # days, and an unwatched dead-letter subscription is idle by definition.
        "expiration_policy": {},
    }
