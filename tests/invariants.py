"""The order system's invariants, checked on a quiet system after any run.

One checker for every way the system is exercised (the randomised fault schedules, the
HTTP soak against a real `switchyard serve`, and the cross-backend contract suite): each
backend only has to produce a `Snapshot` of its stores; `snapshot_sqlite` does it for the
local runtime. The checker never trusts the runtime's own bookkeeping where a business fact
can be recomputed from first principles: stock is recomputed from the inventory events
whose idempotency records exist (the record commits atomically with the write) and from
the reservations recorded by the saga's steps; money from the payment provider's records.

What must hold once nothing is pending:

- every accepted event was processed once in effect by each consumer it is routed to
  (its `(consumer, source, id)` record is `done`), or it is in the DLQ with a reason;
- no order is non-terminal (`pending`); with `strict=False` a pending order is tolerated
  only when the DLQ holds the work that would finish it (it needs attention, not repair);
- one saga per order, in a state that agrees with the order's;
- stock per item is never negative, `available` equals restocks minus removals minus
  reservations held, `reserved` equals the reservations held, and the reservations held
  are exactly those of completed orders;
- each completed order was charged exactly once (its total) and not refunded; each
  cancelled order that was charged was refunded exactly once; no charge without an order;
- one notification per terminal order, one per processed `Notification Sent` event.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED, NOTIFICATION_SENT, ORDER_CREATED
from handlers.core import jsonformat
from handlers.core.app import App
from handlers.core.engine import dedupe_key, step_key
from handlers.core.events import Event
from handlers.orders import saga_id_for
from handlers.payments import DEFAULT_DECLINE_ABOVE_CENTS
from handlers.saga import PAYMENT_DECLINED_REASON

TERMINAL_ORDER = frozenset({"completed", "cancelled"})
_RESERVE = "reserve_inventory"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    consumer: str
    event_id: str
    reason: str
    body: Mapping[str, Any]  # the event (consumers) or the saga state (saga:*)


@dataclass(slots=True)
class Snapshot:
    """Everything the checker reads, taken from a backend once it is quiet."""

    orders: dict[str, dict[str, Any]]
    inventory: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]  # provider records, by idempotency key
    processed: dict[str, dict[str, Any]]  # idempotency records, by key
    sagas: dict[str, dict[str, Any]]  # saga id -> {"status", "state"}
    dead_letters: list[DeadLetter]  # not yet redriven
    notifications: list[dict[str, Any]]  # messages handed to the notifier
    pending: int  # deliveries still queued + sagas still active
    #: Every event the bus carried, emitted ones included, when the backend keeps a log.
    bus: list[Event] = field(default_factory=list)
    #: Inventory writes that left stock negative at any commit (None: not watched).
    negative_stock_writes: list[str] | None = None


@dataclass(slots=True)
class Report:
    violations: list[str] = field(default_factory=list)
    needs_attention: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def raise_if_violated(self) -> None:
        if self.violations:
            shown = "\n  ".join(self.violations[:40])
            more = len(self.violations) - 40
            raise AssertionError(f"{len(self.violations)} invariant violation(s):\n  {shown}"
                                 + (f"\n  ... and {more} more" if more > 0 else ""))


# snapshots ------------------------------------------------------------------------------

#: Test-only triggers on the local database: "never negative" is about every commit, not
#: just the end state, and a trigger sees every commit of every writer (workers and HTTP
#: threads of another process included) without touching production code.
STOCK_AUDIT = """
CREATE TABLE IF NOT EXISTS audit_negative_stock (item TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_negative_stock_insert AFTER INSERT ON items
WHEN NEW.tbl = 'inventory' AND (json_extract(NEW.doc, '$.available') < 0
                                OR json_extract(NEW.doc, '$.reserved') < 0)
BEGIN INSERT INTO audit_negative_stock VALUES (NEW.key, NEW.doc); END;
CREATE TRIGGER IF NOT EXISTS audit_negative_stock_update AFTER UPDATE ON items
WHEN NEW.tbl = 'inventory' AND (json_extract(NEW.doc, '$.available') < 0
                                OR json_extract(NEW.doc, '$.reserved') < 0)
BEGIN INSERT INTO audit_negative_stock VALUES (NEW.key, NEW.doc); END;
"""


def watch_stock(db: str | Path) -> None:
    """Install the negative-stock audit in a local database (created if needed)."""
    from adapters.local.database import Database

    database = Database(db)  # the runtime's own schema first: the triggers need `items`
    try:
        database.connection().executescript(STOCK_AUDIT)
    finally:
        database.close()


Reader = Callable[[str], list[tuple[Any, ...]]]


def snapshot_sqlite(db: str | Path | Reader, with_bus: bool = True) -> Snapshot:
    """Snapshot of the local runtime's database: a path (opened read-only) or a reader.

    Pass `runtime.db.read` as the reader to snapshot an open in-process runtime.
    """
    if callable(db):
        return _snapshot(db, with_bus)
    conn = sqlite3.connect(f"file:{Path(db)}?mode=ro", uri=True, timeout=30.0)
    try:
        return _snapshot(lambda sql: conn.execute(sql).fetchall(), with_bus)
    finally:
        conn.close()


def _snapshot(read: Reader, with_bus: bool) -> Snapshot:
    tables: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for table, key, doc in read("SELECT tbl, key, doc FROM items"):
        tables[table][key] = json.loads(doc)
    sagas = {saga_id: {"status": status, "state": json.loads(state)}
             for saga_id, status, state in read("SELECT saga_id, status, state FROM sagas")}
    dead = [DeadLetter(consumer, event_id or "", reason or "", json.loads(body))
            for consumer, event_id, reason, body in
            read("SELECT consumer, event_id, reason, body FROM dlq WHERE redriven_at IS NULL")]
    notes = [json.loads(m) for (m,) in read("SELECT message FROM notifications")]
    pending = int(read("SELECT (SELECT COUNT(*) FROM queue) + (SELECT COUNT(*) FROM sagas "
                       "WHERE status IN ('running', 'compensating'))")[0][0])
    audited = read("SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_negative_stock'")
    negative = ([f"{item}: {doc}" for item, doc in
                 read("SELECT item, doc FROM audit_negative_stock")]
                if audited[0][0] else None)
    bus: list[Event] = []
    if with_bus:
        seen: set[tuple[str, str]] = set()
        for source, id_, body in read("SELECT source, id, body FROM events ORDER BY seq"):
            if (source, id_) not in seen:
                seen.add((source, id_))
                bus.append(jsonformat.loads(body))
    return Snapshot(orders=tables["orders"], inventory=tables["inventory"],
                    payments=tables["payments"], processed=tables["processed"], sagas=sagas,
                    dead_letters=dead, notifications=notes, pending=pending, bus=bus,
                    negative_stock_writes=negative)


# the checker ----------------------------------------------------------------------------

def check(snapshot: Snapshot, accepted: Iterable[Event], *, app: App = APP,
          decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS,
          strict: bool = True) -> Report:
    """Check every invariant; `accepted` are the events the producers got a 2xx for."""
    return _Checker(snapshot, list(accepted), app, decline_above_cents, strict).run()


class _Checker:
    def __init__(self, snap: Snapshot, accepted: list[Event], app: App,
                 decline_above_cents: int, strict: bool) -> None:
        self.s, self.app, self.limit, self.strict = snap, app, decline_above_cents, strict
        self.accepted = accepted
        self.report = Report()
        self.dlq_keys = {(d.consumer, d.event_id) for d in snap.dead_letters}
        # Orders the DLQ holds unfinished work for: the pending ones are explained.
        self.dlq_orders: set[str] = set()
        for d in snap.dead_letters:
            data = d.body.get("data") if not d.consumer.startswith("saga:") else d.body.get(
                "input")
            if isinstance(data, Mapping) and isinstance(data.get("order_id"), str):
                self.dlq_orders.add(data["order_id"])
        # One candidate event per (source, id, fingerprint): a key reused for a different
        # payload is a conflict, and only the payload whose fingerprint the record holds
        # was applied.
        self.events: dict[tuple[str, str], list[Event]] = defaultdict(list)
        self.fingerprints: dict[tuple[str, str], set[str]] = defaultdict(set)
        for event in [*accepted, *snap.bus]:
            key, print_ = (event.source, event.id), jsonformat.fingerprint(event)
            if print_ not in self.fingerprints[key]:
                self.fingerprints[key].add(print_)
                self.events[key].append(event)

    def fail(self, message: str) -> None:
        self.report.violations.append(message)

    def attention(self, message: str) -> None:
        self.report.needs_attention.append(message)

    def run(self) -> Report:
        if self.s.pending:
            self.fail(f"not quiet: {self.s.pending} deliveries or sagas still pending")
        for d in self.s.dead_letters:
            if not d.reason.strip():
                self.fail(f"dead letter {d.consumer}/{d.event_id} has no reason")
        self._events_handled()
        settled = self._orders_and_sagas()
        self._stock(settled)
        self._payments(settled)
        self._notifications(settled)
        return self.report

    # every accepted event: processed once in effect, or in the DLQ --------------------
    def _events_handled(self) -> None:
        figures: Counter[str] = Counter()
        accepted_keys = {(e.source, e.id) for e in self.accepted}
        figures["accepted"] = len(accepted_keys)
        for (source, id_), candidates in self.events.items():
            event = candidates[0]
            mine = (source, id_) in accepted_keys
            for consumer in self.app.routes(event.type):
                record = self.s.processed.get(dedupe_key(consumer.name, event))
                if record is not None and record.get("status") == "done":
                    figures["processed"] += 1
                elif (consumer.name, id_) in self.dlq_keys:
                    figures["dead_lettered"] += 1
                elif record is not None:
                    self.fail(f"{consumer.name} committed {event.type} {source}/{id_} but "
                              "never finished its side effects, and it is not in the DLQ")
                elif mine:
                    figures["lost"] += 1
                    self.fail(f"lost: accepted {event.type} {source}/{id_} was neither "
                              f"processed by {consumer.name} nor dead-lettered")
                else:
                    self.fail(f"emitted {event.type} {source}/{id_} was neither processed "
                              f"by {consumer.name} nor dead-lettered")
        figures.setdefault("lost", 0)
        self.report.figures.update(figures)

    # orders and sagas -------------------------------------------------------------------
    def _orders_and_sagas(self) -> set[str]:
        """Check order/saga states; returns the orders whose outcome is settled."""
        settled: set[str] = set()
        creators = {id_ for (_, id_), group in self.events.items()
                    if group[0].type == ORDER_CREATED}
        statuses: Counter[str] = Counter()
        for order_id, order in self.s.orders.items():
            status = order.get("status")
            statuses[str(status)] += 1
            created_by = order.get("created_by")
            if created_by is not None and created_by not in creators:
                self.fail(f"order {order_id} was created by event {created_by!r}, "
                          "which was never accepted")
            saga = self.s.sagas.get(saga_id_for(order_id))
            if status in TERMINAL_ORDER:
                settled.add(order_id)
                if saga is None or saga["status"] != status:
                    self.fail(f"order {order_id} is {status} but its saga is "
                              f"{saga['status'] if saga else 'missing'}")
                if status == "completed" and order["total_cents"] > self.limit:
                    self.fail(f"order {order_id} completed with total {order['total_cents']}"
                              f" above the decline limit {self.limit}")
                if (order.get("reason") == PAYMENT_DECLINED_REASON
                        and order["total_cents"] <= self.limit):
                    self.fail(f"order {order_id} declined with total {order['total_cents']} "
                              f"within the limit {self.limit}")
                continue
            explained = order_id in self.dlq_orders
            if explained and not self.strict:
                self.attention(f"order {order_id} is {status}; the DLQ holds its work "
                               f"(saga {saga['status'] if saga else 'not started'})")
            else:
                self.fail(f"order {order_id} is still {status} once quiet (saga "
                          f"{saga['status'] if saga else 'not started'}"
                          f"{', DLQ holds its work' if explained else ''})")
        for saga_id, saga in self.s.sagas.items():
            order_id = str(saga["state"].get("input", {}).get("order_id"))
            if order_id not in self.s.orders:
                self.fail(f"saga {saga_id} runs for unknown order {order_id}")
            if saga["status"] == "failed" and (f"saga:{self.app.saga.name}",
                                               saga_id) not in self.dlq_keys:
                self.fail(f"saga {saga_id} failed but is not in the DLQ")
        self.report.figures.update({f"orders_{k}": v for k, v in statuses.items()})
        return settled

    # stock ------------------------------------------------------------------------------
    def _stock(self, settled: set[str]) -> None:
        delta: Counter[str] = Counter()
        for candidates in self.events.values():
            if candidates[0].type != INVENTORY_UPDATED:
                continue
            record = self.s.processed.get(dedupe_key("inventory", candidates[0]))
            if record is None:
                continue
            applied = [e for e in candidates
                       if jsonformat.fingerprint(e) == record.get("fingerprint")]
            if not applied:
                self.fail(f"inventory record for {candidates[0].id} matches no accepted "
                          "payload")
                continue
            data = applied[0].data
            sign = 1 if data["action"] == "restock" else -1
            delta[data["item_id"]] += sign * int(data["quantity"])
        held: Counter[str] = Counter()  # reservations recorded by steps, not released
        held_by_order: dict[str, Counter[str]] = {}
        for saga_id, saga in self.s.sagas.items():
            reserved = self._step_result(saga_id, _RESERVE, "action")
            if not reserved:
                continue
            if self._step_result(saga_id, _RESERVE, "compensate") is not None:
                continue
            mine: Counter[str] = Counter()
            for line in reserved.get("items", []):
                mine[line["item_id"]] += int(line["quantity"])
            held += mine
            held_by_order[str(saga["state"]["input"]["order_id"])] = mine
        completed: Counter[str] = Counter()
        for order in self.s.orders.values():
            if order.get("status") == "completed":
                for line in order["items"]:
                    completed[line["item_id"]] += int(line["quantity"])
        for order_id, mine in held_by_order.items():
            status = self.s.orders.get(order_id, {}).get("status")
            if status != "completed" and (order_id in settled or self.strict):
                self.fail(f"order {order_id} is {status} but still holds reservation "
                          f"{dict(mine)}")
        for write in (self.s.negative_stock_writes or [])[:10]:
            self.fail(f"stock went negative at a commit: {write}")
        items = set(self.s.inventory) | set(delta) | set(held) | set(completed)
        for item in sorted(items):
            doc = self.s.inventory.get(item, {})
            available, reserved = int(doc.get("available", 0)), int(doc.get("reserved", 0))
            if available < 0 or reserved < 0:
                self.fail(f"item {item}: negative stock (available {available}, "
                          f"reserved {reserved})")
            expected = delta[item] - held[item]
            if available != expected:
                self.fail(f"item {item}: available {available}, expected {expected} "
                          f"(= restocks-removals {delta[item]} - reservations held "
                          f"{held[item]})")
            if reserved != held[item]:
                self.fail(f"item {item}: reserved {reserved}, expected {held[item]}")
            if self.strict and held[item] != completed[item]:
                self.fail(f"item {item}: reservations held {held[item]} != quantity of "
                          f"completed orders {completed[item]}")
        self.report.figures["items"] = len(items)

    def _step_result(self, saga_id: str, step: str, phase: str) -> dict[str, Any] | None:
        record = self.s.processed.get(step_key(saga_id, step, phase))
        outcome = (record or {}).get("result") or {}
        return dict(outcome.get("result") or {}) if outcome.get("ok") else None

    # money ------------------------------------------------------------------------------
    def _payments(self, settled: set[str]) -> None:
        charges: dict[str, list[dict[str, Any]]] = defaultdict(list)
        refunds: Counter[str] = Counter()
        for key, record in self.s.payments.items():
            if record.get("kind") == "charge":
                charges[str(record["order_id"])].append(record)
                if str(record["order_id"]) not in self.s.orders:
                    self.fail(f"charge {key} for unknown order {record['order_id']}")
            elif record.get("kind") == "refund":
                refunds[str(record["charge_id"])] += 1
        charged_ids = {c["charge_id"] for group in charges.values() for c in group
                       if c["status"] == "charged"}
        for charge_id, n in refunds.items():
            if n > 1:
                self.fail(f"charge {charge_id} refunded {n} times")
            if charge_id not in charged_ids:
                self.fail(f"refund of {charge_id}, which was never charged")
        for order_id, group in charges.items():
            if len(group) > 1:
                self.fail(f"order {order_id} has {len(group)} charges")
        figures: Counter[str] = Counter()
        for order_id in settled:
            order = self.s.orders[order_id]
            charged = [c for c in charges.get(order_id, []) if c["status"] == "charged"]
            if order["status"] == "completed":
                figures["charged"] += 1
                if len(charged) != 1:
                    self.fail(f"completed order {order_id} has {len(charged)} successful "
                              "charges, expected exactly 1")
                elif charged[0]["amount_cents"] != order["total_cents"]:
                    self.fail(f"order {order_id} charged {charged[0]['amount_cents']}, "
                              f"total is {order['total_cents']}")
                elif refunds[charged[0]["charge_id"]]:
                    self.fail(f"completed order {order_id} was refunded")
            else:
                for charge in charged:
                    figures["refunded"] += 1
                    if refunds[charge["charge_id"]] != 1:
                        self.fail(f"cancelled order {order_id} was charged "
                                  f"({charge['charge_id']}) but refunded "
                                  f"{refunds[charge['charge_id']]} times")
        self.report.figures.update(figures)

    # notifications ----------------------------------------------------------------------
    def _notifications(self, settled: set[str]) -> None:
        # Order notifications carry the order_id; producers' own ones are matched by the
        # event that asked for them (the consumer adds `event_id`).
        per_order = Counter(str(n["order_id"]) for n in self.s.notifications
                            if n.get("order_id") in self.s.orders)
        for order_id in settled:
            if per_order[order_id] != 1:
                self.fail(f"terminal order {order_id} has {per_order[order_id]} "
                          "notifications, expected exactly 1")
        for order_id, n in per_order.items():
            if order_id not in settled and self.strict:
                self.fail(f"order {order_id} is not terminal but was notified {n} times")
        per_event = Counter(str(n.get("event_id")) for n in self.s.notifications)
        for (_, id_), candidates in self.events.items():
            event = candidates[0]
            if event.type != NOTIFICATION_SENT:
                continue
            record = self.s.processed.get(dedupe_key("notifications", event))
            done = record is not None and record.get("status") == "done"
            if done and per_event[id_] != 1:
                self.fail(f"notification event {id_} delivered {per_event[id_]} times, "
                          "expected exactly 1")
            if record is None and per_event[id_]:
                self.fail(f"notification event {id_} delivered without its record")
        self.report.figures["notifications"] = len(self.s.notifications)

