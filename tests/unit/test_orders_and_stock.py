"""What the order and inventory handlers store, and how they treat an item never stocked.

An order is kept with its items priced in cents and the time the customer placed it; an
item nobody ever stocked has nothing available: an order for it is cancelled out of
stock (after its payment is refunded), a removal of it is refused, and neither leaves a
record for the item behind.
"""

from __future__ import annotations

import pytest

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED
from handlers.core.engine import handle
from handlers.core.errors import PermanentError
from handlers.core.events import Event
from handlers.core.saga_runner import new_state, run_to_end
from tests.factories import order_created, restock


def test_an_order_is_stored_with_cents_and_the_time_it_was_placed() -> None:
    ports = memory_ports()
    event = order_created("o1", [("A", 2, 19.99), ("B", 1, 0.5)])
    handle(APP, "orders", event, ports)
    order = ports.store.get("orders", "o1")
    assert order["items"] == [{"item_id": "A", "quantity": 2, "price_cents": 1999},
                              {"item_id": "B", "quantity": 1, "price_cents": 50}]
    assert order["total_cents"] == 4048
    assert order["placed_at"] == "2026-11-22T09:00:00Z"
    assert (order["status"], order["reason"], order["created_by"]) == (
        "pending", None, event.id)
    assert order["created_at"] == "2026-01-01T00:00:00.000Z"  # the handler's clock


def test_an_order_for_an_item_never_stocked_is_cancelled_out_of_stock() -> None:
    ports = memory_ports()
    handle(APP, "orders", order_created("o1", [("ghost", 1, 5.0)]), ports)
    state = run_to_end(APP, ports, new_state("order-o1", {"order_id": "o1"}, None))
    assert state["status"] == "cancelled" and state["reason"] == "out_of_stock"
    order = ports.store.get("orders", "o1")
    assert order["reason_detail"] == "item 'ghost': 1 wanted, 0 available"
    assert state["results"]["payment:compensate"]["refunded"] is True
    assert ports.store.get("inventory", "ghost") is None


def test_removing_an_item_never_stocked_is_refused() -> None:
    ports = memory_ports()
    removal = Event.new("inventory", INVENTORY_UPDATED,
                        {"item_id": "ghost", "quantity": 1, "action": "remove"})
    with pytest.raises(PermanentError, match="cannot remove 1 of item 'ghost': only 0 available"):
        handle(APP, "inventory", removal, ports)
    assert ports.store.get("inventory", "ghost") is None


def test_a_restock_adds_to_what_is_there() -> None:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 2), ports)
    handle(APP, "inventory", restock("A", 3), ports)
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 5}
    assert ports.store.get("stock_ledger", "A") == {"item_id": "A", "received": 5}
