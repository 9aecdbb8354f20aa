"""The app description: the one source of truth infra and runtimes generate from."""

from __future__ import annotations

from typing import Final

from handlers.analytics import on_order_for_analytics
from handlers.audit import AUDITS, on_inventory_audit
from handlers.catalog import (
    ANALYTICS_ORDER_RECORDED,
    CATALOG,
    FILE_PROCESSED,
    FILE_ROW_REJECTED,
    INVENTORY_AUDIT,
    INVENTORY_DRIFT_DETECTED,
    INVENTORY_UPDATED,
    NOTIFICATION_SENT,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_CREATED,
    WORKFLOW_TRIGGERED,
)
from handlers.core.app import App, Bucket, Consumer, Schedule
from handlers.core.engine import PROCESSED
from handlers.core.ports import SAGAS
from handlers.core.storage import STORAGE_OBJECT_FINALIZED
from handlers.files import FILES, UPLOADS, on_object_finalized, on_row_rejected
from handlers.inventory import INVENTORY, LEDGER, on_inventory_updated
from handlers.notifications import on_notification
from handlers.orders import ORDERS, on_order_event
from handlers.payments import PAYMENTS
from handlers.saga import ORDER_SAGA

CLAIMS: Final = "claims"
#: Longer than any redelivery or DLQ retention (SQS keeps dead letters 14 days), so a
#: redriven claim-checked event still finds its payload.
CLAIM_EXPIRE_DAYS: Final = 15

APP: Final = App(
    name="switchyard",
    catalog=CATALOG,
    consumers=(
        Consumer("orders", on_order_event, consumes=(ORDER_CREATED, WORKFLOW_TRIGGERED),
                 stores=(ORDERS,), starts_saga=True,
                 description="Stores new orders as pending and starts one saga per order."),
        Consumer("inventory", on_inventory_updated, consumes=(INVENTORY_UPDATED,),
                 stores=(INVENTORY, LEDGER),
                 description="Applies restocks and removals; stock never goes negative."),
        Consumer("notifications", on_notification, consumes=(NOTIFICATION_SENT,),
                 notifies=True,
                 description="Delivers notifications through the notifier, once."),
        Consumer("file-processor", on_object_finalized, consumes=(STORAGE_OBJECT_FINALIZED,),
                 stores=(FILES,), buckets=(UPLOADS,),
                 emits=(INVENTORY_UPDATED, ORDER_CREATED, FILE_ROW_REJECTED, FILE_PROCESSED),
                 description="Turns each valid row of an uploaded CSV into an event, once."),
        Consumer("upload-rejects", on_row_rejected, consumes=(FILE_ROW_REJECTED,),
                 description="Parks rejected upload rows in its DLQ with their reason."),
        Consumer("order-analytics", on_order_for_analytics,
                 consumes=(ORDER_CREATED, ORDER_COMPLETED, ORDER_CANCELLED),
                 emits=(ANALYTICS_ORDER_RECORDED,),
                 description="Flattens order events into analytics records (new events)."),
        Consumer("inventory-audit", on_inventory_audit, consumes=(INVENTORY_AUDIT,),
                 stores=(INVENTORY, LEDGER, AUDITS), scans=(INVENTORY,),
                 emits=(INVENTORY_DRIFT_DETECTED,),
                 description="Reconciles stock against its ledger and reports drift."),
    ),
    saga=ORDER_SAGA,
    tables=(ORDERS, INVENTORY, PAYMENTS, PROCESSED, SAGAS, FILES, AUDITS, LEDGER),
    buckets=(
        Bucket(UPLOADS, events=True, description="CSV uploads for the file processor."),
        Bucket(CLAIMS, expire_days=CLAIM_EXPIRE_DAYS, claim_check=True,
               description="Payloads of events too big for the bus (claim check)."),
    ),
    schedules=(
        Schedule("inventory-audit", "0 3 * * *", INVENTORY_AUDIT,
                 description="Nightly stock reconciliation at 03:00 UTC."),
    ),
)
