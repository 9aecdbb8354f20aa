"""The same scenarios on every backend: the failure cases of docs/failure-cases.md, the reference
events of docs/reference-events.md (the seeds), redrive.

Each test names its failure case. A backend that cannot express a case marks it
xfail with the platform reason; nothing is skipped silently.
"""

from __future__ import annotations

import json
import threading

import pytest

from handlers.catalog import (
    ANALYTICS_ORDER_RECORDED,
    FILE_PROCESSED,
    INVENTORY_DRIFT_DETECTED,
    INVENTORY_UPDATED,
)
from handlers.core.events import Event
from tests.contract.conftest import MakeBackend
from tests.contract.faulty_apps import STEP_NAMES
from tests.factories import order_created, order_data, restock, workflow_triggered

COMPENSATED = {"payment", "reserve_inventory"}


def _entry(source: str, detail_type: str, detail: dict) -> dict:
    return {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}


def _charges(backend) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {p["order_id"]: p for p in backend.payments() if p.get("kind") == "charge"}


def _refunded(backend) -> set[str]:  # type: ignore[no-untyped-def]
    return {p["charge_id"] for p in backend.payments() if p.get("kind") == "refund"}


def test_seed_events_end_to_end(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.publish_entries([
        _entry("inventory", "Inventory Updated", {"item_id": "A", "quantity": 10,
                                                  "action": "restock"}),
        _entry("inventory", "Inventory Updated", {"item_id": "B", "quantity": 1,
                                                  "action": "restock"}),
    ])
    backend.settle()
    backend.publish_entries([
        _entry("orders", "Order Created", order_data("s1", [("A", 2, 10.0)])),
        _entry("orders", "Order Created", order_data("s2", [("A", 1, 1500.0)])),
        _entry("orders", "Order Created", order_data("s3", [("B", 3, 10.0)])),
    ])
    backend.settle()
    assert backend.order("s1")["status"] == "completed"
    assert (backend.order("s2")["status"], backend.order("s2")["reason"]) == \
        ("cancelled", "payment_declined")
    assert (backend.order("s3")["status"], backend.order("s3")["reason"]) == \
        ("cancelled", "out_of_stock")
    assert backend.available("A") == 8 and backend.available("B") == 1
    charges = _charges(backend)
    assert charges["s3"]["charge_id"] in _refunded(backend)
    assert charges["s1"]["charge_id"] not in _refunded(backend)
    assert backend.dead_letters() == []
    # The seeds' Workflow Triggered for an order whose saga ran starts nothing new.
    backend.publish_entries([_entry("workflow", "Workflow Triggered",
                                    {"workflow_id": "w", "order_id": "s1"})])
    backend.settle()
    assert backend.saga_status("s1") == "completed" and backend.available("A") == 8


def test_case01_duplicate_delivery_has_one_effect(make_backend: MakeBackend) -> None:
    backend = make_backend()
    event = restock("A", 5)
    backend.publish([event, event])
    threads = [threading.Thread(target=backend.publish, args=([event],)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.settle()
    assert backend.available("A") == 5
    assert backend.dead_letters() == []  # concurrent duplicates are no-ops, not failures


def test_case01_same_order_resent_under_new_id_starts_one_saga(make_backend: MakeBackend
                                                               ) -> None:
    backend = make_backend()
    backend.publish([restock("A", 5)])
    backend.settle()
    backend.publish([order_created("d1", [("A", 1, 2.0)]), order_created("d1", [("A", 1, 2.0)])])
    backend.settle()
    assert backend.order("d1")["status"] == "completed"
    assert backend.available("A") == 4
    assert len([c for c in backend.payments() if c.get("kind") == "charge"]) == 1


def test_case02_same_key_different_payload_is_refused(make_backend: MakeBackend) -> None:
    backend = make_backend()
    first = restock("A", 5)
    backend.publish([first])
    backend.settle()
    backend.publish([Event(id=first.id, source=first.source, type=first.type,
                           data={**first.data, "quantity": 500})])
    backend.settle()
    assert backend.available("A") == 5
    (dead,) = backend.dead_letters()
    assert dead.attempts == 1 and "different payload" in dead.reason


def test_case05_schema_violation_is_dead_lettered_at_once_listing_every_problem(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    bad = Event.new("orders", "com.switchyard.order.created",
                    {"order_id": "x", "items": [], "total": -1})
    backend.publish([bad])
    backend.settle()
    (dead,) = [d for d in backend.dead_letters() if d.consumer == "orders"]
    assert (dead.consumer, dead.event_id, dead.attempts) == ("orders", bad.id, 1)
    for problem in ("data.customer_id is required", "data.items must have at least 1 item",
                    "data.total must be >= 0"):
        assert problem in dead.reason
    assert backend.order("x") is None


def test_case06_unknown_type_is_acknowledged_not_retried(make_backend: MakeBackend) -> None:
    backend = make_backend()
    odd = Event.new("elsewhere", "com.example.unknown", {"x": 1})
    backend.publish([odd, restock("A", 1)])
    backend.settle()
    assert backend.dead_letters() == []
    assert backend.available("A") == 1


def test_case08_poison_message_gets_exactly_max_deliveries(make_backend: MakeBackend) -> None:
    backend = make_backend()
    poison = workflow_triggered("never-created")
    healthy = restock("A", 3)
    backend.publish([poison, healthy])
    backend.settle()
    assert backend.deliveries("orders", poison.id) == backend.max_deliveries
    (dead,) = backend.dead_letters()
    assert dead.event_id == poison.id and "not known yet" in dead.reason
    assert backend.available("A") == 3


def test_case09_partial_batch_only_failed_records_are_retried(make_backend: MakeBackend
                                                              ) -> None:
    backend = make_backend(fault="FLAKY_RECORDS_FAIL_ONCE")
    # Records 3 and 7 (1-based) of a batch of 10 fail on their first delivery.
    events = [restock(f"flaky-{n}" if n in (3, 7) else f"ok-{n}", n) for n in range(1, 11)]
    failed = backend.deliver_batch("inventory", events)
    assert failed == [events[2].id, events[6].id]
    done = [e for n, e in enumerate(events, 1) if n not in (3, 7)]
    assert [backend.available(e.data["item_id"]) for e in done] == \
        [e.data["quantity"] for e in done]
    assert backend.available("flaky-3") == 0 and backend.available("flaky-7") == 0
    backend.settle()
    assert [backend.available(e.data["item_id"]) for e in events] == list(range(1, 11))
    assert [backend.deliveries("inventory", e.id) for e in events] == \
        [2 if n in (3, 7) else 1 for n in range(1, 11)]
    assert backend.dead_letters() == []


def test_case11_publish_with_failed_entries_resends_only_those(make_backend: MakeBackend
                                                               ) -> None:
    backend = make_backend()
    events = [restock(f"p-{n}", n) for n in range(1, 7)]
    sent = backend.publish_with_failures(events, refuse=[1, 4])
    assert [sent[e.id] for e in events] == [1, 2, 1, 1, 2, 1]
    backend.settle()
    assert [backend.available(f"p-{n}") for n in range(1, 7)] == list(range(1, 7))
    assert [backend.deliveries("inventory", e.id) for e in events] == [1] * 6
    assert backend.dead_letters() == []


@pytest.mark.parametrize("k", range(len(STEP_NAMES)), ids=STEP_NAMES)
def test_case12_step_k_fails_compensations_run_in_reverse_once(make_backend: MakeBackend,
                                                               k: int) -> None:
    backend = make_backend(fault=f"{STEP_NAMES[k].upper()}_FAILS")
    backend.publish([restock("A", 5)])
    backend.settle()
    backend.publish([order_created("f1", [("A", 2, 10.0)])])
    backend.settle()
    order = backend.order("f1")
    assert (order["status"], order["reason"]) == ("cancelled", "injected")
    assert backend.saga_status("f1") == "cancelled"
    assert backend.available("A") == 5  # a reservation made before step k was released
    charge = _charges(backend).get("f1")
    charged_before_k = "payment" in STEP_NAMES[:k]
    assert (charge is not None) == charged_before_k
    if charge:
        assert charge["charge_id"] in _refunded(backend)
        assert len([p for p in backend.payments() if p.get("kind") == "refund"]) == 1


def test_case13_failing_compensation_needs_attention(make_backend: MakeBackend) -> None:
    backend = make_backend(fault="REFUND_BROKEN")
    backend.publish([restock("A", 1)])
    backend.settle()
    backend.publish([order_created("r1", [("A", 2, 10.0)])])  # out of stock -> refund
    backend.settle()
    assert backend.saga_status("r1") == "failed"
    assert backend.order("r1")["status"] == "pending"  # no step ran after the failure
    assert any("compensation payment failed" in d.reason for d in backend.dead_letters())


def test_case14_timeout_after_success_does_not_charge_twice(make_backend: MakeBackend
                                                            ) -> None:
    backend = make_backend(fault="PAYMENT_TIMES_OUT_AFTER_CHARGE")
    backend.publish([restock("A", 5)])
    backend.settle()
    backend.publish([order_created("t1", [("A", 1, 10.0)])])
    backend.settle()
    assert backend.order("t1")["status"] == "completed"
    assert len([p for p in backend.payments() if p.get("kind") == "charge"]) == 1


def test_case15_stock_never_negative_under_concurrent_reservations(make_backend: MakeBackend
                                                                   ) -> None:
    backend = make_backend()
    backend.publish([restock("A", 4)])
    backend.settle()
    backend.publish([order_created(f"c{n}", [("A", 1, 1.0)]) for n in range(10)])
    backend.settle()
    statuses = [backend.order(f"c{n}")["status"] for n in range(10)]
    assert statuses.count("completed") == 4 and statuses.count("cancelled") == 6
    assert backend.available("A") == 0


def test_case16_dead_letters_are_listed_and_redriven_after_a_fix(make_backend: MakeBackend
                                                                 ) -> None:
    backend = make_backend()
    early = workflow_triggered("late")  # arrives before its order: poison until fixed
    backend.publish([early])
    backend.settle()
    (dead,) = backend.dead_letters()
    assert dead.event_id == early.id and dead.attempts == backend.max_deliveries
    backend.publish([restock("A", 1), order_created("late", [("A", 1, 1.0)])])  # the fix
    backend.settle()
    assert backend.redrive() == 1
    assert backend.redrive() == 0  # redrive is idempotent
    backend.settle()
    assert backend.dead_letters() == []
    assert backend.order("late")["status"] == "completed"
    assert len(_charges(backend)) == 1


# --- event sources and patterns ---------------------------------------------------------

RESTOCK_CSV = (b"item_id,quantity,action\n"
               b"A,5,restock\n"
               b"B,abc,restock\n"
               b"C,2,\n"
               b",3,restock\n")


def _rejects(backend) -> list:  # type: ignore[no-untyped-def]
    return [d for d in backend.dead_letters() if d.consumer == "upload-rejects"]


def test_upload_csv_applies_valid_rows_once_and_dead_letters_bad_rows(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.upload("restock-1.csv", RESTOCK_CSV)
    backend.settle()
    assert (backend.available("A"), backend.available("B"), backend.available("C")) == \
        (5, 0, 2)
    reasons = sorted(d.reason for d in _rejects(backend))
    assert len(reasons) == 2
    assert "line 3: quantity must be a positive integer (got 'abc')" in reasons[0]
    assert "line 5: item_id is empty" in reasons[1]
    assert all(d.attempts == 1 for d in _rejects(backend))
    (report,) = backend.published(FILE_PROCESSED)
    assert (report["data"]["accepted"], report["data"]["rejected"]) == (2, 2)
    # The same file again, under its name and under another: no second effect.
    backend.upload("restock-1.csv", RESTOCK_CSV)
    backend.upload("restock-1-again.csv", RESTOCK_CSV)
    backend.settle()
    assert (backend.available("A"), backend.available("C")) == (5, 2)
    assert len(_rejects(backend)) == 2
    assert [d for d in backend.dead_letters() if d.consumer != "upload-rejects"] == []


def test_upload_orders_csv_places_whole_orders_only(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.publish([restock("A", 10), restock("B", 10)])
    backend.settle()
    backend.upload("orders.csv", b"order_id,customer_id,item_id,quantity,price\n"
                                 b"u1,c9,A,2,10.00\n"
                                 b"u1,c9,B,1,5.50\n"
                                 b"u2,c9,A,1,-3\n"
                                 b"u2,c9,B,1,1.00\n")
    backend.settle()
    order = backend.order("u1")
    assert order["status"] == "completed" and order["total_cents"] == 2550
    assert backend.order("u2") is None  # half an order is never placed
    assert sorted(len(d.reason) > 0 and d.reason.count("order 'u2' rejected")
                  for d in _rejects(backend)) == [1, 1]
    assert (backend.available("A"), backend.available("B")) == (8, 9)


def test_claim_check_carries_a_2mb_event(make_backend: MakeBackend) -> None:
    backend = make_backend()
    big = Event.new("inventory", INVENTORY_UPDATED, {
        "item_id": "A", "quantity": 5, "action": "restock",
        "manifest": "m" * (2 * 1024 * 1024)})
    backend.producer().publish([big])
    backend.settle()
    assert backend.available("A") == 5
    assert backend.dead_letters() == []
    (travelled,) = [e for e in backend.published(INVENTORY_UPDATED) if e["id"] == big.id]
    assert travelled.get("data") is None and travelled["claimcheck"].startswith("claims/")
    assert len(backend.blob_keys("claims")) == 1


def test_transformer_forwards_new_events_with_new_ids(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.publish([restock("A", 5)])
    backend.settle()
    created = order_created("t7", [("A", 2, 10.0)])
    backend.publish([created])
    backend.settle()
    records = {e["data"]["record_id"]: e for e in backend.published(ANALYTICS_ORDER_RECORDED)}
    assert set(records) == {"t7:created", "t7:completed"}
    flat = records["t7:created"]
    assert flat["data"]["source_event_id"] == created.id and flat["id"] != created.id
    assert (flat["data"]["total_cents"], flat["data"]["item_count"]) == (2000, 2)


def test_schedule_firing_audits_stock_once_per_slot(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.publish([restock("A", 5)])
    backend.settle()
    backend.publish([order_created("s9", [("A", 2, 1.0)])])
    backend.settle()
    slot = "2026-11-23T03:00:00Z"
    backend.fire_schedule("inventory-audit", slot)
    backend.fire_schedule("inventory-audit", slot)  # at-least-once firing
    backend.settle()
    audit = backend.item("audits", f"inventory-audit@{slot}")
    assert audit is not None and audit["items_checked"] == 1
    assert audit["drifting"] == [] and audit["unledgered"] == []
    assert backend.published(INVENTORY_DRIFT_DETECTED) == []
    assert backend.dead_letters() == []


def test_fan_out_failing_consumer_never_blocks_the_others(make_backend: MakeBackend) -> None:
    backend = make_backend(fault="ANALYTICS_BROKEN")
    backend.publish([restock("A", 5)])
    backend.settle()
    created = order_created("fo1", [("A", 1, 3.0)])
    backend.publish([created])
    backend.settle()
    assert backend.order("fo1")["status"] == "completed"
    assert backend.deliveries("orders", created.id) == 1
    dead = backend.dead_letters()
    assert {d.consumer for d in dead} == {"order-analytics"}
    parked = {d.event_id: d for d in dead}
    assert created.id in parked and parked[created.id].attempts == backend.max_deliveries
