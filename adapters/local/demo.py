"""`switchyard demo`: the whole order system, in-process, on a fresh temporary database.

Events go through the same ingress policy as `POST /events` (seed-style EventBridge entries
and CloudEvents) and the same runtime as `switchyard serve`; only the HTTP hop is skipped.
The demo checks its own outcomes and exits non-zero if any is missing.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from adapters.local.http_server import decode_events
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.http_binding import to_structured
from handlers.money import format_cents

_SHORT = {
    "com.switchyard.order.created": "Order Created",
    "com.switchyard.inventory.updated": "Inventory Updated",
    "com.switchyard.notification.sent": "Notification Sent",
    "com.switchyard.workflow.triggered": "Workflow Triggered",
}


def _put_events(*entries: tuple[str, str, dict[str, Any]]) -> bytes:
    return json.dumps({"Entries": [
        {"Source": s, "DetailType": d, "Detail": json.dumps(detail)} for s, d, detail in entries
    ]}).encode()


def _order(order_id: str, customer: str, items: list[tuple[str, int, float]]) -> dict[str, Any]:
    return {
        "order_id": order_id, "customer_id": customer,
        "items": [{"item_id": i, "quantity": q, "price": p} for i, q, p in items],
        "total": round(sum(q * p for _, q, p in items), 2),
        "timestamp": "2026-11-22T09:00:00Z",
    }


def _send(runtime: Runtime, headers: dict[str, str], body: bytes, label: str) -> list[Event]:
    events = decode_events(headers, body, runtime.app.catalog)
    runtime.ingest(events)
    print(f"  -> {label}")
    return events


def run_demo(verbose: bool = False) -> int:
    logging.getLogger("switchyard").setLevel(logging.CRITICAL)  # the timeline says it all
    with tempfile.TemporaryDirectory(prefix="switchyard-demo-") as tmp:
        runtime = Runtime(Path(tmp) / "demo.db", settings=RuntimeSettings(retry_scale=0.001))
        try:
            return _run(runtime, verbose)
        finally:
            runtime.close()


def _run(runtime: Runtime, verbose: bool) -> int:
    json_headers = {"content-type": "application/json"}
    print("Switchyard demo: the order system on the embedded runtime (SQLite, no cloud)\n")
    print("Sending events (EventBridge PutEvents entries as the seeds send them, and "
          "CloudEvents):")
    _send(runtime, json_headers, _put_events(
        ("inventory", "Inventory Updated", {"item_id": "widget", "quantity": 10,
                                            "action": "restock"}),
        ("inventory", "Inventory Updated", {"item_id": "gadget", "quantity": 5,
                                            "action": "restock"}),
        ("inventory", "Inventory Updated", {"item_id": "gizmo", "quantity": 1,
                                            "action": "restock"}),
    ), "restock widget x10, gadget x5, gizmo x1")
    runtime.run_until_idle()
    first = _send(runtime, json_headers, _put_events(
        ("orders", "Order Created",
         _order("1001", "alice", [("widget", 2, 19.99), ("gadget", 1, 49.50)])),
    ), "order 1001 (alice, 89.48): should complete")
    big = Event.new("orders", "com.switchyard.order.created",
                    _order("1002", "bob", [("widget", 1, 1500.00)]))
    _send(runtime, *to_structured(big), "order 1002 (bob, 1500.00): payment will be declined")
    short = Event.new("orders", "com.switchyard.order.created",
                      _order("1003", "carol", [("gizmo", 3, 25.00)]))
    _send(runtime, *to_structured(short), "order 1003 (carol, 3 gizmos, 1 in stock): "
                                          "out of stock after payment")
    runtime.run_until_idle()
    runtime.ingest(first)  # the same event id again: an at-least-once redelivery
    print("  -> order 1001's event delivered a second time (same id)")
    _send(runtime, json_headers, _put_events(
        ("workflow", "Workflow Triggered", {"workflow_id": "wf-1001", "order_id": "1001"}),
    ), "Workflow Triggered for 1001: its saga already ran, so nothing starts")
    bad = Event.new("orders", "com.switchyard.order.created",
                    {"order_id": "1004", "items": [{"item_id": "widget", "quantity": 0}],
                     "total": -5})
    try:
        _send(runtime, *to_structured(bad), "order 1004, malformed")
    except ValidationError as refused:
        print(f"  -> order 1004, malformed: POST /events refuses it (400, "
              f"{len(refused.problems)} problems: {'; '.join(refused.problems)})")
    # A producer that puts events on the bus directly (as EventBridge and Pub/Sub allow)
    # bypasses the front door: its consumer dead-letters the event with the same reasons.
    runtime.ingest([bad])
    print("  -> order 1004 again, straight onto the bus: its consumer will dead-letter it")
    runtime.run_until_idle()

    _print_timeline(runtime, verbose)
    _print_state(runtime)
    return _check(runtime, first[0].id)


def _print_timeline(runtime: Runtime, verbose: bool) -> None:
    print("\nTimeline (event -> consumer -> outcome):")
    for row in runtime.timeline():
        consumer = row["consumer"] or "-"
        if row["outcome"] == "unrouted" and not verbose:
            continue  # progress events nobody consumes (payment processed, ...)
        type_ = row["type"]
        label = _SHORT.get(type_, type_)
        if type_.startswith("saga."):
            label = "saga " + " ".join(type_.split(".")[1:]).replace(" action", "")
        detail = row["detail"] or ""
        shown = f"  ({detail})" if detail and not detail.startswith(("emitted", "no effect",
                                                                     "order-")) else ""
        subject = f"#{row['subject']}" if row["subject"] else ""
        print(f"  {label:<30} {subject:<8} -> {consumer:<13} -> {row['outcome']}{shown}")


def _print_state(runtime: Runtime) -> None:
    print("\nOrders:")
    print(f"  {'order':<6} {'customer':<9} {'total':>8}  {'status':<10} reason")
    for o in runtime.orders():
        print(f"  {o['order_id']:<6} {o['customer_id']:<9} {format_cents(o['total_cents']):>8}"
              f"  {o['status']:<10} {o.get('reason') or ''}")
    print("\nInventory: " + ", ".join(
        f"{item} {runtime.available(item)}" for item in ("widget", "gadget", "gizmo")))
    payments = runtime.store.scan("payments")
    refunded = {p["charge_id"] for p in payments if p["kind"] == "refund"}
    print("Payments: " + ", ".join(
        f"#{p['order_id']} {p['status']}" + (" then refunded" if p["charge_id"] in refunded
                                             else "")
        for p in payments if p["kind"] == "charge"))
    print("\nDead-letter queue:")
    for entry in runtime.dlq():
        print(f"  [{entry['consumer']}] {entry['type']} id={entry['event_id']} "
              f"attempts={entry['attempts']}\n    reason: {entry['reason']}")
    counts = runtime.counts()
    print(f"\n{counts['events']} events on the bus, {counts['notifications']} notifications "
          f"sent, {counts['dead_lettered']} dead-lettered, {counts['queued']} still queued.")


def _check(runtime: Runtime, duplicate_id: str) -> int:
    orders = {o["order_id"]: o for o in runtime.orders()}
    refunded = any(p["kind"] == "refund" for p in runtime.store.scan("payments"))
    duplicate = any(r["event_id"] == duplicate_id and r["outcome"] == "duplicate"
                    for r in runtime.timeline())
    checks = {
        "order 1001 completed": orders.get("1001", {}).get("status") == "completed",
        "order 1002 cancelled: payment declined":
            orders.get("1002", {}).get("reason") == "payment_declined",
        "order 1003 cancelled out of stock, payment refunded":
            orders.get("1003", {}).get("reason") == "out_of_stock" and refunded,
        "duplicate delivery had no effect": duplicate,
        "malformed event dead-lettered with its reason":
            any("customer_id is required" in e["reason"] for e in runtime.dlq()),
    }
    print("\nOutcomes:")
    for label, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSING'}] {label}")
    return 0 if all(checks.values()) else 1
