"""The order saga, declared once as data.

create order -> process payment -> reserve inventory -> ship, then complete. A failure at
step k runs the compensations of the completed steps in reverse (release inventory, refund
payment), then cancels the order with the reason (`on_failure`). The same definition is
executed in-process by the local runtime and compiled to Step Functions ASL (AWS) and Cloud
Workflows YAML (GCP).

Every step is idempotent under its key (saga id, step, phase), so a retry after a timeout
never charges or reserves twice. Compensations tolerate "nothing to undo": the executor
also runs the compensation of a step that failed with an exhausted transient error,
because such a step may have half-happened downstream (a charge whose reply was lost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from handlers.catalog import (
    INVENTORY_RELEASED,
    INVENTORY_RESERVED,
    NOTIFICATION_SENT,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_SHIPPED,
    PAYMENT_DECLINED,
    PAYMENT_PROCESSED,
    PAYMENT_REFUNDED,
)
from handlers.core.app import Retry, Saga, Step
from handlers.core.context import StepContext
from handlers.core.errors import NotYetKnown, StepFailed
from handlers.inventory import INVENTORY, available
from handlers.money import format_cents
from handlers.orders import ORDERS
from handlers.payments import PAYMENTS

OUT_OF_STOCK = "out_of_stock"
PAYMENT_DECLINED_REASON = "payment_declined"


def _order_id(ctx: StepContext) -> str:
    return str(ctx.state["input"]["order_id"])


def create_order(ctx: StepContext) -> Mapping[str, Any]:
    order = ctx.get(ORDERS, _order_id(ctx))
    if order is None:
        raise NotYetKnown(f"order '{_order_id(ctx)}' not found")
    if order["status"] != "pending":
        raise StepFailed("order_not_pending", f"order is already {order['status']}")
    return {k: order[k] for k in ("order_id", "customer_id", "items", "total_cents")}


def cancel_order(ctx: StepContext) -> Mapping[str, Any]:
    order_id = _order_id(ctx)
    order = ctx.get(ORDERS, order_id)
    if order is None or order["status"] != "pending":
        return {"cancelled": False}
    reason = str(ctx.state.get("reason") or "cancelled")
    detail = str(ctx.state.get("reason_detail") or "")
    ctx.update(ORDERS, order_id, set={"status": "cancelled", "reason": reason,
                                      "reason_detail": detail, "updated_at": ctx.now_iso()},
               expect={"status": "pending"})
    ctx.emit(ORDER_CANCELLED, {"order_id": order_id, "customer_id": order["customer_id"],
                               "reason": reason}, subject=order_id)
    ctx.emit(NOTIFICATION_SENT, {
        "recipient": order["customer_id"], "order_id": order_id, "channel": "email",
        "subject": f"Order {order_id} cancelled",
        "message": f"Your order {order_id} was cancelled: {reason}"
                   + (f" ({detail})." if detail else "."),
    }, subject=order_id)
    return {"cancelled": True}


def process_payment(ctx: StepContext) -> Mapping[str, Any]:
    order = ctx.result_of("create_order")
    order_id = _order_id(ctx)
    try:
        charge = ctx.payments.charge(ctx.idempotency_key, order_id,
                                           int(order["total_cents"]))
    except StepFailed as declined:
        ctx.emit(PAYMENT_DECLINED, {"order_id": order_id, "reason": declined.detail},
                 subject=order_id)
        raise
    ctx.emit(PAYMENT_PROCESSED, {"order_id": order_id, "charge_id": charge["charge_id"],
                                 "amount_cents": charge["amount_cents"]}, subject=order_id)
    return {"charge_id": charge["charge_id"], "amount_cents": charge["amount_cents"]}


def refund_payment(ctx: StepContext) -> Mapping[str, Any]:
    # Look the charge up at the provider, not in the saga state: the charge may have
    # happened even though the payment step never reported back.
    charge = ctx.payments.find_charge(f"{ctx.saga_id}:payment:action")
    if charge is None:
        return {"refunded": False}
    refund = ctx.payments.refund(ctx.idempotency_key, charge["charge_id"])
    ctx.emit(PAYMENT_REFUNDED, {"order_id": _order_id(ctx), "charge_id": charge["charge_id"]},
             subject=_order_id(ctx))
    return {"refunded": True, "refund_id": refund["refund_id"]}


def reserve_inventory(ctx: StepContext) -> Mapping[str, Any]:
    wanted = Counter[str]()
    for item in ctx.result_of("create_order")["items"]:
        wanted[item["item_id"]] += int(item["quantity"])
    short = [f"item '{item}': {qty} wanted, {available(ctx, item)} available"
             for item, qty in sorted(wanted.items()) if available(ctx, item) < qty]
    if short:
        raise StepFailed(OUT_OF_STOCK, "; ".join(short))
    # All items in one transaction with the step record: reserved together or not at all.
    for item, qty in sorted(wanted.items()):
        ctx.update(INVENTORY, item, add={"available": -qty, "reserved": qty},
                   require_min={"available": qty}, must_exist=True)
    reserved = [{"item_id": i, "quantity": q} for i, q in sorted(wanted.items())]
    ctx.emit(INVENTORY_RESERVED, {"order_id": _order_id(ctx), "items": reserved},
             subject=_order_id(ctx))
    return {"items": reserved}


def release_inventory(ctx: StepContext) -> Mapping[str, Any]:
    # Reservation commits atomically with its step record, so "no recorded result"
    # means nothing was reserved.
    reserved = ctx.result_of("reserve_inventory").get("items", [])
    for item in reserved:
        ctx.update(INVENTORY, item["item_id"],
                   add={"available": item["quantity"], "reserved": -item["quantity"]})
    if reserved:
        ctx.emit(INVENTORY_RELEASED, {"order_id": _order_id(ctx), "items": reserved},
                 subject=_order_id(ctx))
    return {"released": reserved}


def ship_order(ctx: StepContext) -> Mapping[str, Any]:
    order_id = _order_id(ctx)
    tracking_id = "trk-" + ctx.saga_id.encode().hex()[-12:]
    ctx.update(ORDERS, order_id, set={"tracking_id": tracking_id}, must_exist=True)
    ctx.emit(ORDER_SHIPPED, {"order_id": order_id, "tracking_id": tracking_id},
             subject=order_id)
    return {"tracking_id": tracking_id}


def complete_order(ctx: StepContext) -> Mapping[str, Any]:
    order_id = _order_id(ctx)
    order = ctx.result_of("create_order")
    tracking_id = ctx.result_of("ship")["tracking_id"]
    ctx.update(ORDERS, order_id, set={"status": "completed", "updated_at": ctx.now_iso()},
               expect={"status": "pending"})
    ctx.emit(ORDER_COMPLETED, {"order_id": order_id, "customer_id": order["customer_id"],
                               "total": int(order["total_cents"]) / 100,
                               "tracking_id": tracking_id}, subject=order_id)
    ctx.emit(NOTIFICATION_SENT, {
        "recipient": order["customer_id"], "order_id": order_id, "channel": "email",
        "subject": f"Order {order_id} completed",
        "message": f"Your order {order_id} ({format_cents(int(order['total_cents']))}) "
                   f"has shipped, tracking {tracking_id}.",
    }, subject=order_id)
    return {"status": "completed"}


ORDER_SAGA = Saga(
    name="order",
    steps=(
        Step("create_order", create_order, retry=Retry(3, 1.0, 2.0), stores=(ORDERS,)),
        Step("payment", process_payment, compensate=refund_payment, retry=Retry(3, 1.0, 2.0),
             stores=(PAYMENTS,)),
        Step("reserve_inventory", reserve_inventory, compensate=release_inventory,
             retry=Retry(3, 0.5, 2.0), stores=(INVENTORY,)),
        Step("ship", ship_order, retry=Retry(3, 1.0, 2.0), stores=(ORDERS,)),
    ),
    on_success=Step("complete_order", complete_order, retry=Retry(5, 1.0, 2.0),
                    stores=(ORDERS,)),
    on_failure=Step("cancel_order", cancel_order, retry=Retry(5, 1.0, 2.0), stores=(ORDERS,)),
    stores=(ORDERS, INVENTORY, PAYMENTS),
    emits=(ORDER_COMPLETED, ORDER_CANCELLED, NOTIFICATION_SENT, PAYMENT_PROCESSED,
           PAYMENT_DECLINED, PAYMENT_REFUNDED, INVENTORY_RESERVED, INVENTORY_RELEASED,
           ORDER_SHIPPED),
)
