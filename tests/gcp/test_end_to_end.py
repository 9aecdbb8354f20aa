"""The GCP path end to end on Google's emulators: Pub/Sub push -> functions-framework
servers running the extracted archive -> Firestore, with the saga run by the compiled
workflow on workflows-emulator. Topics and subscriptions come from the stack's generator.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest

from adapters.gcp import redrive
from adapters.gcp.entry import CONSUMER_ATTRIBUTE, REASON_ATTRIBUTE
from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.topology import subscription_path, topic_path
from handlers.catalog import INVENTORY_UPDATED, ORDER_COMPLETED, ORDER_CREATED
from handlers.core.events import Event
from handlers.core.ports import SAGAS
from handlers.orders import saga_id_for
from tests.eventually import eventually
from tests.factories import order_created, restock, workflow_triggered
from tests.gcp.conftest import MAX_DELIVERIES, PROJECT, GcpEmulated, Puller, deliveries

pytestmark = pytest.mark.slow
DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


def uid() -> str:
    return uuid.uuid4().hex[:10]


def stock(store: Any, bus: Any, item: str, quantity: int) -> None:
    bus.publish([restock(item, quantity)])
    eventually(lambda: (store.get("inventory", item) or {}).get("available") == quantity,
               f"{quantity} of {item} in stock", 30)


def final_order(store: Any, order_id: str, timeout: float = 60) -> dict[str, Any]:
    return eventually(lambda: (o := store.get("orders", order_id)) and
                      o["status"] in ("completed", "cancelled") and o,
                      f"order {order_id} to finish", timeout)


def test_completed_order(gcp: GcpEmulated, store: Any, bus: Any,
                         pullers: dict[str, Puller]) -> None:
    item, order_id = f"sku-{uid()}", f"o-{uid()}"
    stock(store, bus, item, 5)
    bus.publish([order_created(order_id, [(item, 2, 12.5)])])

    order = final_order(store, order_id)
    assert order["status"] == "completed" and order["tracking_id"].startswith("trk-")
    assert store.get("inventory", item) == {"item_id": item, "available": 3, "reserved": 2}
    charge = store.get("payments", f"{saga_id_for(order_id)}:payment:action")
    assert charge["status"] == "charged" and charge["amount_cents"] == 2500
    notes = pullers["notifications"].wait_for(
        lambda m: json.loads(m.data).get("order_id") == order_id, 30, "the notification")
    assert "completed" in json.loads(notes[0].data)["subject"]
    [completed] = pullers["events"].wait_for(
        lambda m: m.attributes.get("ce-type") == ORDER_COMPLETED
        and m.attributes.get("ce-subject") == order_id, 30, "Order Completed on the bus")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", completed.attributes["ce-traceparent"])


def test_declined_payment_cancels_without_touching_stock(
        gcp: GcpEmulated, store: Any, bus: Any) -> None:
    item, order_id = f"sku-{uid()}", f"o-{uid()}"
    stock(store, bus, item, 5)
    bus.publish([order_created(order_id, [(item, 1, 2500.0)])])

    order = final_order(store, order_id)
    assert (order["status"], order["reason"]) == ("cancelled", "payment_declined")
    assert store.get("inventory", item)["available"] == 5
    saga = saga_id_for(order_id)
    assert store.get("payments", f"{saga}:payment:action")["status"] == "declined"
    assert store.get("payments", f"{saga}:payment:compensate") is None


def test_out_of_stock_refunds_and_cancels(gcp: GcpEmulated, store: Any, bus: Any) -> None:
    item, order_id = f"sku-{uid()}", f"o-{uid()}"
    stock(store, bus, item, 1)
    bus.publish([order_created(order_id, [(item, 3, 10.0)])])

    order = final_order(store, order_id)
    assert (order["status"], order["reason"]) == ("cancelled", "out_of_stock")
    saga = saga_id_for(order_id)
    charge = store.get("payments", f"{saga}:payment:action")
    refund = store.get("payments", f"{saga}:payment:compensate")
    assert charge["status"] == "charged"
    assert refund["kind"] == "refund" and refund["charge_id"] == charge["charge_id"]
    assert store.get("inventory", item)["available"] == 1


def test_poison_message_is_dead_lettered_after_exactly_max_deliveries(
        gcp: GcpEmulated, bus: Any, pullers: dict[str, Puller]) -> None:
    # A trigger for an order that never arrives: the orders consumer keeps answering
    # "transient" (the trigger may overtake its order), so Pub/Sub gives up.
    event = workflow_triggered(f"ghost-{uid()}")
    started = time.monotonic()
    bus.publish([event])

    [letter] = pullers["dlq:orders"].wait_for(
        lambda m: m.attributes.get("ce-id") == event.id, 90, "the poison message")
    assert letter.attributes[DELIVERY_COUNT] == str(MAX_DELIVERIES)
    assert REASON_ATTRIBUTE not in letter.attributes  # dead-lettered by Pub/Sub itself
    assert json.loads(letter.data) == event.data  # the message, unchanged
    assert time.monotonic() - started > 1  # it was retried, not dead-lettered at once
    assert redrive.reason_of(letter.attributes) == f"exceeded maxDeliveries ({MAX_DELIVERIES} "\
        "attempts)"


def test_dead_letters_are_listed_with_their_reason_and_redriven_after_a_fix(
        gcp: GcpEmulated, store: Any, bus: Any) -> None:
    from google.cloud import pubsub_v1

    # A dead-letter subscription of its own, so the session's pullers do not ack first.
    subscriber = pubsub_v1.SubscriberClient()
    route = gcp.topology.route("inventory")
    mine = subscription_path(PROJECT, f"redrive-{uid()}")
    subscriber.create_subscription(request={"name": mine, "topic": topic_path(
        PROJECT, route.dead_letter_topic)})
    item = f"sku-{uid()}"
    removal = Event.new("inventory", INVENTORY_UPDATED,
                        {"item_id": item, "quantity": 2, "action": "remove"})
    bus.publish([removal])  # nothing in stock: refused, permanently

    letters = eventually(lambda: [d for d in redrive.pull(subscriber, mine)
                                  if d.message.attributes.get("ce-id") == removal.id],
                         "the refused removal", 30)
    assert "only 0 available" in letters[0].reason
    stock(store, bus, item, 5)  # the fix
    assert redrive.redrive(subscriber, mine, bus, letters) == 1
    eventually(lambda: store.get("inventory", item)["available"] == 3, "the redrive", 30)
    assert redrive.redrive(subscriber, mine, bus, letters) == 1  # again: a no-op in effect
    eventually(lambda: "duplicate" in deliveries(gcp, "inventory", removal.id),
               "the second redrive to arrive (as a duplicate)", 30)
    assert store.get("inventory", item)["available"] == 3


def test_duplicate_publish_has_one_effect(gcp: GcpEmulated, store: Any, bus: Any) -> None:
    item, order_id = f"sku-{uid()}", f"o-{uid()}"
    stock(store, bus, item, 10)
    event = order_created(order_id, [(item, 4, 5.0)])
    bus.publish([event, event])
    bus.publish([event])
    assert final_order(store, order_id)["status"] == "completed"
    # Barrier: all three copies were handled (the duplicates too), so any second effect
    # would be visible now.
    # (The log of a redelivered copy can come before the first copy's own line.)
    handled = eventually(lambda: (lines := deliveries(gcp, "orders", event.id)) and
                         len(lines) >= 3 and "processed" in lines and lines,
                         "all three copies handled, one with its effect", 30)
    assert handled.count("processed") == 1, handled

    assert store.get("inventory", item) == {"item_id": item, "available": 6, "reserved": 4}
    saga = saga_id_for(order_id)
    starts = store.get(SAGAS, saga)
    assert starts["status"] == "started"
    # "Workflow Triggered" for an order whose saga already ran starts nothing new.
    trigger = workflow_triggered(order_id)
    bus.publish([trigger])
    eventually(lambda: store.get("processed", f"orders|{trigger.source}|{trigger.id}"),
               "the trigger to be handled", 30)
    calls = gcp.proxy.calls_for(saga)
    assert calls.count((saga, "payment", "action")) == 1, calls
    assert calls.count((saga, "complete_order", "action")) == 1, calls


def test_malformed_message_is_dead_lettered_at_once_with_every_reason(
        gcp: GcpEmulated, bus: Any, pullers: dict[str, Puller]) -> None:
    marker = uid()
    bus.publish_messages([PubSubMessage(b'{"order_id": broken', {
        "ce-type": ORDER_CREATED, "ce-specversion": "0.3", "content-type": "application/json",
        "marker": marker})])

    [letter] = pullers["dlq:orders"].wait_for(
        lambda m: m.attributes.get("marker") == marker, 30, "the malformed message")
    reason = letter.attributes[REASON_ATTRIBUTE]
    for problem in ("missing required attribute 'id'", "missing required attribute 'source'",
                    "unsupported specversion '0.3'", "data is not valid JSON"):
        assert problem in reason
    assert letter.attributes[CONSUMER_ATTRIBUTE] == "orders"
    assert DELIVERY_COUNT not in letter.attributes  # our adapter, first delivery
    assert letter.data == b'{"order_id": broken'
