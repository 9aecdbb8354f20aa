"""The order saga with a failure injected at every step (failure cases 12-15)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.core.app import App, Retry, Step
from handlers.core.context import StepContext
from handlers.core.engine import handle, run_step
from handlers.core.errors import StepFailed, TransientError
from handlers.core.ports import Ports
from handlers.core.saga_runner import new_state, run_to_end, tick
from handlers.saga import ORDER_SAGA
from tests.factories import order_created, restock

STEPS = [s.name for s in ORDER_SAGA.steps]
COMPENSATED = {"payment", "reserve_inventory"}


def _setup(stock: int = 10, total_items: int = 2, price: float = 10.0) -> Ports:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", stock), ports)
    handle(APP, "orders", order_created("o1", [("A", total_items, price)]), ports)
    return ports


def _run(app: App, ports: Ports) -> dict:
    return run_to_end(app, ports, new_state("order-o1", {"order_id": "o1"}, None))


def _with_step(name: str, **changes) -> App:
    steps = tuple(dataclasses.replace(s, **changes) if s.name == name else s
                  for s in ORDER_SAGA.steps)
    return dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, steps=steps))


def _fail_with(error: Exception) -> Callable[[StepContext], None]:
    def action(ctx: StepContext) -> None:
        raise error
    return action


def _compensations(state: dict) -> list[str]:
    return [h["step"] for h in state["history"] if h["phase"] == "compensate"
            and h["outcome"] == "ok"]


def test_happy_path_completes_once() -> None:
    ports = _setup()
    state = _run(APP, ports)
    assert state["status"] == "completed"
    assert [h["step"] for h in state["history"]] == STEPS + ["complete_order"]
    assert ports.store.get("orders", "o1")["status"] == "completed"
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 8, "reserved": 2}
    charges = [p for p in ports.store.items("payments").values() if p["kind"] == "charge"]
    assert [c["status"] for c in charges] == ["charged"]


def test_declined_payment_cancels_without_charging() -> None:
    ports = _setup(price=600.0)  # total 1200.00 > 1000.00
    state = _run(APP, ports)
    order = ports.store.get("orders", "o1")
    assert (state["status"], order["status"], order["reason"]) == \
        ("cancelled", "cancelled", "payment_declined")
    assert "above the limit of 1000.00" in order["reason_detail"]
    assert _compensations(state) == []
    assert state["history"][-1]["step"] == "cancel_order"
    assert ports.store.get("inventory", "A")["available"] == 10


def test_out_of_stock_refunds_and_cancels() -> None:
    ports = _setup(stock=1)
    state = _run(APP, ports)
    order = ports.store.get("orders", "o1")
    assert order["reason"] == "out_of_stock"
    assert "2 wanted, 1 available" in order["reason_detail"]
    assert _compensations(state) == ["payment"]
    kinds = sorted(p["kind"] for p in ports.store.items("payments").values())
    assert kinds == ["charge", "refund"]
    assert ports.store.get("inventory", "A")["available"] == 1


@pytest.mark.parametrize("k", range(len(STEPS)))
def test_business_failure_at_step_k_compensates_k_minus_1_to_1_in_reverse(k: int) -> None:
    ports = _setup()
    app = _with_step(STEPS[k], action=_fail_with(StepFailed("injected", f"at {STEPS[k]}")))
    state = _run(app, ports)
    expected = [s for s in reversed(STEPS[:k]) if s in COMPENSATED]
    assert state["status"] == "cancelled"
    assert _compensations(state) == expected
    assert state["history"][-1]["step"] == "cancel_order"
    order = ports.store.get("orders", "o1")
    assert (order["status"], order["reason"]) == ("cancelled", "injected")
    assert ports.store.get("inventory", "A")["available"] == 10
    charges = [p for p in ports.store.items("payments").values() if p["kind"] == "charge"]
    refunds = [p for p in ports.store.items("payments").values() if p["kind"] == "refund"]
    assert len(refunds) == len(charges)  # every charge made was refunded, once


@pytest.mark.parametrize("k", range(len(STEPS)))
def test_exhausted_transient_failure_at_step_k_also_undoes_step_k(k: int) -> None:
    ports = _setup()
    app = _with_step(STEPS[k], action=_fail_with(TransientError("downstream timeout")),
                     retry=Retry(3, 0.0, 1.0))
    state = _run(app, ports)
    attempts = [h for h in state["history"] if h["step"] == STEPS[k] and h["phase"] == "action"]
    assert len(attempts) == 3
    assert state["status"] == "cancelled"
    assert state["reason"] == f"{STEPS[k]}_failed"
    assert _compensations(state) == [s for s in reversed(STEPS[:k + 1]) if s in COMPENSATED]
    assert ports.store.get("inventory", "A")["available"] == 10
    assert ports.store.get("orders", "o1")["status"] == "cancelled"


def test_failing_compensation_is_retried_then_needs_attention_and_nothing_runs_forward() -> None:
    ports = _setup(stock=1)  # out of stock -> refund payment -> cancel order
    app = _with_step("payment", compensate=_fail_with(TransientError("refund API down")),
                     compensate_retry=Retry(4, 0.0, 1.0))
    state = _run(app, ports)
    assert state["status"] == "failed"
    assert "compensation payment failed" in state["reason"]
    refunds = [h for h in state["history"] if h["step"] == "payment"
               and h["phase"] == "compensate"]
    assert len(refunds) == 4
    # No forward step after the failure, and the order is not (yet) cancelled.
    assert state["history"][-1]["phase"] == "compensate"
    assert ports.store.get("orders", "o1")["status"] == "pending"
    assert tick(app, ports, state) == (state, None)


def test_compensation_that_recovers_completes_the_cancellation() -> None:
    ports = _setup(stock=1)
    real_refund = ORDER_SAGA.step("payment").compensate
    calls = {"n": 0}

    def flaky_refund(ctx: StepContext):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("refund API down")
        return real_refund(ctx)

    state = _run(_with_step("payment", compensate=flaky_refund,
                            compensate_retry=Retry(5, 0.0, 1.0)), ports)
    assert state["status"] == "cancelled"
    assert sum(p["kind"] == "refund" for p in ports.store.items("payments").values()) == 1


def test_step_that_times_out_after_the_charge_does_not_charge_twice() -> None:
    """Failure case 14: the retry reuses the step's idempotency key."""
    ports = _setup()
    real_charge = ports.payments.charge
    calls = {"n": 0}

    def charge_then_lose_reply(key: str, order_id: str, amount: int):  # type: ignore[no-untyped-def]
        result = real_charge(key, order_id, amount)
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("timed out waiting for the provider")
        return result

    ports.payments.charge = charge_then_lose_reply  # type: ignore[method-assign]
    state = _run(APP, ports)
    assert state["status"] == "completed"
    assert calls["n"] == 2
    charges = [p for p in ports.store.items("payments").values() if p["kind"] == "charge"]
    assert len(charges) == 1


