"""What each compensation leaves behind: the refund, the released stock, their events.

`test_saga.py` proves which compensations run and in what order; these pin what they
record and announce (results, stock, published events with the order as subject), and
the steps' "nothing to undo" answers, for every failure point of the order saga.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from adapters.memory import MemorySagaStarter, MemoryStore, memory_ports
from handlers.app import APP
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
from handlers.core.app import App, Retry
from handlers.core.context import StepContext
from handlers.core.engine import StepHandlerContext, handle, run_step
from handlers.core.errors import StepFailed, TransientError
from handlers.core.events import Event
from handlers.core.ports import Ports, Update
from handlers.core.saga_runner import new_state, resume, run_to_end
from handlers.payments import PAYMENTS
from handlers.saga import ORDER_SAGA
from tests.factories import order_created, restock, workflow_triggered


def _setup(stock: int = 5, quantity: int = 2, price: float = 10.0) -> Ports:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", stock), ports)
    handle(APP, "orders", order_created("o1", [("A", quantity, price)]), ports)
    return ports


def _run(app: App, ports: Ports) -> dict:
    return run_to_end(app, ports, new_state("order-o1", {"order_id": "o1"}, None))


def _failing(name: str, error: Exception, attempts: int = 1) -> App:
    def action(ctx: StepContext) -> None:
        raise error

    steps = tuple(dataclasses.replace(s, action=action, retry=Retry(attempts, 0.0, 1.0))
                  if s.name == name else s for s in ORDER_SAGA.steps)
    return dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, steps=steps))


def _published(ports: Ports, type_: str) -> list:
    return [e for e in ports.publisher.published if e.type == type_]  # type: ignore[attr-defined]


def test_a_failed_shipment_releases_the_stock_and_refunds_the_charge() -> None:
    ports = _setup(stock=5, quantity=2)
    state = _run(_failing("ship", StepFailed("carrier_refused", "no carrier")), ports)
    assert state["status"] == "cancelled" and state["reason"] == "carrier_refused"
    assert state["results"]["reserve_inventory:compensate"] == {
        "released": [{"item_id": "A", "quantity": 2}]}
    refund = ports.store.get(PAYMENTS, "order-o1:payment:compensate")
    assert state["results"]["payment:compensate"] == {"refunded": True,
                                                      "refund_id": refund["refund_id"]}
    assert refund["charge_id"] == state["results"]["payment"]["charge_id"]
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 5,
                                                 "reserved": 0}
    (released,) = _published(ports, INVENTORY_RELEASED)
    assert released.subject == "o1"
    assert released.data == {"order_id": "o1", "items": [{"item_id": "A", "quantity": 2}]}
    (refunded,) = _published(ports, PAYMENT_REFUNDED)
    assert refunded.subject == "o1"
    assert refunded.data == {"order_id": "o1", "charge_id": refund["charge_id"]}
    (cancelled,) = _published(ports, ORDER_CANCELLED)
    assert cancelled.data["reason"] == "carrier_refused"


def test_out_of_stock_refunds_with_a_recorded_refund_and_releases_nothing() -> None:
    ports = _setup(stock=1, quantity=2)
    state = _run(APP, ports)
    assert state["status"] == "cancelled" and state["reason"] == "out_of_stock"
    assert "reserve_inventory:compensate" not in state["results"]  # it did not reserve
    assert state["results"]["payment:compensate"]["refunded"] is True
    assert _published(ports, INVENTORY_RELEASED) == []
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 1}


def test_a_payment_that_never_charged_has_nothing_to_refund() -> None:
    """The payment step kept failing before any charge: its own compensation runs (it
    may have half-happened) and finds nothing to undo."""
    ports = _setup()
    state = _run(_failing("payment", TransientError("provider down"), attempts=2), ports)
    assert state["status"] == "cancelled" and state["reason"] == "payment_failed"
    assert state["results"]["payment:compensate"] == {"refunded": False}
    assert _published(ports, PAYMENT_REFUNDED) == []
    assert ports.store.items(PAYMENTS) == {}


def test_a_reservation_that_kept_failing_releases_nothing_it_did_not_reserve() -> None:
    ports = _setup()
    state = _run(_failing("reserve_inventory", TransientError("db down"), attempts=2), ports)
    assert state["status"] == "cancelled"
    assert state["results"]["reserve_inventory:compensate"] == {"released": []}
    assert _published(ports, INVENTORY_RELEASED) == []
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 5}


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_cancelling_an_order_that_is_no_longer_pending_changes_nothing(status: str) -> None:
    ports = _setup()
    order = ports.store.get("orders", "o1")
    ports.store.tables["orders"]["o1"] = {**order, "status": status}  # type: ignore[attr-defined]
    state = dict(new_state("order-o1", {"order_id": "o1"}, None), reason="out_of_stock")
    outcome = run_step(APP, ports, "order-o1", "cancel_order", "action", state)
    assert outcome.ok and outcome.result == {"cancelled": False}
    assert ports.store.get("orders", "o1")["status"] == status
    assert _published(ports, ORDER_CANCELLED) == []


def test_cancelling_an_unknown_order_changes_nothing() -> None:
    ports = memory_ports()
    state = new_state("order-zz", {"order_id": "zz"}, None)
    outcome = run_step(APP, ports, "order-zz", "cancel_order", "action", state)
    assert outcome.ok and outcome.result == {"cancelled": False}


def test_a_trigger_for_a_known_order_starts_its_saga_with_the_order_id() -> None:
    ports = _setup()
    ports.sagas = MemorySagaStarter()  # as if the first start had been lost
    handle(APP, "orders", workflow_triggered("o1"), ports)
    assert ports.sagas.started == {"order-o1": {"input": {"order_id": "o1"},
                                                "traceparent": None}}


def test_resume_without_a_recorded_phase_resumes_the_compensations_from_scratch() -> None:
    failed = dict(new_state("s", {}, None), status="failed", attempt=4)
    assert resume(failed) == dict(failed, status="compensating", attempt=0)
    assert resume(dict(failed, failed_in="running"))["status"] == "running"


def test_a_saga_that_cannot_finish_says_so_after_its_tick_budget() -> None:
    ports = _setup()
    forever = _failing("create_order", TransientError("down"), attempts=10**6)
    with pytest.raises(RuntimeError, match="saga order-o1 did not finish in 7 ticks"):
        run_to_end(forever, ports, new_state("order-o1", {"order_id": "o1"}, None),
                   max_ticks=7)


def test_a_cancellation_that_keeps_failing_is_retried_by_its_policy_then_needs_attention(
        ) -> None:
    def down(ctx: StepContext) -> None:
        raise TransientError("orders table down")

    on_failure = dataclasses.replace(ORDER_SAGA.on_failure, action=down,
                                     retry=Retry(3, 0.0, 1.0))
    app = dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, on_failure=on_failure))
    ports = _setup(stock=1, quantity=2)
    state = _run(app, ports)
    assert state["status"] == "failed" and state["failed_in"] == "compensating"
    assert state["reason"] == "out_of_stock; cancel_order failed: orders table down"
    attempts = [h["attempt"] for h in state["history"] if h["step"] == "cancel_order"]
    assert attempts == [1, 2, 3]
    assert ports.store.get("orders", "o1")["status"] == "pending"  # needs an operator


def test_a_declined_order_is_cancelled_with_its_reason_announced_once() -> None:
    ports = _setup(price=600.0)  # 2 x 600.00 = 1200.00: above the limit
    state = _run(APP, ports)
    order = ports.store.get("orders", "o1")
    detail = "total 1200.00 is above the limit of 1000.00"
    assert {k: order[k] for k in ("status", "reason", "reason_detail", "updated_at")} == {
        "status": "cancelled", "reason": "payment_declined", "reason_detail": detail,
        "updated_at": "2026-01-01T00:00:00.000Z"}
    assert state["results"]["cancel_order"] == {"cancelled": True}
    (cancelled,) = _published(ports, ORDER_CANCELLED)
    assert (cancelled.subject, cancelled.data) == ("o1", {
        "order_id": "o1", "customer_id": "c1", "reason": "payment_declined"})
    (note,) = _published(ports, NOTIFICATION_SENT)
    assert (note.subject, note.data) == ("o1", {
        "recipient": "c1", "order_id": "o1", "channel": "email",
        "subject": "Order o1 cancelled",
        "message": f"Your order o1 was cancelled: payment_declined ({detail})."})


def test_a_cancellation_without_reason_or_detail_says_cancelled_and_ends_plainly() -> None:
    ports = _setup()
    state = new_state("order-o1", {"order_id": "o1"}, None)
    outcome = run_step(APP, ports, "order-o1", "cancel_order", "action", state)
    assert outcome.result == {"cancelled": True}
    order = ports.store.get("orders", "o1")
    assert (order["status"], order["reason"], order["reason_detail"]) == (
        "cancelled", "cancelled", "")
    (note,) = _published(ports, NOTIFICATION_SENT)
    assert note.data["message"] == "Your order o1 was cancelled: cancelled."


class _CompletedUnderfoot(MemoryStore):
    """The order is completed by someone else right after the step has read it."""

    def get(self, table: str, key: str) -> dict | None:
        item = super().get(table, key)
        if table == "orders" and item and item["status"] == "pending" \
                and not getattr(self, "_done", False):
            self._done = True
            assert self.transact([Update("orders", key, set={"status": "completed"},
                                         expect={"status": "pending"})])
        return item


def test_a_cancellation_never_overwrites_an_order_completed_after_it_read_it() -> None:
    store = _CompletedUnderfoot()
    ports = dataclasses.replace(memory_ports(), store=store)
    handle(APP, "orders", order_created("o1", [("A", 1, 1.0)]), ports)
    state = dict(new_state("order-o1", {"order_id": "o1"}, None), reason="out_of_stock")
    outcome = run_step(APP, ports, "order-o1", "cancel_order", "action", state)
    assert outcome.result == {"cancelled": False}  # re-run on fresh state: not pending
    assert store.get("orders", "o1")["status"] == "completed"
    assert _published(ports, ORDER_CANCELLED) == []


def test_a_completed_order_is_shipped_once_with_one_tracking_id_announced_everywhere() -> None:
    ports = _setup(stock=5, quantity=2, price=10.0)
    state = _run(APP, ports)
    order = ports.store.get("orders", "o1")
    tracking = order["tracking_id"]
    assert re.fullmatch(r"trk-[0-9a-f]{12}", tracking)
    assert (order["status"], order["updated_at"]) == ("completed", "2026-01-01T00:00:00.000Z")
    assert state["results"]["ship"] == {"tracking_id": tracking}
    assert state["results"]["complete_order"] == {"status": "completed"}
    (shipped,) = _published(ports, ORDER_SHIPPED)
    assert (shipped.subject, shipped.data) == ("o1", {"order_id": "o1", "tracking_id": tracking})
    (completed,) = _published(ports, ORDER_COMPLETED)
    assert (completed.subject, completed.data) == ("o1", {
        "order_id": "o1", "customer_id": "c1", "total": 20.0, "tracking_id": tracking})
    (note,) = _published(ports, NOTIFICATION_SENT)
    assert (note.subject, note.data) == ("o1", {
        "recipient": "c1", "order_id": "o1", "channel": "email",
        "subject": "Order o1 completed",
        "message": f"Your order o1 (20.00) has shipped, tracking {tracking}."})


def test_tracking_ids_differ_between_orders() -> None:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 5), ports)
    for order_id in ("o1", "o2"):
        handle(APP, "orders", order_created(order_id, [("A", 1, 1.0)]), ports)
        run_to_end(APP, ports, new_state(f"order-{order_id}", {"order_id": order_id}, None))
    assert ports.store.get("orders", "o1")["tracking_id"] != \
        ports.store.get("orders", "o2")["tracking_id"]


def test_an_item_on_two_lines_of_an_order_is_reserved_for_both() -> None:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 5), ports)
    handle(APP, "orders", order_created("o1", [("A", 1, 1.0), ("A", 2, 1.0)]), ports)
    state = _run(APP, ports)
    assert state["results"]["reserve_inventory"] == {"items": [{"item_id": "A", "quantity": 3}]}
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 2, "reserved": 3}


def test_completing_an_order_cancelled_meanwhile_never_marks_it_completed() -> None:
    ports = _setup()
    state = _run(_failing("ship", StepFailed("x", "y")), ports)  # cancelled
    state["results"]["ship"] = {"tracking_id": "trk-000000000000"}
    with pytest.raises(TransientError, match="contention"):
        run_step(APP, ports, "order-o1", "complete_order", "action", state)
    assert ports.store.get("orders", "o1")["status"] == "cancelled"


def test_shipping_never_creates_an_order_that_is_not_there() -> None:
    ports = memory_ports()
    state = new_state("order-zz", {"order_id": "zz"}, None)
    with pytest.raises(TransientError, match="contention"):
        run_step(APP, ports, "order-zz", "ship", "action", state)
    assert ports.store.get("orders", "zz") is None


def test_a_payment_is_announced_and_recorded_with_its_amount() -> None:
    ports = _setup(stock=5, quantity=2, price=10.0)
    state = _run(APP, ports)
    charge = ports.store.get(PAYMENTS, "order-o1:payment:action")
    assert state["results"]["payment"] == {"charge_id": charge["charge_id"],
                                           "amount_cents": 2000}
    (paid,) = _published(ports, PAYMENT_PROCESSED)
    assert (paid.subject, paid.data) == ("o1", {
        "order_id": "o1", "charge_id": charge["charge_id"], "amount_cents": 2000})
    (reserved,) = _published(ports, INVENTORY_RESERVED)
    assert (reserved.subject, reserved.data) == ("o1", {
        "order_id": "o1", "items": [{"item_id": "A", "quantity": 2}]})


def test_a_declined_payment_is_announced_with_its_reason() -> None:
    ports = _setup(price=600.0)
    _run(APP, ports)
    (declined,) = _published(ports, PAYMENT_DECLINED)
    assert (declined.subject, declined.data) == ("o1", {
        "order_id": "o1", "reason": "total 1200.00 is above the limit of 1000.00"})


def test_out_of_stock_names_every_short_item() -> None:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 1), ports)
    handle(APP, "orders", order_created("o1", [("A", 2, 1.0), ("B", 1, 1.0)]), ports)
    _run(APP, ports)
    assert ports.store.get("orders", "o1")["reason_detail"] == (
        "item 'A': 2 wanted, 1 available; item 'B': 1 wanted, 0 available")


def test_the_first_step_waits_for_its_order_and_refuses_one_no_longer_pending() -> None:
    ports = memory_ports()
    state = new_state("order-o1", {"order_id": "o1"}, None)
    with pytest.raises(TransientError, match="order 'o1' not found"):
        run_step(APP, ports, "order-o1", "create_order", "action", state)
    handle(APP, "orders", order_created("o1", [("A", 1, 1.0)]), ports)
    order = ports.store.get("orders", "o1")
    ports.store.tables["orders"]["o1"] = {**order, "status": "cancelled"}  # type: ignore[attr-defined]
    outcome = run_step(APP, ports, "order-o2", "create_order", "action", state)
    assert (outcome.ok, outcome.reason, outcome.detail) == (
        False, "order_not_pending", "order is already cancelled")


def test_a_step_reading_a_result_before_any_is_recorded_gets_nothing() -> None:
    ctx = StepHandlerContext(APP, memory_ports(), Event.new("t", "t.t", {}), "s", "ship",
                             "action", {"input": {"order_id": "o1"}}, "k")
    assert ctx.result_of("create_order") == {}
