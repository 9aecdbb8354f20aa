"""Pure parts of the event sources and patterns: cron, S3 normalisation, file parsing,
the transformer's mapping, claim check, and the app description's checks."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.aws import buckets, scheduler
from adapters.memory import memory_ports
from handlers.analytics import flatten
from handlers.app import APP
from handlers.catalog import ORDER_CREATED, STORAGE_OBJECT_FINALIZED
from handlers.core.app import Bucket, Schedule
from handlers.core.claim_check import CLAIM_EXTENSION, check_in, check_out
from handlers.core.errors import BlobMissing, ValidationError
from handlers.core.events import Event
from handlers.core.schedule import aws_cron, fired_event, next_fire, parse_cron

GOLDEN = Path(__file__).resolve().parents[1] / "events" / "aws" / "s3_object_created.json"


@pytest.mark.parametrize(("cron", "after", "expected"), [
    ("0 3 * * *", "2026-11-22T04:00", "2026-11-23T03:00"),
    ("0 3 * * *", "2026-11-22T02:59", "2026-11-22T03:00"),
    ("*/15 * * * *", "2026-11-22T04:00", "2026-11-22T04:15"),
    ("30 2 * * MON-FRI", "2026-11-21T12:00", "2026-11-23T02:30"),  # Saturday -> Monday
    ("0 0 1 * *", "2026-12-15T00:00", "2027-01-01T00:00"),
    ("0 12 29 2 *", "2026-03-01T00:00", "2028-02-29T12:00"),
])
def test_next_fire(cron: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_fire(cron, start) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_bad_cron_names_every_problem() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_cron("61 25 * * FUNDAY")
    message = str(caught.value)
    for problem in ("minute: '61' is outside 0-59", "hour: '25' is outside 0-23",
                    "day of week: 'FUNDAY' is not a number"):
        assert problem in message
    with pytest.raises(ValidationError, match="must have 5 fields"):
        parse_cron("0 3 * *")


def test_aws_cron_dialect() -> None:
    assert aws_cron("0 3 * * *") == "cron(0 3 * * ? *)"
    assert aws_cron("30 2 * * 1-5") == "cron(30 2 ? * MON,TUE,WED,THU,FRI *)"
    with pytest.raises(ValidationError, match="cannot express"):
        aws_cron("0 3 1 * MON")


def test_scheduler_target_renders_the_declared_event() -> None:
    (schedule,) = APP.schedules
    target = scheduler.target(schedule, APP.catalog, "arn:bus", "arn:role", "arn:dlq")
    spec = APP.catalog[schedule.emits]
    assert target["EventBridgeParameters"] == {"Source": spec.source,
                                               "DetailType": spec.detail_type}
    detail = json.loads(scheduler.render(target["Input"], "2026-11-23T03:00:00Z"))
    assert detail == fired_event(schedule, APP.catalog, "2026-11-23T03:00:00Z").data
    assert target["DeadLetterConfig"] == {"Arn": "arn:dlq"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_same_slot_same_id_other_slot_other_id() -> None:
    (schedule,) = APP.schedules
    one = fired_event(schedule, APP.catalog, "2026-11-23T03:00:00Z")
    assert one.id == fired_event(schedule, APP.catalog, "2026-11-23T03:00:00Z").id
    assert one.id != fired_event(schedule, APP.catalog, "2026-11-24T03:00:00Z").id


def test_s3_event_is_normalised_to_the_catalog_type() -> None:
    body = json.loads(GOLDEN.read_text())
    event = buckets.normalise(body, {"uploads": "sy-dev-uploads-123456789012"})
    assert event.type == STORAGE_OBJECT_FINALIZED and event.source == "storage"
    assert event.data == {"bucket": "uploads", "name": "restocks/2026-11-22.csv", "size": 5,
                          "etag": "b1946ac92492d2347c6235b4d2611184"}
    APP.catalog.check_data(event.type, event.data)
    assert buckets.normalise(body, {"uploads": "sy-dev-uploads-123456789012"}).id == event.id


def test_s3_event_for_an_unknown_bucket_is_refused_with_the_reason() -> None:
    body = json.loads(GOLDEN.read_text())
    with pytest.raises(ValidationError, match="is not one this function knows"):
        buckets.normalise(body, {"uploads": "someone-elses"})


def test_claim_check_round_trip_and_missing_payload() -> None:
    ports = memory_ports()
    blobs = _Blobs()
    event = Event.new("inventory", "com.switchyard.inventory.updated",
                      {"item_id": "A", "quantity": 1, "action": "restock"})
    claimed = check_in(event, blobs, "claims")
    assert claimed.data is None and claimed.extensions[CLAIM_EXTENSION].startswith("claims/")
    assert check_out(claimed, blobs) == event
    assert ports.blobs is None
    with pytest.raises(BlobMissing, match="expire after 15 days"):
        check_out(claimed, _Blobs(), 15)


class _Blobs:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise BlobMissing(f"object {bucket}/{key} does not exist") from None

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[(bucket, key)] = data


def test_transformer_mapping_is_flat_and_stable() -> None:
    record = flatten(ORDER_CREATED, {
        "order_id": "o1", "customer_id": "c1", "total": 25.5, "timestamp": "t",
        "items": [{"item_id": "A", "quantity": 2, "price": 10.0},
                  {"item_id": "B", "quantity": 1, "price": 5.5}]}, "e1", None)
    assert record == {"record_id": "o1:created", "order_id": "o1", "status": "created",
                      "customer_id": "c1", "total_cents": 2550, "item_count": 3,
                      "reason": None, "occurred_at": "t", "source_event_id": "e1"}


def test_app_description_checks_buckets_and_schedules() -> None:
    with pytest.raises(ValueError) as caught:
        dataclasses.replace(
            APP, buckets=(Bucket("claims", claim_check=True), Bucket("x", claim_check=True,
                                                                      expire_days=1)),
            schedules=(Schedule("nightly", "0 99 * * *", "com.example.nope"),))
    message = str(caught.value)
    for problem in ("at most one bucket may be the claim-check bucket",
                    "claim-check bucket 'claims' needs expire_days",
                    "consumer 'file-processor' names unknown bucket 'uploads'",
                    "schedule 'nightly' emits unknown type 'com.example.nope'",
                    "hour: '99' is outside 0-23"):
        assert problem in message


@pytest.mark.parametrize("batch_size", [0, 10001])
def test_app_description_checks_a_consumers_batch_size(batch_size: int) -> None:
    first = dataclasses.replace(APP.consumers[0], batch_size=batch_size)
    with pytest.raises(ValueError, match=f"'{first.name}': batch_size must be 1-10000, "
                                         f"got {batch_size}"):
        dataclasses.replace(APP, consumers=(first, *APP.consumers[1:]))
