"""One order is one trace, on every backend: spans from the front door through every
delivery, saga step, compensation and notification, linked by the traceparent the events
carry; a retried delivery says which attempt it was and how it ended (README "Tracing").

Spans go to the OpenTelemetry SDK's in-memory exporter (`tests/spans.py`).
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from handlers.catalog import INVENTORY_UPDATED, NOTIFICATION_SENT, ORDER_CREATED
from handlers.core import tracing
from handlers.saga import ORDER_SAGA
from tests.contract.conftest import MakeBackend
from tests.factories import order_data
from tests.spans import attr, is_child, named, recording, the, tree


def _entry(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}


def _restock(item: str, quantity: int) -> dict[str, Any]:
    return _entry("inventory", "Inventory Updated",
                  {"item_id": item, "quantity": quantity, "action": "restock"})


def _through_the_front_door(backend: Any, entries: list[dict[str, Any]]) -> None:
    """POST /events at the platform's HTTP ingress: the ingest function on AWS and GCP,
    the runtime's ingest (what `serve` calls) locally."""
    if backend.name == "aws":
        stack = backend.stack
        answer = stack.invoke(stack.names.ingest_function(), {
            "version": "2.0", "routeKey": "POST /events", "rawPath": "/events",
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"Entries": entries}), "isBase64Encoded": False,
            "requestContext": {"http": {"method": "POST", "path": "/events"}}})
        assert answer["statusCode"] == 202, answer
    else:
        backend.publish_entries(entries)


def _ingress(spans: list[ReadableSpan], type_: str) -> ReadableSpan:
    return the([s for s in named(spans, f"send {type_}")
                if str(attr(s, tracing.OPERATION_NAME)).startswith("ingress")], "ingress")


def _trace_of(spans: list[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [s for s in spans if s.context and s.context.trace_id == root.context.trace_id]


def _order(backend: Any, order_id: str, lines: list[tuple[str, int, float]]
           ) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """Stock first (untraced), then the order, traced: (its trace, every span)."""
    _through_the_front_door(backend, [_restock(item, 5) for item, _, _ in lines])
    backend.settle()
    with recording() as exporter:
        _through_the_front_door(backend, [_entry("orders", "Order Created",
                                                 order_data(order_id, lines))])
        backend.settle()
        spans = list(exporter.get_finished_spans())
    return _trace_of(spans, _ingress(spans, ORDER_CREATED)), spans


def test_one_order_is_one_trace_from_ingress_to_notification(make_backend: MakeBackend
                                                             ) -> None:
    backend = make_backend()
    trace, spans = _order(backend, "traced", [("T", 1, 10.0)])
    assert backend.order("traced")["status"] == "completed"
    shown = tree(trace)
    ingress = _ingress(spans, ORDER_CREATED)
    orders = the(named(trace, "process orders"), "orders delivery")
    assert is_child(orders, ingress), shown
    assert (attr(orders, tracing.OUTCOME), attr(orders, tracing.STATUS)) == ("ok", "processed")
    steps = [f"saga {s.name}" for s in ORDER_SAGA.all_steps()] + ["saga complete_order"]
    for name in steps:
        step = the(named(trace, name), name)
        assert is_child(step, orders), shown  # the saga runs in the trace of its start
        assert attr(step, tracing.STEP_OUTCOME) == "ok"
    # Every saga step run anywhere during the order is in its trace: none started another.
    assert {s.name for s in spans if attr(s, tracing.STEP)} <= {s.name for s in trace}
    notified = the(named(trace, "process notifications"), "notification delivery")
    sender = [s for s in trace if is_child(notified, s)]
    assert sender and sender[0].name.startswith("saga "), shown
    # What a delivery or step publishes is a producer span under it.
    published = [s for s in trace if s.name.startswith("send ") and s is not ingress]
    assert published, shown
    for span in published:
        assert any(is_child(span, s) for s in trace if not s.name.startswith("send ")), shown
    assert any(is_child(span, sender[0]) for span in named(trace, f"send {NOTIFICATION_SENT}"))


def test_a_compensation_is_in_the_order_trace(make_backend: MakeBackend) -> None:
    backend = make_backend()
    # Stock for 1, an order for 3: reserve_inventory fails, the payment is refunded.
    _through_the_front_door(backend, [_restock("C", 1)])
    backend.settle()
    with recording() as exporter:
        _through_the_front_door(backend, [_entry("orders", "Order Created",
                                                 order_data("short", [("C", 3, 10.0)]))])
        backend.settle()
        spans = list(exporter.get_finished_spans())
    trace = _trace_of(spans, _ingress(spans, ORDER_CREATED))
    assert backend.order("short")["status"] == "cancelled"
    orders = the(named(trace, "process orders"), "orders delivery")
    failed = the(named(trace, "saga reserve_inventory"), "reserve_inventory")
    refund = the(named(trace, "compensate payment"), "refund")
    cancel = the(named(trace, "saga cancel_order"), "cancel_order")
    assert attr(failed, tracing.STEP_OUTCOME) == "failed"
    assert (attr(refund, tracing.PHASE), attr(refund, tracing.STEP_OUTCOME)) == \
        ("compensate", "ok")
    for span in (failed, refund, cancel):
        assert is_child(span, orders), tree(trace)
    assert failed.start_time < refund.start_time < cancel.start_time  # type: ignore[operator]


def test_a_retried_delivery_says_its_attempt_and_outcome(make_backend: MakeBackend) -> None:
    backend = make_backend(fault="FLAKY_RECORDS_FAIL_ONCE")
    with recording() as exporter:
        _through_the_front_door(backend, [_restock("flaky-1", 4)])
        backend.settle()
        spans = list(exporter.get_finished_spans())
    assert backend.available("flaky-1") == 4
    ingress = _ingress(spans, INVENTORY_UPDATED)
    deliveries = named(_trace_of(spans, ingress), "process inventory")
    assert [(attr(s, tracing.ATTEMPT), attr(s, tracing.OUTCOME)) for s in deliveries] == \
        [(1, "retry"), (2, "ok")], tree(spans)
    assert all(is_child(s, ingress) for s in deliveries)
    assert all(attr(s, tracing.EVENT_TYPE) == INVENTORY_UPDATED for s in deliveries)


def test_the_last_failed_attempt_is_dead_lettered(make_backend: MakeBackend) -> None:
    backend = make_backend(fault="ANALYTICS_BROKEN")
    _through_the_front_door(backend, [_restock("D", 5)])
    backend.settle()
    with recording() as exporter:
        _through_the_front_door(backend, [_entry("orders", "Order Created",
                                                 order_data("dead", [("D", 1, 10.0)]))])
        backend.settle()
        spans = list(exporter.get_finished_spans())
    ingress = _ingress(spans, ORDER_CREATED)
    trace = _trace_of(spans, ingress)
    tries = [s for s in named(trace, "process order-analytics") if is_child(s, ingress)]
    last = backend.max_deliveries
    assert [(attr(s, tracing.ATTEMPT), attr(s, tracing.OUTCOME)) for s in tries] == \
        [(n, "retry") for n in range(1, last)] + [(last, "dead-letter")], tree(trace)
