"""EventBridge binding and the HTTP ingress: seeds as they are, exact round trips, clear errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.catalog import (
    CATALOG,
    INVENTORY_UPDATED,
    ORDER_CREATED,
    WORKFLOW_TRIGGERED,
)
from handlers.core import eventbridge_binding as eb
from handlers.core import http_binding as http
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.ingress_binding import decode_request, read_request
from tests.strategies import EXTENSION_NAMES, JSON_VALUES, RFC3339, TEXT

GOLDEN = Path(__file__).resolve().parents[1] / "events" / "aws"

ORDER = {"order_id": "123", "customer_id": "456",
         "items": [{"item_id": "A", "quantity": 2, "price": 10.0}],
         "total": 20.0, "timestamp": "2024-01-01T00:00:00Z"}
# The seeds' PutEvents entries, byte for byte.
SEED_ORDER_CREATED = {
    "Source": "orders", "DetailType": "Order Created",
    "Detail": "{\"order_id\":\"123\",\"customer_id\":\"456\",\"items\":[{\"item_id\":\"A\","
              "\"quantity\":2,\"price\":10.0}],\"total\":20.0,"
              "\"timestamp\":\"2024-01-01T00:00:00Z\"}",
}
SEED_INVENTORY_UPDATED = {
    "Source": "inventory", "DetailType": "Inventory Updated",
    "Detail": "{\"item_id\":\"A\",\"quantity\":10,\"action\":\"restock\"}",
}
SEED_WORKFLOW_TRIGGERED = {
    "Source": "workflow", "DetailType": "Workflow Triggered",
    "Detail": "{\"workflow_id\":\"wf-1\",\"order_id\":\"123\"}",
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# --- strategies -----------------------------------------------------------------------

CATALOG_TYPES = st.sampled_from([t.type for t in CATALOG])


@st.composite
def events(draw: st.DrawFn, types: st.SearchStrategy[str] = CATALOG_TYPES) -> Event:
    type_ = draw(types)
    known = CATALOG.get(type_)
    # Mostly the catalog's own source, sometimes any source at all.
    source = draw(st.just(known.source) | TEXT) if known else draw(TEXT)
    return Event(
        id=draw(TEXT),
        source=source,
        type=type_,
        data=draw(JSON_VALUES | st.binary(max_size=32)),
        time=draw(st.none() | RFC3339),
        subject=draw(st.none() | TEXT),
        datacontenttype=draw(st.none() | st.sampled_from(
            ["application/json", "application/octet-stream", "text/plain"])),
        dataschema=draw(st.none() | TEXT),
        # "version" and "traceid" collide with the seeds' vocabulary: they must survive too.
        extensions=draw(st.dictionaries(
            EXTENSION_NAMES | st.sampled_from(["version", "traceid", "traceparent"]),
            TEXT, max_size=4)),
    )


def deliver(entry: dict[str, Any]) -> dict[str, Any]:
    """What EventBridge hands a target for a PutEvents entry (as moto and AWS do)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": "123456789012",
        "time": entry.get("Time", "2024-05-05T05:05:05Z"),
        "region": "us-east-1",
        "resources": entry.get("Resources", []),
        "detail": json.loads(entry["Detail"]),
    }


# --- round trips ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(events())
def test_put_events_entry_round_trip_is_exact(event: Event) -> None:
    entry = eb.to_put_events_entry(event, CATALOG, bus_name="switchyard-dev")
    assert entry["Source"] == event.source
    assert entry["DetailType"] == CATALOG[event.type].detail_type
    assert entry["EventBusName"] == "switchyard-dev"
    assert isinstance(entry["Detail"], str)
    assert ("Time" in entry) == (event.time is not None)
    assert eb.from_put_events_entry(entry, CATALOG) == event


@settings(max_examples=100, deadline=None)
@given(events())
def test_delivered_event_round_trip_is_exact(event: Event) -> None:
    delivered = deliver(eb.to_put_events_entry(event, CATALOG))
    assert eb.from_eventbridge_event(json.loads(json.dumps(delivered)), CATALOG) == event


@settings(max_examples=50, deadline=None)
@given(events(types=TEXT))
def test_types_outside_the_catalog_round_trip_too(event: Event) -> None:
    entry = eb.to_put_events_entry(event, CATALOG)
    assert entry["DetailType"] == (CATALOG[event.type].detail_type if CATALOG.get(event.type)
                                   else event.type)
    assert eb.from_put_events_entry(entry, CATALOG) == event


def test_bytes_data_travels_as_data_base64() -> None:
    event = Event(id="1", source="orders", type=ORDER_CREATED, data=b"\x00\xff",
                  datacontenttype="application/octet-stream")
    detail = json.loads(eb.to_put_events_entry(event, CATALOG)["Detail"])
    assert detail == {"metadata": {"specversion": "1.0", "id": "1", "type": ORDER_CREATED,
                                   "datacontenttype": "application/octet-stream"},
                      "data_base64": "AP8="}


