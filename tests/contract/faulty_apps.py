"""Variants of the order system with one fault injected, for the contract scenarios.

Each is a complete `App`, loadable by name (`SWITCHYARD_APP=tests.contract.faulty_apps:X`)
so backends whose handlers run in another process can host it too.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

from handlers.app import APP
from handlers.core.app import App, Retry
from handlers.core.context import Context, StepContext
from handlers.core.errors import StepFailed, TransientError
from handlers.saga import ORDER_SAGA, process_payment

STEP_NAMES = [s.name for s in ORDER_SAGA.steps]
FAST = Retry(2, 0.01, 1.0)


def _with_step(name: str, **changes: Any) -> App:
    steps = tuple(dataclasses.replace(s, **changes) if s.name == name else s
                  for s in ORDER_SAGA.steps)
    return dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, steps=steps))


def _raise(error: Exception) -> Callable[[StepContext], Mapping[str, Any]]:
    def action(ctx: StepContext) -> Mapping[str, Any]:
        raise error
    return action


def _charge_then_time_out(ctx: StepContext) -> Mapping[str, Any]:
    """The provider charges, then the reply is lost once per saga (case 14)."""
    result = process_payment(ctx)
    if ctx.ports.store.put_if_absent("payments", f"fault|{ctx.saga_id}|timeout", {"kind": "fault"}):
        raise TransientError("timed out waiting for the payment provider")
    return result


#: A business failure at step k, for every k (case 12).
STEP_FAILS = {name: _with_step(name, action=_raise(StepFailed("injected", f"at {name}")))
              for name in STEP_NAMES}
CREATE_ORDER_FAILS = STEP_FAILS["create_order"]
PAYMENT_FAILS = STEP_FAILS["payment"]
RESERVE_INVENTORY_FAILS = STEP_FAILS["reserve_inventory"]
SHIP_FAILS = STEP_FAILS["ship"]
#: The refund never succeeds (case 13).
REFUND_BROKEN = _with_step("payment", compensate=_raise(TransientError("refund API down")),
                           compensate_retry=FAST)
#: The payment step times out after the provider charged (case 14).
PAYMENT_TIMES_OUT_AFTER_CHARGE = _with_step("payment", action=_charge_then_time_out)


def _fail_first_delivery_of_flaky_items(handler: Callable[[Context], None]
                                        ) -> Callable[[Context], None]:
    def flaky(ctx: Context) -> None:
        """Records for items named `flaky-*` fail once, transiently (case 9). The memory
        of the failure is outside the store: a runtime that undoes a failed handler's
        writes (the local one) would undo a marker kept there too."""
        item = str(ctx.event.data.get("item_id", ""))
        if item.startswith("flaky-"):
            with _FAILED_ONCE_LOCK:
                first = ctx.event.id not in _FAILED_ONCE
                _FAILED_ONCE.add(ctx.event.id)
            if first:
                raise TransientError(f"injected: first delivery of {item} fails")
        handler(ctx)
    return flaky


_FAILED_ONCE: set[str] = set()  # event ids are unique per test, so one set serves all
_FAILED_ONCE_LOCK = threading.Lock()


#: The inventory consumer fails the first delivery of each `flaky-*` record (case 9).
FLAKY_RECORDS_FAIL_ONCE = dataclasses.replace(APP, consumers=tuple(
    dataclasses.replace(c, handler=_fail_first_delivery_of_flaky_items(c.handler))
    if c.name == "inventory" else c for c in APP.consumers))


def _analytics_down(ctx: Any) -> None:
    raise TransientError("analytics warehouse unavailable")


#: One consumer of a fanned-out type always fails: the others must not notice (fan-out).
ANALYTICS_BROKEN = dataclasses.replace(APP, consumers=tuple(
    dataclasses.replace(c, handler=_analytics_down) if c.name == "order-analytics" else c
    for c in APP.consumers))
