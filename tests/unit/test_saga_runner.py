"""The saga runner's state machine, tick by tick: when it runs again, how many attempts
each step and each compensation gets, and what a compensation's refusal does.

Every compensation starts with its own full retry budget, whatever the failed forward
step used; a compensation or forward move that can run now is due at once (delay 0); a
compensation that refuses (a business failure) cannot be retried away: the saga needs
attention at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.core.app import App, Retry
from handlers.core.context import StepContext
from handlers.core.engine import handle
from handlers.core.errors import PermanentError, StepFailed, TransientError
from handlers.core.ports import Ports
from handlers.core.saga_runner import new_state, run_to_end, tick
from handlers.saga import ORDER_SAGA
from tests.factories import order_created, restock


def _setup() -> Ports:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 5), ports)
    handle(APP, "orders", order_created("o1", [("A", 1, 10.0)]), ports)
    return ports


def _state() -> dict:
    return new_state("order-o1", {"order_id": "o1"}, None)


def _app(**steps: dict) -> App:
    saga_steps = tuple(dataclasses.replace(s, **steps[s.name]) if s.name in steps else s
                       for s in ORDER_SAGA.steps)
    return dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, steps=saga_steps))


def _failing_times(n: int, then: Callable[[StepContext], object] | None = None,
                   error: Exception | None = None) -> Callable[[StepContext], object]:
    calls = {"n": 0}

    def step(ctx: StepContext) -> object:
        calls["n"] += 1
        if calls["n"] <= n:
            raise error or TransientError(f"down ({calls['n']})")
        return then(ctx) if then else {"done": True}
    return step


def _ticks(app: App, ports: Ports, state: dict) -> list[tuple[str, float | None]]:
    seen = []
    for _ in range(100):
        state, delay = tick(app, ports, state)
        seen.append((state["status"], delay))
        if delay is None:
            return seen
    raise AssertionError("did not finish")


def test_after_a_business_failure_every_compensation_is_due_at_once() -> None:
    ports = _setup()
    app = _app(ship={"action": _failing_times(1, error=StepFailed("nope", "carrier"))})
    ticks = _ticks(app, ports, _state())
    # create, payment, reserve: forward at once; ship fails -> compensating at once;
    # release, refund, then create_order (no compensation: skipped at once); cancel.
    assert ticks == [("running", 0.0)] * 3 + [("compensating", 0.0)] * 4 + [
        ("cancelled", None)]


def test_each_compensation_gets_its_full_retry_budget_after_an_exhausted_step() -> None:
    """reserve_inventory used all 3 of its attempts; the compensations that follow
    (release, then refund) may each fail twice and still succeed on their 3rd."""
    ports = _setup()
    app = _app(
        reserve_inventory={"action": _failing_times(10**6), "retry": Retry(3, 0.0, 1.0),
                           "compensate": _failing_times(2, then=lambda ctx: {"released": []}),
                           "compensate_retry": Retry(3, 0.0, 1.0)},
        payment={"compensate": _failing_times(2, then=lambda ctx: {"refunded": False}),
                 "compensate_retry": Retry(3, 0.0, 1.0)})
    state = run_to_end(app, ports, _state())
    assert state["status"] == "cancelled", state["reason"]
    comp = [(h["step"], h["attempt"], h["outcome"]) for h in state["history"]
            if h["phase"] == "compensate"]
    assert comp == [("reserve_inventory", 1, "error"), ("reserve_inventory", 2, "error"),
                    ("reserve_inventory", 3, "ok"), ("payment", 1, "error"),
                    ("payment", 2, "error"), ("payment", 3, "ok")]


def test_a_compensation_of_the_first_step_runs_too() -> None:
    undone: list[str] = []

    def undo_create(ctx: StepContext) -> dict:
        undone.append(ctx.step)
        return {"undone": True}

    ports = _setup()
    app = _app(create_order={"compensate": undo_create},
               payment={"action": _failing_times(1, error=StepFailed("declined", "x"))})
    state = run_to_end(app, ports, _state())
    assert state["status"] == "cancelled"
    assert undone == ["create_order"]
    assert state["results"]["create_order:compensate"] == {"undone": True}


def test_a_compensation_that_refuses_needs_attention_at_once() -> None:
    ports = _setup()
    refuse = _failing_times(10**6, error=StepFailed("cannot_refund", "card closed"))
    app = _app(payment={"compensate": refuse, "compensate_retry": Retry(5, 0.0, 1.0)},
               reserve_inventory={"action": _failing_times(1, error=StepFailed("x", "y"))})
    state = run_to_end(app, ports, _state())
    assert state["status"] == "failed" and state["failed_in"] == "compensating"
    assert state["reason"] == "x; compensation payment failed: refused: cannot_refund"
    attempts = [h for h in state["history"] if h["phase"] == "compensate"
                and h["step"] == "payment"]
    assert [h["detail"] for h in attempts] == ["refused: cannot_refund"]  # not retried
    assert ports.store.get("orders", "o1")["status"] == "pending"  # nothing ran forward


def test_a_step_with_no_compensation_is_skipped_when_undoing() -> None:
    ports = _setup()
    app = _app(ship={"action": _failing_times(1, error=StepFailed("nope", "no"))})
    state = run_to_end(app, ports, _state())
    undone = [h["step"] for h in state["history"] if h["phase"] == "compensate"]
    assert undone == ["reserve_inventory", "payment"]  # not ship, not create_order


def test_the_history_of_a_declined_order_says_what_ran_and_why_it_stopped() -> None:
    ports = memory_ports()
    handle(APP, "orders", order_created("o1", [("A", 1, 2000.0)]), ports)
    state = run_to_end(APP, ports, _state())
    assert state["history"] == [
        {"step": "create_order", "phase": "action", "attempt": 1, "outcome": "ok",
         "detail": ""},
        {"step": "payment", "phase": "action", "attempt": 1, "outcome": "failed",
         "detail": "payment_declined"},
        {"step": "cancel_order", "phase": "action", "attempt": 1, "outcome": "ok",
         "detail": ""}]


def test_errors_are_noted_with_their_text_and_a_step_that_recovers_resets_the_count() -> None:
    """payment fails twice then works: its errors are in the history; reserve_inventory,
    next, still gets all 3 of its attempts."""
    ports = _setup()
    app = _app(payment={"action": _failing_times(2, then=ORDER_SAGA.step("payment").action),
                        "retry": Retry(3, 0.0, 1.0)},
               reserve_inventory={"action": _failing_times(
                   2, then=ORDER_SAGA.step("reserve_inventory").action),
                   "retry": Retry(3, 0.0, 1.0)})
    state = run_to_end(app, ports, _state())
    assert state["status"] == "completed"
    notes = [(h["step"], h["attempt"], h["outcome"], h["detail"]) for h in state["history"]
             if h["step"] in ("payment", "reserve_inventory")]
    assert notes == [("payment", 1, "error", "down (1)"), ("payment", 2, "error", "down (2)"),
                     ("payment", 3, "ok", ""),
                     ("reserve_inventory", 1, "error", "down (1)"),
                     ("reserve_inventory", 2, "error", "down (2)"),
                     ("reserve_inventory", 3, "ok", "")]


def test_a_permanent_error_in_a_step_is_not_retried() -> None:
    ports = _setup()
    app = _app(ship={"action": _failing_times(10**6, error=PermanentError("bad address")),
                     "retry": Retry(5, 0.0, 1.0)})
    state = run_to_end(app, ports, _state())
    assert state["status"] == "cancelled" and state["reason"] == "ship_failed"
    assert state["reason_detail"] == "PermanentError: bad address"
    ship = [h for h in state["history"] if h["step"] == "ship"]
    assert [(h["attempt"], h["outcome"]) for h in ship] == [(1, "error")]


def test_a_tick_never_changes_the_state_it_was_given() -> None:
    ports = _setup()
    state = _state()
    before = {**state, "results": dict(state["results"]), "history": list(state["history"])}
    after, _ = tick(APP, ports, state)
    assert state == before
    assert after["results"] and after["history"] and after is not state


def test_a_new_saga_is_running_at_its_first_step_with_nothing_done_and_no_reason() -> None:
    """The state the local executor stores from the start (and shows); the clouds start
    their executions with the same fields (`asl.execution_input`)."""
    from adapters.aws.asl import execution_input

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    given = {"order_id": "o1"}
    state = new_state("order-o1", given, traceparent)
    assert state == {
        "saga_id": "order-o1", "input": {"order_id": "o1"}, "traceparent": traceparent,
        "status": "running", "index": 0, "comp_index": -1, "attempt": 0, "results": {},
        "reason": None, "reason_detail": None, "history": []}
    assert state["input"] is not given
    cloud = execution_input("order-o1", given, traceparent)
    assert {k: state[k] for k in cloud} == cloud


def test_a_finish_that_keeps_failing_needs_attention_naming_it_and_undoes_nothing() -> None:
    """The order shipped: a `complete_order` that exhausts its retries is not a reason to
    refund. The saga needs attention in its forward steps, with the step and its last
    error as the reason."""
    ports = _setup()
    finish = dataclasses.replace(ORDER_SAGA.on_success, retry=Retry(2, 0.0, 1.0),
                                 action=_failing_times(10**6))
    app = dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, on_success=finish))
    state = run_to_end(app, ports, _state())
    assert (state["status"], state["failed_in"], state["reason"], state["reason_detail"]) == (
        "failed", "running", "complete_order_failed", "TransientError: down (2)")
    assert [(h["step"], h["attempt"], h["outcome"]) for h in state["history"][-2:]] == [
        ("complete_order", 1, "error"), ("complete_order", 2, "error")]
    assert not [h for h in state["history"] if h["phase"] == "compensate"]
    assert ports.store.get("orders", "o1")["status"] == "pending"