# --- seeds, exactly as they send them -------------------------------------------------


@pytest.mark.parametrize(("entry", "type_", "data"), [
    (SEED_ORDER_CREATED, ORDER_CREATED, ORDER),
    (SEED_INVENTORY_UPDATED, INVENTORY_UPDATED,
     {"item_id": "A", "quantity": 10, "action": "restock"}),
    (SEED_WORKFLOW_TRIGGERED, WORKFLOW_TRIGGERED, {"workflow_id": "wf-1", "order_id": "123"}),
])
def test_seed_entries_are_accepted_as_they_are(entry: dict[str, Any], type_: str,
                                               data: dict[str, Any]) -> None:
    event = eb.from_put_events_entry(entry, CATALOG, default_id="evt-1")
    assert (event.id, event.source, event.type, event.data) == (
        "evt-1", entry["Source"], type_, data)
    assert event.datacontenttype == "application/json"
    assert CATALOG[type_].data_problems(event.data) == []
    fresh = eb.from_put_events_entry(entry, CATALOG)
    assert uuid.UUID(fresh.id).version == 4


def test_seed_envelope_metadata_maps_to_cloudevents_attributes() -> None:
    detail = {"metadata": {"event_id": "e-1", "created_at": "2024-01-01T00:00:00Z",
                           "trace_id": TRACEPARENT, "version": 3, "retry": True},
              "data": ORDER}
    event = eb.from_put_events_entry(
        {**SEED_ORDER_CREATED, "Detail": json.dumps(detail), "Time": "2030-01-01T00:00:00Z"},
        CATALOG, default_id="unused")
    assert event.id == "e-1"
    assert event.time == "2024-01-01T00:00:00Z"  # created_at wins over the entry's Time
    assert event.traceparent == TRACEPARENT
    assert dict(event.extensions) == {"traceparent": TRACEPARENT, "dataversion": "3",
                                      "retry": "true"}
    assert event.data == ORDER


@pytest.mark.parametrize("trace_id", ["abc", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                                      TRACEPARENT.upper()])
def test_a_trace_id_that_is_not_a_traceparent_is_kept_as_traceid(trace_id: str) -> None:
    detail = {"metadata": {"trace_id": trace_id}, "data": ORDER}
    event = eb.from_put_events_entry({**SEED_ORDER_CREATED, "Detail": json.dumps(detail)},
                                     CATALOG)
    assert dict(event.extensions) == {"traceid": trace_id}


def test_created_at_as_epoch_seconds_becomes_rfc3339() -> None:
    detail = {"metadata": {"created_at": 1704067200}, "data": ORDER}
    event = eb.from_put_events_entry({**SEED_ORDER_CREATED, "Detail": json.dumps(detail)},
                                     CATALOG)
    assert event.time == "2024-01-01T00:00:00Z"


def test_detail_type_may_be_the_cloudevents_type_itself() -> None:
    event = eb.from_put_events_entry({**SEED_ORDER_CREATED, "DetailType": ORDER_CREATED},
                                     CATALOG)
    assert event.type == ORDER_CREATED


# --- golden files ---------------------------------------------------------------------


def _expected_event(fields: dict[str, Any], actual_id: str) -> Event:
    return Event(**{"id": actual_id, **fields})


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("eventbridge-*.json")), ids=lambda p: p.stem)
def test_golden_files(path: Path) -> None:
    case = json.loads(path.read_text())
    kind, given_, expected = case["kind"], case["input"], case["expected"]
    if kind == "put_events_entry":
        event = eb.from_put_events_entry(given_, CATALOG, default_id=case.get("default_id"))
        assert event == Event(**expected)
        assert eb.from_put_events_entry(eb.to_put_events_entry(event, CATALOG), CATALOG) == event
    elif kind == "eventbridge_event":
        assert eb.from_eventbridge_event(given_, CATALOG) == Event(**expected)
    elif kind == "put_events_body":
        decoded = eb.from_put_events_body(given_, CATALOG)
        assert decoded == [_expected_event(fields, e.id) for fields, e in zip(expected, decoded,
                                                                               strict=True)]
    else:
        pytest.fail(f"{path.name}: unknown kind {kind!r}")


def test_there_are_golden_files() -> None:
    assert len(list(GOLDEN.glob("eventbridge-*.json"))) >= 8


# --- malformed input: every problem named ---------------------------------------------

