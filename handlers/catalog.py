"""The order system's event catalog: every type, its EventBridge spelling and its schema.

The first five entries are the seeds' events with exactly their names; the seed payloads
validate as they are. Schemas allow extra fields (producers may add, never remove).
"""

from __future__ import annotations

from typing import Any, Final

from handlers.core.app import Catalog, EventType
from handlers.core.storage import STORAGE_OBJECT_FINALIZED

PREFIX: Final = "com.switchyard."

ORDER_CREATED: Final = PREFIX + "order.created"
ORDER_COMPLETED: Final = PREFIX + "order.completed"
ORDER_CANCELLED: Final = PREFIX + "order.cancelled"
INVENTORY_UPDATED: Final = PREFIX + "inventory.updated"
INVENTORY_RESERVED: Final = PREFIX + "inventory.reserved"
INVENTORY_RELEASED: Final = PREFIX + "inventory.released"
NOTIFICATION_SENT: Final = PREFIX + "notification.sent"
WORKFLOW_TRIGGERED: Final = PREFIX + "workflow.triggered"
PAYMENT_PROCESSED: Final = PREFIX + "payment.processed"
PAYMENT_DECLINED: Final = PREFIX + "payment.declined"
PAYMENT_REFUNDED: Final = PREFIX + "payment.refunded"
ORDER_SHIPPED: Final = PREFIX + "order.shipped"
FILE_PROCESSED: Final = PREFIX + "file.processed"
FILE_ROW_REJECTED: Final = PREFIX + "file.row.rejected"
ANALYTICS_ORDER_RECORDED: Final = PREFIX + "analytics.order.recorded"
INVENTORY_AUDIT: Final = PREFIX + "inventory.audit"
INVENTORY_DRIFT_DETECTED: Final = PREFIX + "inventory.drift.detected"

_ID: Final = {"type": "string", "minLength": 1, "maxLength": 128}
_MONEY: Final = {"type": "number", "minimum": 0}
_QTY: Final = {"type": "integer", "exclusiveMinimum": 0}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


ORDER_ITEM_SCHEMA: Final = _obj(["item_id", "quantity", "price"], item_id=_ID, quantity=_QTY,
                                price=_MONEY)

