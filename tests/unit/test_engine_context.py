"""What a handler may read through its Context: only what its consumer declares.

A consumer reads whole tables only if it declares `scans`, and buckets only if it
declares them; a saga step (scope "saga:order") is no consumer and may do neither; a
backend without the capability says so. Each refusal is a PermanentError naming the
consumer and the table or bucket, never a crash of another kind.
"""

from __future__ import annotations

import dataclasses

import pytest

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.core.engine import HandlerContext, StepHandlerContext
from handlers.core.errors import PermanentError
from handlers.core.events import Event
from handlers.core.ports import Ports


class _Blobs:
    def __init__(self) -> None:
        self.objects = {("uploads", "a.csv"): b"item_id,quantity\n"}

    def read(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = data


def _ctx(scope: str, ports: Ports | None = None) -> HandlerContext:
    event = Event.new("tests", "com.example.test", {})
    return HandlerContext(APP, ports or memory_ports(), event, scope, "record-key")


def _step_ctx(ports: Ports | None = None) -> StepHandlerContext:
    event = Event.new("tests", "com.example.test", {})
    return StepHandlerContext(APP, ports or memory_ports(), event, "order-o1", "payment", "action",
                       {"input": {"order_id": "o1"}}, "record-key")


def test_a_consumer_that_declares_a_scan_reads_the_whole_table() -> None:
    ports = memory_ports()
    ports.store.put_if_absent("inventory", "B", {"item_id": "B"})
    ports.store.put_if_absent("inventory", "A", {"item_id": "A"})
    assert _ctx("inventory-audit", ports).scan("inventory") == [{"item_id": "A"},
                                                                  {"item_id": "B"}]


@pytest.mark.parametrize(("scope", "table"), [
    ("inventory-audit", "orders"), ("inventory", "inventory"), ("saga:order", "inventory"),
])
def test_a_scan_that_is_not_declared_is_refused(scope: str, table: str) -> None:
    with pytest.raises(PermanentError) as refused:
        _ctx(scope).scan(table)
    assert str(refused.value) == f"'{scope}' does not declare that it scans '{table}'"


def test_a_saga_step_may_not_scan() -> None:
    with pytest.raises(PermanentError, match="'saga:order' does not declare that it scans"):
        _step_ctx().scan("inventory")


def test_a_consumer_reads_a_declared_bucket() -> None:
    ports = dataclasses.replace(memory_ports(), blobs=_Blobs())
    assert _ctx("file-processor", ports).read_blob("uploads", "a.csv") == b"item_id,quantity\n"


@pytest.mark.parametrize(("scope", "bucket"), [
    ("file-processor", "claims"), ("inventory", "uploads"), ("saga:order", "uploads"),
])
def test_a_bucket_that_is_not_declared_is_refused(scope: str, bucket: str) -> None:
    ports = dataclasses.replace(memory_ports(), blobs=_Blobs())
    with pytest.raises(PermanentError) as refused:
        _ctx(scope, ports).read_blob(bucket, "a.csv")
    assert str(refused.value) == f"'{scope}' does not declare bucket '{bucket}'"


def test_a_backend_without_blobs_is_refused_with_the_bucket() -> None:
    with pytest.raises(PermanentError) as refused:
        _ctx("file-processor").read_blob("uploads", "a.csv")
    assert str(refused.value) == "this backend has no blob store for bucket 'uploads'"


def test_each_notification_of_a_delivery_gets_its_own_id_the_same_on_every_run() -> None:
    first, again = _ctx("notifications"), _ctx("notifications")
    for ctx in (first, again):
        ctx.notify({"text": "one"})
        ctx.notify({"text": "two"})
    ids = [n["id"] for n in first.notifications]
    assert len(set(ids)) == 2 and all(len(i) == 36 for i in ids)  # UUIDs, distinct
    assert ids == [n["id"] for n in again.notifications]  # derived from the record key


_ITEM = {"item_id": "A", "quantity": 1, "action": "restock"}


def test_an_emitted_event_is_a_json_catalog_event_stamped_by_the_clock() -> None:
    """What the next consumer receives: the type's catalog source, the data as given (a
    copy), the clock's time to the millisecond in UTC, the subject, JSON content."""
    from datetime import UTC, datetime

    from adapters.memory import FixedClock
    from handlers.catalog import INVENTORY_UPDATED

    ports = dataclasses.replace(
        memory_ports(), clock=FixedClock(datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)))
    ctx = _ctx("inventory", ports)
    data = {"item_id": "A", "quantity": 2, "action": "restock"}
    event = ctx.emit(INVENTORY_UPDATED, data, subject="A")
    data["quantity"] = 99  # changed after emitting
    assert (event.source, event.type, event.subject, event.datacontenttype) == (
        APP.catalog[INVENTORY_UPDATED].source, INVENTORY_UPDATED, "A",
        "application/json")
    assert event.data == {"item_id": "A", "quantity": 2, "action": "restock"}
    assert event.time == ctx.now_iso() == "2026-03-04T05:06:07.891Z"
    assert ctx.emits == [event]


def test_emitted_ids_are_derived_from_the_record_key_unless_the_handler_gives_one() -> None:
    """Each emit of a delivery gets its own id, the same on every run of that delivery
    (so a re-publish is a duplicate downstream), another for another delivery."""
    from handlers.catalog import INVENTORY_UPDATED

    def ids(record_key: str) -> list[str]:
        ctx = HandlerContext(APP, memory_ports(), Event.new("tests", "com.example.test", {}),
                             "inventory", record_key)
        ctx.emit(INVENTORY_UPDATED, _ITEM)
        ctx.emit(INVENTORY_UPDATED, _ITEM)
        ctx.emit(INVENTORY_UPDATED, _ITEM, id="given-id")
        return [e.id for e in ctx.emits]

    first = ids("key-1")
    assert first == ids("key-1")
    assert len(set(first)) == 3 and first[2] == "given-id"
    assert all(len(i) == 36 for i in first[:2])  # UUIDs
    assert set(first[:2]).isdisjoint(ids("key-2"))


def test_an_emitted_event_carries_the_trace_of_the_event_being_handled() -> None:
    from handlers.catalog import INVENTORY_UPDATED

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = Event.new("tests", "com.example.test", {}, extensions={"traceparent": traceparent})
    ctx = HandlerContext(APP, memory_ports(), traced, "inventory", "k")
    assert ctx.emit(INVENTORY_UPDATED, _ITEM).extensions == {
        "traceparent": traceparent}
    assert ctx.effects()["traceparent"] == traceparent
    untraced = _ctx("inventory")
    assert dict(untraced.emit(INVENTORY_UPDATED, _ITEM).extensions) == {}


def test_a_step_context_names_its_saga_step_and_phase_and_reads_earlier_results() -> None:
    ports = memory_ports()
    state = {"results": {"create_order": {"order_id": "o1"}, "payment": None}}
    ctx = StepHandlerContext(APP, ports, Event.new("tests", "com.example.test", {}),
                             "order-o1", "payment", "compensate", state, "record-key")
    assert (ctx.saga_id, ctx.step, ctx.phase, ctx.scope) == (
        "order-o1", "payment", "compensate", "saga:order")
    assert ctx.idempotency_key == "order-o1:payment:compensate"
    assert ctx.state is state and ctx.payments is ports.payments
    assert ctx.result_of("create_order") == {"order_id": "o1"}
    assert ctx.result_of("payment") == {} and ctx.result_of("ship") == {}
    assert _step_ctx().result_of("create_order") == {}  # no results yet at all
    assert ctx.buckets == ()  # a saga step is no consumer: it declares no bucket