MALFORMED_ENTRIES: list[tuple[str, Any, list[str]]] = [
    ("Detail as an object, as people write it by mistake",
     {"Source": "orders", "DetailType": "Order Created", "Detail": ORDER},
     ["Entries[0].Detail must be a JSON string, as PutEvents requires, got an object"]),
    ("Detail not JSON, with position",
     {**SEED_ORDER_CREATED, "Detail": '{"order_id": }'},
     ["Entries[0].Detail is not valid JSON: Expecting value: line 1 column 14 (char 13)"]),
    ("Detail with NaN, which is not JSON",
     {**SEED_ORDER_CREATED, "Detail": '{"total": NaN}'},
     ["Entries[0].Detail is not valid JSON: NaN is not valid JSON"]),
    ("Detail JSON but not an object",
     {**SEED_ORDER_CREATED, "Detail": "[1, 2]"},
     ["Entries[0].Detail must be a JSON object, got an array"]),
    ("everything missing",
     {},
     ["Entries[0].Source is required", "Entries[0].DetailType is required",
      "Entries[0].Detail is required"]),
    ("unknown DetailType names it and the known ones",
     {"Source": "orders", "DetailType": "Order Teleported", "Detail": "{}"},
     ["Entries[0]: unknown DetailType 'Order Teleported' from Source 'orders' "
      "(known: 'Order Created' from 'orders', 'Order Completed' from 'orders'"]),
    ("unknown DetailType is reported even when Detail is also bad",
     {"Source": "orders", "DetailType": "Nope", "Detail": {"a": 1}},
     ["Entries[0].Detail must be a JSON string", "unknown DetailType 'Nope'"]),
    ("typo in a field name, bad optional fields",
     {**SEED_ORDER_CREATED, "Detial": "{}", "Time": [1], "Resources": "arn:x",
      "EventBusName": 5},
     ["Entries[0]: unknown field 'Detial' (PutEvents entries take Detail, DetailType, "
      "EventBusName, Resources, Source, Time, TraceHeader)",
      "Entries[0].Time must be an RFC 3339 string or epoch seconds, got an array",
      "Entries[0].Resources must be an array of strings",
      "Entries[0].EventBusName must be a string"]),
    ("bad envelope: base64, time, metadata values and names",
     {**SEED_ORDER_CREATED, "Detail": json.dumps({
         "metadata": {"created_at": "last tuesday", "tags": ["a"], "ünïcode": "x"},
         "data_base64": "***"})},
     ["Entries[0].Detail.data_base64 is not valid base64",
      "Entries[0].Detail.metadata.tags must be a string, number or boolean, got an array",
      "Entries[0].Detail.metadata.ünïcode cannot be a CloudEvents attribute name",
      "Entries[0]: attribute 'time' must be an RFC 3339 timestamp, got 'last tuesday'"]),
    ("conflicting ids in the seeds' metadata",
     {**SEED_ORDER_CREATED, "Detail": json.dumps({"metadata": {"id": "a", "event_id": "b"},
                                                  "data": ORDER})},
     ["Entries[0].Detail.metadata: 'id' and 'event_id' both set 'id' with different values"]),
    ("our envelope: wrong specversion, DetailType contradicting the type",
     {"Source": "orders", "DetailType": "Order Created", "Detail": json.dumps({
         "metadata": {"specversion": "0.3", "id": "1", "type": WORKFLOW_TRIGGERED}})},
     ["Entries[0]: DetailType 'Order Created' does not match metadata type "
      f"'{WORKFLOW_TRIGGERED}' (expected 'Workflow Triggered')",
      "Entries[0]: unsupported specversion '0.3' (expected '1.0')"]),
    ("not an object at all", "Order Created", ["Entries[0] must be a JSON object, got a string"]),
]


@pytest.mark.parametrize(("entry", "expected"), [c[1:] for c in MALFORMED_ENTRIES],
                         ids=[c[0] for c in MALFORMED_ENTRIES])
