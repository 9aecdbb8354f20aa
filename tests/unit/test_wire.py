"""The shared wire layer: one data codec, one JSON dialect, one binary mode, and the
claim check that stores data through the same codec."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings

from handlers.core import claim_check, eventbridge_binding, http_binding, ingress_binding
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.wire import binary, jsontext
from handlers.core.wire import data as codec
from tests.strategies import BINARY_DATA, JSON_VALUES, TEXT

# --- the data codec -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(BINARY_DATA)
def test_codec_round_trip_is_exact(pair: tuple[str | None, Any]) -> None:
    content_type, data = pair
    body, problems = codec.encode(data, content_type)
    assert problems == []
    assert codec.decode(body, content_type) == (data, [])


@pytest.mark.parametrize(("content_type", "data", "body"), [
    ("application/json", {"a": "é"}, '{"a":"é"}'.encode()),
    ("application/cloudevents+json", [1], b"[1]"),  # any +json suffix is JSON
    ("text/plain", "hello", b"hello"),  # text is not JSON-quoted
    ("text/plain; charset=latin-1", "é", "é".encode("latin-1")),
    ("application/x-www-form-urlencoded", "a=1&b=2", b"a=1&b=2"),
    ("application/octet-stream", b"\x00\xff", b"\x00\xff"),
    (None, {"a": 1}, b'{"a":1}'),
    (None, "hello", b'"hello"'),  # without a type, a str is a JSON string
])
def test_codec_table(content_type: str | None, data: Any, body: bytes) -> None:
    assert codec.encode(data, content_type) == (body, [])
    assert codec.decode(body, content_type) == (data, [])


def test_without_a_content_type_bytes_that_are_not_json_stay_bytes() -> None:
    # How the CloudEvents SDK reads a body without Content-Type: JSON if it parses.
    assert codec.decode(b"\x00\xffnot json", None) == (b"\x00\xffnot json", [])
    assert codec.decode(b'{"a": 1}', None) == ({"a": 1}, [])


@pytest.mark.parametrize(("content_type", "data", "words"), [
    ("application/json", b"{}", "would be read back as the parsed JSON value"),
    ("text/plain", b"hi", "would be read back as str"),
    ("text/plain", {"a": 1}, "dict data cannot be sent as text"),
    ("application/octet-stream", "hi", "would be read back as bytes"),
    ("text/plain", "", "empty data"),
    (None, b"[1]", "set datacontenttype"),
    ("application/json", float("nan"), "cannot be encoded as JSON"),
    ("text/plain; charset=ascii", "é", "cannot be encoded in ascii"),
    ("text/plain; charset=bogus", "x", "unknown charset 'bogus'"),
])
def test_codec_names_what_it_cannot_carry_exactly(content_type: str | None, data: Any,
                                                  words: str) -> None:
    problems = codec.encode(data, content_type)[1]
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize(("content_type", "body", "words"), [
    ("application/json", b"{nope", "data is not valid JSON"),
    ("application/json", b"NaN", "NaN is not valid JSON"),
    ("text/plain", b"\xff", "data is not valid utf-8"),
    ("text/plain; charset=bogus", b"x", "unknown charset 'bogus'"),
])
def test_codec_decode_names_the_problem(content_type: str, body: bytes, words: str) -> None:
    data, problems = codec.decode(body, content_type)
    assert data is None and len(problems) == 1 and words in problems[0], problems


@pytest.mark.parametrize(("raw", "words"), [
    ("!!!", "payload is not valid base64"),
    ("YQ", "payload is not valid base64"),  # missing padding is corruption, not "a"
    (7, "payload must be a base64 string, got a number"),
])
def test_base64_is_strict(raw: Any, words: str) -> None:
    assert codec.decode_base64(raw, "payload") == (None, words)
    assert codec.decode_base64(codec.encode_base64(b"\x00a"), "p") == (b"\x00a", None)


# --- one JSON dialect -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_nan_and_infinity_are_refused_by_every_parser(text: str) -> None:
    with pytest.raises(ValueError, match="is not valid JSON"):
        jsontext.loads(text)
    assert "is not valid JSON" in (jsontext.parse(text)[1] or "")
    with pytest.raises(ValueError):
        jsontext.dumps(float("nan"))


def test_one_json_type_wording() -> None:
    assert [jsontext.json_type(v) for v in ({}, [], "", 1, 1.5, True, None)] == [
        "an object", "an array", "a string", "a number", "a number", "a boolean", "null"]


def test_one_positioned_type_for_every_binding() -> None:
    assert http_binding.Positioned is jsontext.Positioned
    assert eventbridge_binding.Positioned is jsontext.Positioned
    assert ingress_binding.Positioned is jsontext.Positioned


# --- binary mode ------------------------------------------------------------------------


def test_binary_mode_names_fields_with_the_transports_noun() -> None:
    fields = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t",
              "ce-datacontenttype": "text/plain"}
    assert binary.read(fields, b"", "attribute")[1] == [
        "attribute 'ce-datacontenttype' must not be present in binary mode (the "
        "content-type attribute carries datacontenttype)"]


@settings(max_examples=100, deadline=None)
@given(BINARY_DATA, TEXT)
def test_binary_write_then_read_is_exact(pair: tuple[str | None, Any], subject: str) -> None:
    content_type, data = pair
    event = Event("id-1", "src", "type", data=data, datacontenttype=content_type,
                  subject=subject)
    fields, body, problems = binary.write(event)
    assert problems == []
    assert binary.read(fields, body, "field") == (event, [])


# --- claim check ----------------------------------------------------------------------


class Blobs:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = (data, content_type)

    def read(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)][0]


@pytest.mark.parametrize(("content_type", "data", "stored"), [
    ("application/json", {"order_id": "1", "n": [1, 2]}, b'{"order_id":"1","n":[1,2]}'),
    ("text/plain", "hello", b"hello"),  # not b'"hello"'
    ("text/csv; charset=utf-8", "a,b\n1,2\n", b"a,b\n1,2\n"),
    ("application/octet-stream", b"\x00\x01\xff", b"\x00\x01\xff"),
    (None, {"a": 1}, b'{"a":1}'),
])
def test_claim_check_round_trips_json_text_and_bytes(content_type: str | None, data: Any,
                                                     stored: bytes) -> None:
    blobs = Blobs()
    event = Event("e-1", "orders", "com.example.t", data=data, datacontenttype=content_type,
                  extensions={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    reference = claim_check.check_in(event, blobs, "claims")
    assert reference.data is None and claim_check.is_claimed(reference)
    [(payload, object_type)] = blobs.objects.values()
    assert payload == stored and object_type == (content_type or "application/json")
    assert claim_check.check_out(reference, blobs) == event


def test_claim_check_refuses_data_its_content_type_cannot_carry() -> None:
    event = Event("e-1", "orders", "t", data={"a": 1}, datacontenttype="text/plain")
    with pytest.raises(ValidationError, match="cannot be claim-checked exactly") as err:
        claim_check.check_in(event, Blobs(), "claims")
    assert "dict data cannot be sent as text" in err.value.problems[0]


def test_claim_check_names_a_stored_payload_that_does_not_parse() -> None:
    blobs = Blobs()
    event = Event("e-1", "orders", "t", data={"a": 1}, datacontenttype="application/json")
    reference = claim_check.check_in(event, blobs, "claims")
    key = next(iter(blobs.objects))
    blobs.objects[key] = (b"{not json!", "application/json")
    reference = replace(reference, extensions={**reference.extensions,
                                               claim_check.SIZE_EXTENSION: "10"})
    with pytest.raises(ValidationError, match="does not read as application/json") as err:
        claim_check.check_out(reference, blobs)
    assert "data is not valid JSON" in err.value.problems[0]


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES.filter(lambda v: v is not None))
def test_claim_check_round_trips_any_json_value(data: Any) -> None:
    blobs = Blobs()
    event = Event("e-2", "s", "t", data=data, datacontenttype="application/json")
    assert claim_check.check_out(claim_check.check_in(event, blobs, "b"), blobs) == event
    assert json.loads(next(iter(blobs.objects.values()))[0]) == data
