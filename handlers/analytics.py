"""Data transformer: order events reshaped into flat analytics records.

Downstream systems (a warehouse loader, a BI feed) want one row per order fact with
stable columns, not the nested, evolving order events. This consumer maps each order
event to an `Order Recorded` event and forwards it; events are immutable, so the record
is a new event with a new id (derived by the engine from this consumer's idempotency
key, so a redelivery re-publishes the same id and downstream drops it).
"""

from __future__ import annotations

from typing import Any, Final

from handlers.catalog import (
    ANALYTICS_ORDER_RECORDED,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_CREATED,
)
from handlers.core.context import Context
from handlers.money import to_cents

_STATUS: Final = {ORDER_CREATED: "created", ORDER_COMPLETED: "completed",
                  ORDER_CANCELLED: "cancelled"}


def flatten(event_type: str, data: dict[str, Any], event_id: str,
            time: str | None) -> dict[str, Any]:
    """The analytics record of one order event (pure: the mapping is the contract)."""
    status = _STATUS[event_type]
    items = data.get("items")
    total = data.get("total")
    return {
        "record_id": f"{data['order_id']}:{status}",
        "order_id": data["order_id"],
        "status": status,
        "customer_id": data.get("customer_id"),
        "total_cents": to_cents(total) if total is not None else None,
        "item_count": sum(int(i["quantity"]) for i in items) if items else None,
        "reason": data.get("reason"),
        "occurred_at": data.get("timestamp") or time,
        "source_event_id": event_id,
    }


def on_order_for_analytics(ctx: Context) -> None:
    event = ctx.event
    record = flatten(event.type, dict(event.data), event.id, event.time)
    ctx.emit(ANALYTICS_ORDER_RECORDED, record, subject=record["order_id"])