def test_malformed_entries_name_every_problem(entry: Any, expected: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        eb.from_put_events_entry(entry, CATALOG)
    problems = err.value.problems
    assert len(problems) == len(expected), problems
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
        assert fragment in str(err.value)


@pytest.mark.parametrize(("body", "expected"), [
    ({"Entries": []}, ["Entries is empty"]),
    ({}, ["Entries must be an array of entries, got missing"]),
    ([SEED_ORDER_CREATED], ["a PutEvents body must be a JSON object, got an array"]),
    ({"Entries": [SEED_ORDER_CREATED] * 501}, ["Entries has 501 entries, at most 500"]),
    ({"Entries": [SEED_ORDER_CREATED, {"Source": "orders"}, 7], "Extra": 1},
     ["unknown field 'Extra'", "Entries[1].DetailType is required",
      "Entries[1].Detail is required", "Entries[2] must be a JSON object, got a number"]),
])
def test_malformed_put_events_bodies(body: Any, expected: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        eb.from_put_events_body(body, CATALOG)
    assert len(err.value.problems) == len(expected), err.value.problems
    for fragment in expected:
        assert fragment in str(err.value)


def test_put_events_body_takes_up_to_500_entries() -> None:
    assert len(eb.from_put_events_body({"Entries": [SEED_WORKFLOW_TRIGGERED] * 500},
                                       CATALOG)) == 500


@pytest.mark.parametrize(("evt", "expected"), [
    ({"id": "1", "source": "orders", "detail-type": "Order Created",
      "detail": SEED_ORDER_CREATED["Detail"]},
     ["event.detail must be a JSON object, got a string"]),
    ({"detail": {}}, ["event.source is required", "event.detail-type is required",
                      "event.id is required"]),
    ({"id": "1", "source": "orders", "detail-type": "Order Created",
      "detail": {"metadata": {"created_at": []}, "data_base64": "%%"}},
     ["event.detail.data_base64 is not valid base64",
      "event.detail.metadata.created_at must be a string, number or boolean"]),
])
def test_malformed_delivered_events(evt: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        eb.from_eventbridge_event(evt, CATALOG)
    assert len(err.value.problems) == len(expected), err.value.problems
    for fragment in expected:
        assert fragment in str(err.value)


# --- the HTTP ingress -----------------------------------------------------------------


def _put_events(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"Entries": list(entries)}).encode()


def test_ingress_takes_the_seeds_put_events_body() -> None:
    events = decode_request(
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEvents.PutEvents"},
        _put_events(SEED_ORDER_CREATED, SEED_INVENTORY_UPDATED, SEED_WORKFLOW_TRIGGERED),
        CATALOG)
    assert [e.type for e in events] == [ORDER_CREATED, INVENTORY_UPDATED, WORKFLOW_TRIGGERED]


@pytest.mark.parametrize("encode", [http.to_binary, http.to_structured,
                                    lambda e: http.to_batch([e, e])])
def test_ingress_takes_every_cloudevents_mode(encode: Any) -> None:
    event = Event.new("orders", ORDER_CREATED, ORDER)
    headers, body = encode(event)
    decoded = decode_request(headers, body, CATALOG)
    assert decoded and all(e == event for e in decoded)


def test_ingress_prefers_cloudevents_markers_over_the_body_shape() -> None:
    event = Event.new("orders", ORDER_CREATED, {**ORDER, "Entries": []})
    assert decode_request(*http.to_binary(event), CATALOG) == [event]


def test_ingress_names_every_problem_with_its_position() -> None:
    body = _put_events(
        SEED_ORDER_CREATED,
        {"Source": "orders", "DetailType": "Order Created", "Detail": json.dumps(
            {"order_id": "1", "items": [], "total": -1})},
        {"Source": "inventory", "DetailType": "Inventory Updated", "Detail": json.dumps(
            {"item_id": "A", "quantity": 0, "action": "steal"})},
        {"Source": "orders", "DetailType": "Order Created", "Detail": ORDER},
    )
    with pytest.raises(ValidationError) as err:
        decode_request({"content-type": "application/json"}, body, CATALOG)
    assert list(err.value.problems) == [
        "Entries[1]: data.customer_id is required",
        "Entries[1]: data.items must have at least 1 item(s)",
        "Entries[1]: data.total must be >= 0, got -1",
        "Entries[2]: data.quantity must be > 0, got 0",
        "Entries[2]: data.action must be one of 'restock', 'remove', got 'steal'",
        "Entries[3].Detail must be a JSON string, as PutEvents requires, got an object "
        "(send json.dumps(detail))",
    ]


def test_ingress_checks_cloudevents_against_the_catalog() -> None:
    good = Event.new("orders", ORDER_CREATED, ORDER)
    unknown = Event.new("elsewhere", "com.example.unknown", {"a": 1})
    invalid = Event.new("workflow", WORKFLOW_TRIGGERED, {"workflow_id": ""})
    headers, body = http.to_batch([good, unknown, invalid])
    events, problems = read_request(headers, body, CATALOG)
    assert events == [("event[0]", good)]
    assert problems[0].startswith("event[1]: unknown event type 'com.example.unknown' "
                                  "(known: com.switchyard.")
    assert problems[1:] == ["event[2]: data.order_id is required",
                            "event[2]: data.workflow_id must not be empty"]


def test_ingress_says_what_it_expected_when_given_neither() -> None:
    with pytest.raises(ValidationError, match="not an event: no 'ce-specversion' header"):
        decode_request({"content-type": "application/json"}, b'{"order_id": "1"}', CATALOG)
    with pytest.raises(ValidationError, match="no Content-Type: send a PutEvents body"):
        decode_request({}, b"not json", CATALOG)
    with pytest.raises(ValidationError, match="body is not valid JSON"):
        decode_request({"content-type": "application/json"}, b"not json", CATALOG)
