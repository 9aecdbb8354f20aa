"""The app description: the one source of truth infra and runtimes generate from."""

from __future__ import annotations

from typing import Final

from handlers.catalog import (
    CATALOG,
    INVENTORY_UPDATED,
    NOTIFICATION_SENT,
    ORDER_CREATED,
    WORKFLOW_TRIGGERED,
)
from handlers.core.app import App, Consumer
from handlers.core.engine import PROCESSED
from handlers.core.ports import SAGAS
from handlers.inventory import INVENTORY, on_inventory_updated
from handlers.notifications import on_notification
from handlers.orders import ORDERS, on_order_event
from handlers.payments import PAYMENTS
from handlers.saga import ORDER_SAGA

APP: Final = App(
    name="switchyard",
    catalog=CATALOG,
    consumers=(
        Consumer("orders", on_order_event, consumes=(ORDER_CREATED, WORKFLOW_TRIGGERED),
                 stores=(ORDERS,), starts_saga=True,
                 description="Stores new orders as pending and starts one saga per order."),
        Consumer("inventory", on_inventory_updated, consumes=(INVENTORY_UPDATED,),
                 stores=(INVENTORY,),
                 description="Applies restocks and removals; stock never goes negative."),
        Consumer("notifications", on_notification, consumes=(NOTIFICATION_SENT,),
                 notifies=True,
                 description="Delivers notifications through the notifier, once."),
    ),
    saga=ORDER_SAGA,
    tables=(ORDERS, INVENTORY, PAYMENTS, PROCESSED, SAGAS),
)
