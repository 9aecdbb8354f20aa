"""End to end on moto: seed entries on the bus -> rules -> queues -> Lambda entries ->
DynamoDB / bus / SNS -> the compiled saga in moto's Step Functions interpreter.

Every resource comes from the generators `infra/aws` deploys (`tests/aws/moto_stack.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.app import APP
from handlers.catalog import ORDER_CANCELLED, ORDER_COMPLETED, ORDER_CREATED
from handlers.core.eventbridge_binding import from_eventbridge_event
from handlers.saga import OUT_OF_STOCK, PAYMENT_DECLINED_REASON
from tests.aws.moto_stack import MotoStack

MAX_DELIVERIES = 5


def order_entry(order_id: str, items: list[tuple[str, int, float]],
                **detail: Any) -> dict[str, Any]:
    """The seeds' Order Created entry, exactly as they send it (Detail is the data)."""
    data = {"order_id": order_id, "customer_id": "456",
            "items": [{"item_id": i, "quantity": q, "price": p} for i, q, p in items],
            "total": round(sum(q * p for _, q, p in items), 2),
            "timestamp": "2024-01-01T00:00:00Z", **detail}
    return {"Source": "orders", "DetailType": "Order Created", "Detail": json.dumps(data)}


def restock_entry(item_id: str, quantity: int, event_id: str | None = None) -> dict[str, Any]:
    data = {"item_id": item_id, "quantity": quantity, "action": "restock"}
    detail = {"metadata": {"event_id": event_id}, "data": data} if event_id else data
    return {"Source": "inventory", "DetailType": "Inventory Updated",
            "Detail": json.dumps(detail)}


def trigger_entry(order_id: str) -> dict[str, Any]:
    return {"Source": "workflow", "DetailType": "Workflow Triggered",
            "Detail": json.dumps({"workflow_id": f"wf-{order_id}", "order_id": order_id})}


@pytest.fixture
def stack(aws: None) -> Iterator[MotoStack]:
    stack = MotoStack.create(APP, max_deliveries=MAX_DELIVERIES)
    with stack.lambda_service():
        yield stack


def _types_seen(stack: MotoStack) -> tuple[list[str], list[dict[str, Any]]]:
    """(catalog types of the bus events, SNS notifications) the observer saw."""
    types, notes = [], []
    for body in stack.observed():
        if "detail-type" in body:
            types.append(from_eventbridge_event(body, APP.catalog).type)
        else:
            notes.append(body)
    return types, notes


def test_seed_entries_complete_an_order(stack: MotoStack) -> None:
    answer = stack.put_events(restock_entry("A", 10), order_entry("123", [("A", 2, 10.0)]))
    assert answer["FailedEntryCount"] == 0
    stack.run_until_quiet()

    order = stack.item("orders", "123")
    assert order is not None and order["status"] == "completed"
    assert order["tracking_id"].startswith("trk-")
    assert stack.item("inventory", "A") == {"item_id": "A", "available": 8, "reserved": 2}
    execution = stack.execution("order-123")
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["status"] == "completed"
    types, notes = _types_seen(stack)
    assert ORDER_COMPLETED in types
    [note] = notes
    assert note["order_id"] == "123" and "has shipped" in note["message"]
    assert note["notification_id"]  # subscribers dedupe on it
    # Nothing dead-lettered anywhere.
    assert all(not stack.drain(url) for url in stack.dlq_urls.values())


def test_declined_payment_cancels_the_order(stack: MotoStack) -> None:
    stack.put_events(restock_entry("B", 5), order_entry("big", [("B", 1, 5000.0)]))
    stack.run_until_quiet()

    order = stack.item("orders", "big")
    assert order is not None
    assert (order["status"], order["reason"]) == ("cancelled", PAYMENT_DECLINED_REASON)
    assert stack.item("inventory", "B") == {"item_id": "B", "available": 5}
    execution = stack.execution("order-big")
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["status"] == "cancelled"
    charges = [p for p in stack.scan("payments") if p.get("kind") == "charge"]
    assert [c["status"] for c in charges] == ["declined"]
    types, notes = _types_seen(stack)
    assert ORDER_CANCELLED in types and "com.switchyard.payment.declined" in types
    assert [n["subject"] for n in notes] == ["Order big cancelled"]


def test_out_of_stock_refunds_and_cancels(stack: MotoStack) -> None:
    stack.put_events(restock_entry("C", 1), order_entry("short", [("C", 2, 10.0)]))
    stack.run_until_quiet()

    order = stack.item("orders", "short")
    assert order is not None and (order["status"], order["reason"]) == ("cancelled", OUT_OF_STOCK)
    assert stack.item("inventory", "C") == {"item_id": "C", "available": 1}
    kinds = sorted(p["kind"] for p in stack.scan("payments"))
    assert kinds == ["charge", "refund"]
    output = json.loads(stack.execution("order-short")["output"])
    assert output["status"] == "cancelled"
    assert output["results"]["payment:compensate"]["refunded"] is True
    types, _ = _types_seen(stack)
    assert types.count("com.switchyard.payment.refunded") == 1
    assert ORDER_CANCELLED in types and ORDER_COMPLETED not in types


