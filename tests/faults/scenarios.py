"""Hypothesis strategies for whole workloads and the fault schedules run against them.

A scenario is what producers send (restocks and removals, orders that complete, are
declined or run out of stock, workflow triggers, notifications, poison) with the
at-least-once mess of a real bus layered on top: the same event delivered again, the same
order re-sent under a new event id, everything shuffled (a trigger before its order,
restocks after the orders that need them) and cut into batches, with the workers running
for a while between batches so new events land on half-finished work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from handlers.catalog import INVENTORY_UPDATED, NOTIFICATION_SENT, ORDER_CREATED
from handlers.core.events import Event
from tests.factories import order_data, restock, workflow_triggered
from tests.faults.injection import SEAMS, Fault

ITEMS = ("A", "B", "C")
#: "Z" is never restocked: an order for it runs out of stock. Repeats weight the draw so
#: that most orders can complete and every outcome still shows up often.
ORDER_ITEMS = (*ITEMS, *ITEMS, "Z")
#: 600.00 twice is over the 1000.00 decline limit; the rest stays under it.
PRICES = (5.0, 5.0, 20.0, 20.0, 150.0, 600.0)
#: How many calls a seam sees in a typical scenario: a fault past that would never fire.
CALLS_PER_SEAM = {"store.get": 90, "store.transact": 90, "publisher.publish": 20,
                  "notifier.notify": 6, "sagas.start": 8, "payments.charge": 6,
                  "payments.refund": 3, "db.write": 160}


@dataclass(frozen=True, slots=True)
class Scenario:
    batches: tuple[tuple[Event, ...], ...]
    work_between: tuple[int, ...]  # work_once calls after each batch
    faults: tuple[Fault, ...]

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    def describe(self) -> str:
        def one(e: Event) -> str:
            data: Any = e.data
            key = data.get("order_id") or data.get("item_id") if isinstance(data, dict) else ""
            return f"{e.type.rsplit('.', 2)[-2]}.{e.type.rsplit('.', 1)[-1]}({key}) {e.id[:8]}"
        lines = [f"batch {n} (+{w} steps): " + ", ".join(one(e) for e in b)
                 for n, (b, w) in enumerate(zip(self.batches, self.work_between, strict=True))]
        return "\n".join([*lines, f"faults: {list(self.faults)}"])


def _remove(item_id: str, quantity: int) -> Event:
    return Event.new("inventory", INVENTORY_UPDATED,
                     {"item_id": item_id, "quantity": quantity, "action": "remove"})


def _notification(n: int) -> Event:
    return Event.new("notifications", NOTIFICATION_SENT,
                     {"recipient": f"ops{n}", "channel": "log", "message": f"hello {n}"})


@st.composite
def _orders(draw: st.DrawFn, n: int) -> list[Event]:
    """One order's events: created, maybe re-sent, maybe triggered, maybe duplicated."""
    lines = draw(st.lists(st.tuples(st.sampled_from(ORDER_ITEMS), st.integers(1, 4),
                                    st.sampled_from(PRICES)),
                          min_size=1, max_size=2, unique_by=lambda line: line[0]))
    order_id = f"o{n}"
    data = order_data(order_id, lines, customer=f"c{n % 3}")
    created = Event.new("orders", ORDER_CREATED, data)
    out = [created]
    if draw(st.booleans()):  # a second PutEvents of the same order: new event id
        out.append(Event.new("orders", ORDER_CREATED, data))
    if draw(st.booleans()):
        trigger = workflow_triggered(order_id)
        out.append(trigger)
        out += [trigger] * draw(st.integers(0, 1))
    out += [created] * draw(st.integers(0, 2))  # the bus delivers it again
    if draw(st.integers(0, 9)) == 0:  # same order id, different content: a conflict
        out.append(Event.new("orders", ORDER_CREATED, {**data, "total": data["total"] + 1}))
    return out


@st.composite
def _workload(draw: st.DrawFn, max_orders: int) -> list[Event]:
    events: list[Event] = []
    for item, qty in draw(st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(2, 12)),
                                   min_size=1, max_size=5)):
        stock = restock(item, qty)
        events += [stock] * draw(st.integers(1, 2))
    for item, qty in draw(st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(1, 3)),
                                   max_size=1)):
        events.append(_remove(item, qty))  # may find too little: dead-lettered, reason
    for n in range(draw(st.integers(1, max_orders))):
        events += draw(_orders(n))
    events += [_notification(n) for n in range(draw(st.integers(0, 2)))]
    if draw(st.integers(0, 4)) == 0:  # poison: a trigger for an order that never comes
        events.append(workflow_triggered("never-created"))
    if draw(st.integers(0, 4)) == 0:  # poison: data that breaks its schema
        events.append(Event.new("orders", ORDER_CREATED, {"order_id": "bad"}))
    return events


@st.composite
def _fault(draw: st.DrawFn) -> Fault:
    seam = draw(st.sampled_from(sorted(SEAMS)))
    return Fault(seam, draw(st.integers(0, CALLS_PER_SEAM[seam] - 1)),
                 draw(st.sampled_from(["before", "after"])),
                 draw(st.sampled_from(["transient", "kill"])))


def faults(max_faults: int = 6) -> st.SearchStrategy[list[Fault]]:
    return st.lists(_fault(), min_size=1, max_size=max_faults,
                    unique_by=lambda f: (f.seam, f.call))


@st.composite
def scenarios(draw: st.DrawFn, max_orders: int = 6, max_faults: int = 6) -> Scenario:
    events = draw(st.permutations(draw(_workload(max_orders))))
    cuts = sorted(draw(st.sets(st.integers(1, max(len(events) - 1, 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(events)], len(events)]
    batches = tuple(tuple(events[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)
                    if b > a)
    work = tuple(draw(st.integers(0, 15)) for _ in batches)
    return Scenario(batches, work, tuple(draw(faults(max_faults))))