CATALOG: Final = Catalog([
    EventType(
        ORDER_CREATED, "orders", "Order Created",
        _obj(["order_id", "customer_id", "items", "total"], order_id=_ID, customer_id=_ID,
             items={"type": "array", "minItems": 1, "items": ORDER_ITEM_SCHEMA},
             total=_MONEY, timestamp={"type": "string"}),
        "A customer placed an order; starts the order saga.",
    ),
    EventType(
        ORDER_COMPLETED, "orders", "Order Completed",
        _obj(["order_id"], order_id=_ID, customer_id=_ID, total=_MONEY,
             tracking_id={"type": "string"}),
        "The saga paid, reserved and shipped the order.",
    ),
    EventType(
        ORDER_CANCELLED, "orders", "Order Cancelled",
        _obj(["order_id", "reason"], order_id=_ID, customer_id=_ID, reason={"type": "string"}),
        "The saga failed and compensated; `reason` says why.",
    ),
    EventType(
        INVENTORY_UPDATED, "inventory", "Inventory Updated",
        _obj(["item_id", "quantity", "action"], item_id=_ID, quantity=_QTY,
             action={"enum": ["restock", "remove"]}),
        "Stock changed outside an order: `restock` adds, `remove` takes away (never below 0).",
    ),
    EventType(
        INVENTORY_RESERVED, "inventory", "Inventory Reserved",
        _obj(["order_id", "items"], order_id=_ID, items={"type": "array"}),
        "The saga reserved an order's items.",
    ),
    EventType(
        INVENTORY_RELEASED, "inventory", "Inventory Released",
        _obj(["order_id", "items"], order_id=_ID, items={"type": "array"}),
        "A compensation put reserved items back.",
    ),
    EventType(
        NOTIFICATION_SENT, "notifications", "Notification Sent",
        _obj(["message"], notification_id=_ID, recipient=_ID, order_id=_ID,
             subject={"type": "string"}, message={"type": "string", "minLength": 1},
             channel={"enum": ["email", "sms", "push", "log"]}),
        "A notification to deliver through the notifier (SNS, Pub/Sub, local topic).",
    ),
    EventType(
        WORKFLOW_TRIGGERED, "workflow", "Workflow Triggered",
        _obj(["workflow_id", "order_id"], workflow_id=_ID, order_id=_ID),
        "Start the order saga for an order (no-op when it already started).",
    ),
    EventType(
        PAYMENT_PROCESSED, "payments", "Payment Processed",
        _obj(["order_id", "charge_id", "amount_cents"], order_id=_ID, charge_id=_ID,
             amount_cents={"type": "integer", "minimum": 0}),
        "The order was charged.",
    ),
    EventType(
        PAYMENT_DECLINED, "payments", "Payment Declined",
        _obj(["order_id", "reason"], order_id=_ID, reason={"type": "string"}),
        "The payment provider declined the order.",
    ),
    EventType(
        PAYMENT_REFUNDED, "payments", "Payment Refunded",
        _obj(["order_id", "charge_id"], order_id=_ID, charge_id=_ID),
        "A compensation refunded the order's charge.",
    ),
    EventType(
        ORDER_SHIPPED, "shipping", "Order Shipped",
        _obj(["order_id", "tracking_id"], order_id=_ID, tracking_id={"type": "string"}),
        "The order left the warehouse.",
    ),
    EventType(
        STORAGE_OBJECT_FINALIZED, "storage", "Object Finalized",
        _obj(["bucket", "name", "size"], bucket=_ID, name={"type": "string", "minLength": 1},
             size={"type": "integer", "minimum": 0}, etag={"type": "string"},
             content_type={"type": "string"}, problem={"type": "string"}),
        "A file finished uploading to a bucket (S3, Cloud Storage, the local uploads folder).",
    ),
    EventType(
        FILE_PROCESSED, "files", "File Processed",
        _obj(["bucket", "name", "kind", "accepted", "rejected"], bucket=_ID,
             name={"type": "string"}, kind={"type": "string"},
             accepted={"type": "integer", "minimum": 0},
             rejected={"type": "integer", "minimum": 0}, problems={"type": "array"}),
        "An uploaded file was read: how many rows became events and which were rejected.",
    ),
    EventType(
        FILE_ROW_REJECTED, "files", "File Row Rejected",
        _obj(["bucket", "name", "line", "reason"], bucket=_ID, name={"type": "string"},
             line={"type": "integer", "minimum": 1}, reason={"type": "string"},
             row={"type": "object"}),
        "A row of an uploaded file failed validation; it is dead-lettered with the reason.",
    ),
    EventType(
        ANALYTICS_ORDER_RECORDED, "analytics", "Order Recorded",
        _obj(["record_id", "order_id", "status", "source_event_id"], record_id=_ID,
             order_id=_ID, status={"enum": ["created", "completed", "cancelled"]},
             customer_id={"type": ["string", "null"]},
             total_cents={"type": ["integer", "null"]},
             item_count={"type": ["integer", "null"]}, reason={"type": ["string", "null"]},
             occurred_at={"type": ["string", "null"]}, source_event_id=_ID),
        "An order event flattened for analytics (one row, stable columns).",
    ),
    EventType(
        INVENTORY_AUDIT, "inventory", "Inventory Audit",
        _obj(["schedule", "scheduled_time"], schedule=_ID,
             scheduled_time={"type": "string", "minLength": 1}),
        "The nightly schedule asks for stock to be reconciled against its ledger.",
    ),
    EventType(
        INVENTORY_DRIFT_DETECTED, "inventory", "Inventory Drift Detected",
        _obj(["audit_id", "item_id", "drift"], audit_id=_ID, item_id=_ID,
             expected={"type": "integer"}, actual={"type": "integer"},
             drift={"type": "integer"}),
        "An audit found stock that does not match received - removed - reserved.",
    ),
])
