"""The workflow compiled from the saga, run by workflows-emulator against the real step
endpoint (through a fault proxy), must behave exactly as `saga_runner` does.

For each scenario the same faults are injected into an in-memory run of `saga_runner`
(the reference semantics) and into the emulated workflow; the sequence of step calls
(retries included), the final status and the reason must match, and the side effects in
Firestore must be the ones the reference run produced.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from adapters.memory import MemorySagaStarter, memory_ports
from handlers.app import APP
from handlers.core import saga_runner
from handlers.core.app import App, Step
from handlers.core.engine import handle
from handlers.core.errors import PermanentError, TransientError
from handlers.core.ports import Ports
from handlers.orders import saga_id_for
from tests.factories import order_created, restock
from tests.gcp.conftest import GcpEmulated

pytestmark = pytest.mark.slow
OIDC_MARKER = "Bearer emulated-oidc-token"
FORWARD = [s.name for s in APP.saga.all_steps()]

Fault = tuple[str, str, int]  # step, phase, HTTP status (503 transient, 422 permanent)
_ERRORS: dict[int, type[Exception]] = {503: TransientError, 422: PermanentError}


def _faulty(app: App, faults: list[Fault], calls: list[tuple[str, str]]) -> App:
    """`app` whose saga steps record each call and fail as `faults` say."""
    failing = {(step, phase): _ERRORS[status] for step, phase, status in faults}

    def wrap(step: Step, phase: str, fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
        if fn is None:
            return None

        def run(ctx: Any) -> Any:
            calls.append((step.name, phase))
            error = failing.get((step.name, phase))
            if error is not None:
                raise error("injected fault")
            return fn(ctx)
        return run

    def rewrap(step: Step | None) -> Step | None:
        if step is None:
            return None
        return dataclasses.replace(step, action=wrap(step, "action", step.action),
                                   compensate=wrap(step, "compensate", step.compensate))

    saga = dataclasses.replace(app.saga, steps=tuple(rewrap(s) for s in app.saga.steps),
                               on_success=rewrap(app.saga.on_success),
                               on_failure=rewrap(app.saga.on_failure))
    return dataclasses.replace(app, saga=saga)


def _prepare(ports: Ports, order_id: str, item: str, quantity: int, price: float,
             in_stock: int) -> None:
    """The order (pending) and stock, written by the real handlers; the saga not started."""
    ports.sagas = MemorySagaStarter()
    handle(APP, "inventory", restock(item, in_stock), ports)
    handle(APP, "orders", order_created(order_id, [(item, quantity, price)]), ports)


def _reference(order: tuple[str, str, int, float, int], faults: list[Fault]
               ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    ports = memory_ports()
    _prepare(ports, *order)
    calls: list[tuple[str, str]] = []
    state = saga_runner.new_state(saga_id_for(order[0]), {"order_id": order[0]}, None)
    return saga_runner.run_to_end(_faulty(APP, faults, calls), ports, state), calls


def _execute(gcp: GcpEmulated, saga_id: str, order_id: str) -> tuple[int, Any]:
    argument = {"saga_id": saga_id, "input": {"order_id": order_id},
                "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    request = urllib.request.Request(
        gcp.execution_url(), data=json.dumps({"argument": json.dumps(argument)}).encode(),
        method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


SCENARIOS: dict[str, tuple[int, float, int, list[Fault]]] = {
    # name: (quantity, price, in stock, faults)
    "success": (2, 10.0, 5, []),
    "transient-once-then-ok": (1, 10.0, 5, []),  # faults added below: one 503 on payment
    **{f"{step}-exhausted": (1, 10.0, 5, [(step, "action", 503)]) for step in FORWARD},
    **{f"{step}-permanent": (1, 10.0, 5, [(step, "action", 422)]) for step in FORWARD[:4]},
    "payment-declined": (1, 5000.0, 5, []),
    "out-of-stock": (3, 10.0, 1, []),
    "refund-keeps-failing": (3, 10.0, 1, [("payment", "compensate", 503)]),
    "cancel-keeps-failing": (1, 5000.0, 5, [("cancel_order", "action", 503)]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_compiled_workflow_matches_the_saga_runner(
        name: str, gcp: GcpEmulated, store: Any) -> None:
    quantity, price, in_stock, faults = SCENARIOS[name]
    order_id, item = f"wf-{uuid.uuid4().hex[:10]}", f"sku-{uuid.uuid4().hex[:10]}"
    order = (order_id, item, quantity, price, in_stock)
    saga_id = saga_id_for(order_id)
    expected, expected_calls = _reference(order, faults)

    ports = memory_ports()
    ports.store = store  # the emulated Firestore, seen by the step endpoint too
    _prepare(ports, *order)
    for step, phase, status in faults:
        gcp.proxy.fail(saga_id, step, phase, status)
    if name == "transient-once-then-ok":
        gcp.proxy.fail(saga_id, "payment", "action", 503, times=1)
        expected_calls.insert(expected_calls.index(("payment", "action")), ("payment", "action"))

    status, result = _execute(gcp, saga_id, order_id)

    calls = [(step, phase) for _, step, phase in gcp.proxy.calls_for(saga_id)]
    assert calls == expected_calls
    if expected["status"] == "failed":
        assert status == 500, result  # raised SagaNeedsAttention: the execution fails
    else:
        assert status == 200, result
        assert result["status"] == expected["status"]
        assert result.get("reason") == expected["reason"]
    stored = store.get("orders", order_id)
    assert stored["status"] == {"completed": "completed", "cancelled": "cancelled",
                                "failed": "pending"}[expected["status"]]
    assert (store.get("inventory", item) or {}).get("available") == in_stock - (
        quantity if expected["status"] == "completed" else 0) or expected["status"] == "failed"
    for call in (c for c in gcp.proxy.calls if c["key"][0] == saga_id):
        assert call["authorization"] == OIDC_MARKER
        assert call["idempotency_key"] == ":".join(call["key"])
