"""Inventory processor: stock changes outside orders. Stock never goes below zero.

Every change is also written, in the same transaction, to the item's ledger (table
`stock_ledger`: `received`, `removed`); the saga keeps `reserved` on the item. So the
nightly audit can check available == received - removed - reserved.
"""

from __future__ import annotations

from handlers.core.context import Context
from handlers.core.errors import PermanentError

INVENTORY = "inventory"
LEDGER = "stock_ledger"


def available(ctx: Context, item_id: str) -> int:
    return int((ctx.get(INVENTORY, item_id) or {}).get("available", 0))


def on_inventory_updated(ctx: Context) -> None:
    data = ctx.event.data
    item_id, quantity, action = data["item_id"], int(data["quantity"]), data["action"]
    if action == "restock":
        ctx.update(INVENTORY, item_id, set={"item_id": item_id}, add={"available": quantity})
        ctx.update(LEDGER, item_id, set={"item_id": item_id}, add={"received": quantity})
        return
    # remove: the condition is re-checked atomically at commit, so a concurrent
    # reservation cannot drive stock negative (the engine re-reads and re-runs).
    have = available(ctx, item_id)
    if have < quantity:
        raise PermanentError(
            f"cannot remove {quantity} of item '{item_id}': only {have} available"
        )
    ctx.update(INVENTORY, item_id, add={"available": -quantity},
               require_min={"available": quantity}, must_exist=True)
    ctx.update(LEDGER, item_id, set={"item_id": item_id}, add={"removed": quantity})
