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