def test_a_recorded_step_is_replayed_not_rerun() -> None:
    ports = _setup()
    state = new_state("order-o1", {"order_id": "o1"}, None)
    state, _ = tick(APP, ports, state)  # create_order
    first = run_step(APP, ports, "order-o1", "payment", "action", state)
    again = run_step(APP, ports, "order-o1", "payment", "action", state)
    assert not first.replayed and again.replayed and first.result == again.result


def test_concurrent_reservations_never_drive_stock_negative() -> None:
    """Failure case 15: 20 sagas race for 7 units; exactly 7 orders get one each."""
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 7), ports)
    for n in range(20):
        handle(APP, "orders", order_created(f"o{n}", [("A", 1, 1.0)]), ports)
    results: dict[str, str] = {}

    def run(n: int) -> None:
        state = run_to_end(APP, ports, new_state(f"order-o{n}", {"order_id": f"o{n}"}, None))
        results[f"o{n}"] = state["status"]

    threads = [threading.Thread(target=run, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(results.values()).count("completed") == 7
    assert ports.store.get("inventory", "A")["available"] == 0


def test_saga_definition_is_declared_as_data() -> None:
    assert [s.name for s in ORDER_SAGA.steps] == [
        "create_order", "payment", "reserve_inventory", "ship"]
    assert all(isinstance(s, Step) for s in ORDER_SAGA.all_steps())
    assert ORDER_SAGA.step("payment").retry == Retry(3, 1.0, 2.0)


def test_resume_continues_where_the_saga_stopped() -> None:
    from handlers.core.saga_runner import resume

    ports = _setup()
    broken_finish = dataclasses.replace(
        APP, saga=dataclasses.replace(ORDER_SAGA, on_success=dataclasses.replace(
            ORDER_SAGA.on_success, action=_fail_with(TransientError("store down")),
            retry=Retry(2, 0.0, 1.0))))
    state = _run(broken_finish, ports)
    assert (state["status"], state["failed_in"]) == ("failed", "running")
    state = run_to_end(APP, ports, resume(state))  # after the fix: finish, don't undo
    assert state["status"] == "completed"
    assert ports.store.get("orders", "o1")["status"] == "completed"
    assert _compensations(state) == []

    ports = _setup(stock=1)
    broken_refund = _with_step("payment", compensate=_fail_with(TransientError("down")),
                               compensate_retry=Retry(1, 0.0, 1.0))
    state = _run(broken_refund, ports)
    assert state["failed_in"] == "compensating"
    state = run_to_end(APP, ports, resume(state))
    assert state["status"] == "cancelled" and _compensations(state) == ["payment"]
    with pytest.raises(ValueError, match="not failed"):
        resume(state)
