"""Inventory audit: the nightly schedule reconciles stock against its ledger.

Every stock change keeps a ledger: restocks add to `received` and removals to `removed`
(table `stock_ledger`, written with the change), the order saga's reservations to the
item's `reserved` (released ones are taken back).
So `available` must equal `received - removed - reserved`; any difference is drift (a
manual edit, a bug, a lost write) and is reported: one `Inventory Drift Detected` event
per drifting item and an audit report (table `audits`) keyed by the schedule slot, so a
schedule that fires twice for the same night audits once.
"""

from __future__ import annotations

from typing import Any, Final

from handlers.catalog import INVENTORY_DRIFT_DETECTED
from handlers.core.context import Context
from handlers.inventory import INVENTORY, LEDGER

AUDITS: Final = "audits"


def reconcile(item: dict[str, Any], ledger: dict[str, Any] | None) -> dict[str, Any] | None:
    """The item's drift, or None when its ledger balances. Items without a ledger
    (written before the ledger existed) are reported as unledgered."""
    available = int(item.get("available", 0))
    if ledger is None:
        return {"item_id": item.get("item_id"), "actual": available, "expected": None,
                "drift": None, "unledgered": True}
    expected = int(ledger.get("received", 0)) - int(ledger.get("removed", 0)) - \
        int(item.get("reserved", 0))
    if expected == available:
        return None
    return {"item_id": item.get("item_id"), "actual": available, "expected": expected,
            "drift": available - expected, "unledgered": False}


def on_inventory_audit(ctx: Context) -> None:
    data = ctx.event.data
    audit_id = f"{data['schedule']}@{data['scheduled_time']}"
    if ctx.get(AUDITS, audit_id) is not None:
        return
    items = ctx.scan(INVENTORY)
    findings = [f for f in (reconcile(item, ctx.get(LEDGER, str(item.get("item_id"))))
                            for item in items) if f is not None]
    for finding in findings:
        if finding["unledgered"] or not finding["item_id"]:
            continue
        ctx.emit(INVENTORY_DRIFT_DETECTED, {
            "audit_id": audit_id, "item_id": finding["item_id"],
            "expected": finding["expected"], "actual": finding["actual"],
            "drift": finding["drift"]}, subject=finding["item_id"])
    ctx.put_if_absent(AUDITS, audit_id, {
        "audit_id": audit_id, "items_checked": len(items),
        "drifting": [f for f in findings if not f["unledgered"]],
        "unledgered": [f["item_id"] for f in findings if f["unledgered"]],
        "audited_at": ctx.now_iso(), "source_event_id": ctx.event.id})