@pytest.mark.parametrize("dead_lettered_by", ["function", "sqs-redrive"])
def test_poison_message_is_dead_lettered_after_exactly_max_deliveries(
    aws: None, dead_lettered_by: str
) -> None:
    """The function dead-letters on the last allowed delivery, with the reason; without
    that (a crash on the last delivery), the queue's redrive still does after exactly
    maxDeliveries receives."""
    stack = MotoStack.create(APP, max_deliveries=MAX_DELIVERIES,
                             functions_know_max_deliveries=dead_lettered_by == "function")
    with stack.lambda_service():
        # The trigger names an order that never arrives: a transient error every time.
        # A good order sent alongside must be unaffected by its neighbour failing.
        stack.put_events(trigger_entry("ghost"), restock_entry("D", 3),
                         order_entry("fine", [("D", 1, 1.0)]))
        stack.run_until_quiet()

    [(key, receives)] = [(k, n) for k, n in stack.receives.items() if n > 1]
    assert key[0] == "orders" and receives == MAX_DELIVERIES
    [dead] = stack.drain(stack.dlq_urls["orders"])
    body = json.loads(dead["Body"])
    assert body["detail"]["order_id"] == "ghost"
    assert stack.item("orders", "fine")["status"] == "completed"  # type: ignore[index]
    if dead_lettered_by == "function":
        reason = dead["MessageAttributes"]["reason"]["StringValue"]
        assert f"failed {MAX_DELIVERIES} deliveries (maxDeliveries={MAX_DELIVERIES})" in reason
        assert "not known yet" in reason


def test_permanent_error_is_dead_lettered_at_once_with_its_reason(stack: MotoStack) -> None:
    bad = {"Source": "orders", "DetailType": "Order Created",
           "Detail": json.dumps({"order_id": "x", "customer_id": "c"})}  # no items, no total
    stack.put_events(bad)
    stack.run_until_quiet()

    # Every consumer of the type got it once (fan-out) and dead-lettered it at once.
    assert list(stack.receives.values()) == [1] * len(stack.app.routes(ORDER_CREATED))
    [dead] = stack.drain(stack.dlq_urls["orders"])
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["error_type"] == "ValidationError"
    assert "items" in attributes["reason"] and "total" in attributes["reason"]
    assert attributes["consumer"] == "orders" and attributes["receive_count"] == "1"
    assert stack.item("orders", "x") is None


def test_http_ingress_publishes_to_the_bus(stack: MotoStack) -> None:
    """API Gateway (HTTP API, payload 2.0) -> ingest function -> PutEvents -> consumers."""
    body = json.dumps({"Entries": [restock_entry("H", 2), order_entry("web", [("H", 1, 3.0)])]})
    answer = stack.invoke(stack.names.ingest_function(), {
        "version": "2.0", "routeKey": "POST /events", "rawPath": "/events",
        "headers": {"content-type": "application/json"}, "body": body,
        "isBase64Encoded": False,
        "requestContext": {"http": {"method": "POST", "path": "/events"}}})
    assert answer["statusCode"] == 202
    assert json.loads(answer["body"])["accepted"] == 2
    stack.run_until_quiet()
    assert stack.item("orders", "web")["status"] == "completed"  # type: ignore[index]
    assert stack.item("inventory", "H") == {"item_id": "H", "available": 1, "reserved": 1}


def test_duplicate_put_events_have_one_effect(stack: MotoStack) -> None:
    # Same seed envelope (same event id) twice, and the same plain order twice (EventBridge
    # gives each a new id: the order id makes it a no-op).
    for _ in range(2):
        stack.put_events(restock_entry("E", 10, event_id="restock-e-1"))
        stack.put_events(order_entry("dup", [("E", 3, 2.0)]))
    stack.run_until_quiet()

    assert stack.item("inventory", "E") == {"item_id": "E", "available": 7, "reserved": 3}
    charges = [p for p in stack.scan("payments") if p.get("kind") == "charge"]
    assert len(charges) == 1
    sfn = stack.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert [e["name"] for e in executions] == ["order-dup"]
    types, notes = _types_seen(stack)
    assert types.count(ORDER_COMPLETED) == 1 and len(notes) == 1
    # Both deliveries of each reached the consumers: the second ones were no-ops.
    assert sum(n for (c, _), n in stack.receives.items() if c == "inventory") == 2
