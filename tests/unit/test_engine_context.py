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
    return StepHandlerContext(APP, ports or memory_ports(), event, "order-o1", "payment",
                              "action", {"input": {"order_id": "o1"}}, "record-key")


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
