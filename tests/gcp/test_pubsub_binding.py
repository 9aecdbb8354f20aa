"""CloudEvents Pub/Sub binding: golden pushes in, exact round trips, every problem out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.gcp import pubsub_binding as pb
from adapters.gcp.pubsub_binding import PubSubMessage
from handlers.core import http_binding, jsonformat
from handlers.core.errors import ValidationError
from handlers.core.events import CORE_ATTRIBUTES, Event

GOLDEN = sorted((Path(__file__).resolve().parents[1] / "events" / "gcp").glob("*.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_push_requests_decode_to_the_expected_event(path: Path) -> None:
    case = json.loads(path.read_text())
    event, delivery = pb.read_push(case["headers"], json.dumps(case["body"]).encode())
    assert event == jsonformat.from_dict(case["expected"])
    assert delivery.attempt == case["attempt"]


# --- round trips --------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10)
_times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31),
                      timezones=st.just(UTC)).map(
    lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
_ext_names = st.from_regex(r"\A[a-z0-9]{1,20}\Z").filter(lambda n: n not in CORE_ATTRIBUTES)


@st.composite
def events(draw: st.DrawFn) -> Event:
    content_type, data = draw(st.sampled_from([
        (None, _json), ("application/json", _json), ("text/plain", _text),
        ("application/xml; charset=utf-8", _text), ("application/octet-stream",
                                                    st.binary(min_size=0, max_size=40)),
        (None, st.binary(max_size=40)),
    ]))
    return Event(
        id=draw(_text), source=draw(_text), type=draw(_text), data=draw(data),
        time=draw(st.none() | _times), subject=draw(st.none() | _text),
        datacontenttype=content_type, dataschema=draw(st.none() | _text),
        extensions=draw(st.dictionaries(_ext_names, _text, max_size=3)))


@settings(max_examples=300, deadline=None)
@given(events())
def test_auto_mode_round_trips_every_event_exactly(event: Event) -> None:
    message = pb.to_message(event)
    assert pb.from_message(message.data, message.attributes) == event


@settings(max_examples=200, deadline=None)
@given(events())
def test_structured_mode_round_trips_and_binary_is_exact_when_chosen(event: Event) -> None:
    structured = pb.to_message(event, "structured")
    assert structured.attributes == {"content-type": "application/cloudevents+json",
                                     "ce-type": event.type}  # filters match attributes
    assert pb.from_message(structured.data, structured.attributes) == event
    if not http_binding.binary_problems(event):
        binary = pb.to_message(event, "binary")
        assert binary.attributes["ce-id"] == event.id  # verbatim, no percent-encoding
        assert pb.from_message(binary.data, binary.attributes) == event


@settings(max_examples=100, deadline=None)
@given(events())
def test_a_push_of_any_message_decodes_to_its_event(event: Event) -> None:
    envelope = pb.push_envelope(pb.to_message(event), attempt=3)
    decoded, delivery = pb.read_push({}, json.dumps(envelope).encode())
    assert decoded == event and delivery.attempt == 3


def test_binary_mode_attributes_follow_the_binding() -> None:
    event = Event.new("orders", "com.switchyard.order.created", {"a": 1}, id="e 1%",
                      subject="s", extensions={"traceparent": "00-x"})
    message = pb.to_message(event)
    assert message.attributes == {
        "ce-specversion": "1.0", "ce-id": "e 1%", "ce-source": "orders",
        "ce-type": "com.switchyard.order.created", "ce-time": event.time, "ce-subject": "s",
        "ce-traceparent": "00-x", "content-type": "application/json"}
    assert json.loads(message.data) == {"a": 1}


# --- every problem at once ---------------------------------------------------------------


def _push(attributes: dict[str, Any], data: Any) -> bytes:
    return json.dumps({"message": {"attributes": attributes, "data": data}}).encode()


def test_bad_base64_and_missing_attributes_are_all_reported() -> None:
    with pytest.raises(ValidationError) as caught:
        pb.read_push({}, _push({"ce-type": "t", "ce-specversion": "2.0"}, "not base64!"))
    problems = caught.value.problems
    assert "message 'data' is not valid base64" in problems
    assert "missing required attribute 'id'" in problems
    assert "missing required attribute 'source'" in problems
    assert "unsupported specversion '2.0' (expected '1.0')" in problems


@pytest.mark.parametrize(("body", "problem"), [
    (b"{", "body is not valid JSON"),
    (b"[]", "push body must be an object with a 'message' object"),
    (_push({}, ""), "missing required attribute 'specversion'"),
    (_push("x", ""), "message 'attributes' must be an object"),  # type: ignore[arg-type]
    (_push({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t",
            "content-type": "application/json"}, base64.b64encode(b"{x").decode()),
     "data is not valid JSON"),
    (_push({"content-type": "application/cloudevents-batch+json"}, ""),
     "batched mode is not part of the Pub/Sub binding"),
])
def test_malformed_pushes_are_refused_with_the_reason(body: bytes, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        pb.read_push({}, body)
    assert problem in str(caught.value)


def test_an_eventarc_event_of_another_type_is_refused() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s",
               "ce-type": "google.cloud.storage.object.v1.finalized",
               "content-type": "application/json"}
    with pytest.raises(ValidationError, match="is not google.cloud.pubsub.topic.v1"):
        pb.read_push(headers, json.dumps({"message": {"data": ""}}).encode())


# --- limits ---------------------------------------------------------------------------------


def test_a_message_at_the_size_limit_passes_and_one_byte_over_is_refused() -> None:
    attributes = {"ce-id": "x"}
    room = pb.MAX_MESSAGE_BYTES - len("ce-id") - 1
    assert pb.limit_problems(PubSubMessage(b"x" * room, attributes)) == []
    [problem] = pb.limit_problems(PubSubMessage(b"x" * (room + 1), attributes))
    assert f"over Pub/Sub's limit of {pb.MAX_MESSAGE_BYTES} bytes" in problem


def test_attribute_limits() -> None:
    at_limit = {f"k{i}": "v" for i in range(pb.MAX_ATTRIBUTES)}
    assert pb.limit_problems(PubSubMessage(b"", at_limit)) == []
    problems = pb.limit_problems(PubSubMessage(b"", {
        **at_limit, "extra": "v" * (pb.MAX_ATTRIBUTE_VALUE_BYTES + 1), "googx": "v"}))
    assert len(problems) == 3, problems
