"""Builders for events and order data shared by the test suites."""

from __future__ import annotations

from typing import Any

from handlers.catalog import INVENTORY_UPDATED, ORDER_CREATED, WORKFLOW_TRIGGERED
from handlers.core.events import Event


def order_data(order_id: str, items: list[tuple[str, int, float]], customer: str = "c1",
               total: float | None = None) -> dict[str, Any]:
    return {
        "order_id": order_id, "customer_id": customer,
        "items": [{"item_id": i, "quantity": q, "price": p} for i, q, p in items],
        "total": round(sum(q * p for _, q, p in items), 2) if total is None else total,
        "timestamp": "2026-11-22T09:00:00Z",
    }


def order_created(order_id: str, items: list[tuple[str, int, float]], **kw: Any) -> Event:
    return Event.new("orders", ORDER_CREATED, order_data(order_id, items, **kw))


def restock(item_id: str, quantity: int) -> Event:
    return Event.new("inventory", INVENTORY_UPDATED,
                     {"item_id": item_id, "quantity": quantity, "action": "restock"})


def workflow_triggered(order_id: str) -> Event:
    return Event.new("workflow", WORKFLOW_TRIGGERED,
                     {"workflow_id": f"wf-{order_id}", "order_id": order_id})


def not_yet_known_until(monkeypatch: Any, succeed_on: int | None) -> list[str]:
    """Make the cloud entries' `handle` (through `adapters.soon`) raise NotYetKnown until
    call `succeed_on` (1-based; None: always), with no pause before the in-invocation
    retry; returns the ids of the events it was called with, in order."""
    from adapters import soon
    from handlers.core.engine import Outcome
    from handlers.core.errors import NotYetKnown

    calls: list[str] = []

    def handle(app: Any, consumer: str, event: Any, ports: Any, **labels: Any) -> Outcome:
        calls.append(event.id)
        if succeed_on is None or len(calls) < succeed_on:
            raise NotYetKnown(f"order of {event.id} not known yet")
        return Outcome("processed", consumer, event.id)

    monkeypatch.setattr(soon, "handle", handle)
    monkeypatch.setattr(soon, "SOON_S", 0.0)
    return calls
