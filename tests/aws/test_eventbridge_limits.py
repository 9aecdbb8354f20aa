"""The AWS transport limits: values as AWS documents them, and the entry size rule."""

from __future__ import annotations

import json

from adapters.aws import eventbridge_limits as limits
from handlers.catalog import CATALOG
from handlers.core.eventbridge_binding import to_put_events_entry
from handlers.core.events import Event


def test_entry_size_counts_what_aws_counts() -> None:
    entry = {"Source": "orders", "DetailType": "Order Created", "Detail": '{"a":"é"}',
             "Time": "2024-01-01T00:00:00Z", "Resources": ["arn:x"]}
    assert limits.entry_size(entry) == 14 + 6 + 13 + len('{"a":"é"}'.encode()) + 5


def test_entry_size_without_time_or_resources_counts_only_the_strings() -> None:
    entry = {"Source": "orders", "DetailType": "Order Created", "Detail": "{}"}
    assert limits.entry_size(entry) == 6 + 13 + 2


def test_the_documented_values() -> None:
    assert limits.AWS_MAX_ENTRIES == 10
    assert limits.MAX_ENTRY_BYTES == 1024 * 1024
    assert limits.SQS_MAX_MESSAGE_BYTES == 1_048_576


def test_the_deliverable_limit_leaves_room_for_the_delivery_envelope() -> None:
    # An entry at the deliverable limit, wrapped the way EventBridge delivers it to SQS,
    # must still fit the queue's message limit.
    assert limits.MAX_DELIVERABLE_BYTES == (limits.SQS_MAX_MESSAGE_BYTES
                                            - limits.DELIVERY_ENVELOPE_BYTES)
    event = Event.new("orders", "com.switchyard.order.created", {"order_id": "o"})
    entry = to_put_events_entry(event, CATALOG)
    pad = limits.MAX_DELIVERABLE_BYTES - limits.entry_size(entry)
    event = Event.new("orders", "com.switchyard.order.created",
                      {"order_id": "o", "pad": "x" * (pad - len(',"pad":""'))})
    entry = to_put_events_entry(event, CATALOG)
    assert limits.entry_size(entry) == limits.MAX_DELIVERABLE_BYTES
    delivered = {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                 "detail-type": entry["DetailType"], "source": entry["Source"],
                 "account": "123456789012", "time": entry["Time"], "region": "eu-west-1",
                 "resources": [], "detail": json.loads(entry["Detail"])}
    assert len(json.dumps(delivered).encode()) <= limits.SQS_MAX_MESSAGE_BYTES
