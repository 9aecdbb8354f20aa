"""Order processor: stores orders as `pending` and starts one saga per order."""

from __future__ import annotations

from typing import Any

from handlers.catalog import ORDER_CREATED
from handlers.core.context import Context
from handlers.core.errors import ConflictError, NotYetKnown
from handlers.money import to_cents

ORDERS = "orders"


def saga_id_for(order_id: str) -> str:
    return f"order-{order_id}"


def on_order_event(ctx: Context) -> None:
    if ctx.event.type == ORDER_CREATED:
        _create(ctx)
    else:  # Workflow Triggered
        _trigger(ctx)


def _order_from(data: dict[str, Any]) -> dict[str, Any]:
    items = [
        {"item_id": i["item_id"], "quantity": int(i["quantity"]),
         "price_cents": to_cents(i["price"])}
        for i in data["items"]
    ]
    return {
        "order_id": data["order_id"],
        "customer_id": data["customer_id"],
        "items": items,
        "total_cents": to_cents(data["total"]),
        "placed_at": data.get("timestamp"),
    }


def _create(ctx: Context) -> None:
    order = _order_from(ctx.event.data)
    order_id = order["order_id"]
    existing = ctx.get(ORDERS, order_id)
    if existing is not None:
        # Idempotent on order_id too: the same order sent again (a new event id, as a
        # second PutEvents would give) is a no-op; a different order under that id is not.
        same = {k: existing.get(k) for k in order} == order
        if not same:
            raise ConflictError(f"order '{order_id}' already exists with different content")
        return
    ctx.put_if_absent(ORDERS, order_id, {
        **order, "status": "pending", "reason": None, "created_at": ctx.now_iso(),
        "created_by": ctx.event.id,
    })
    ctx.start_saga(saga_id_for(order_id), {"order_id": order_id})


def _trigger(ctx: Context) -> None:
    order_id = ctx.event.data["order_id"]
    if ctx.get(ORDERS, order_id) is None:
        # Order is never assumed: the trigger may overtake the Order Created event.
        raise NotYetKnown(f"order '{order_id}' is not known yet; retrying")
    ctx.start_saga(saga_id_for(order_id), {"order_id": order_id})
