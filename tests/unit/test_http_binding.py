"""CloudEvents HTTP binding: exact round trips in every mode, and errors naming every problem."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.core import http_binding as http
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from tests.strategies import (
    BINARY_DATA,
    BYTES_TYPES,
    EXTENSIONS,
    JSON_TYPES,
    JSON_VALUES,
    ODD_TYPES,
    RFC3339,
    TEXT,
    TEXT_TYPES,
)

# --- strategies -----------------------------------------------------------------------


# Any pairing at all, including ones binary mode must refuse.
ANY_DATA = st.tuples(
    st.none() | st.sampled_from(JSON_TYPES + TEXT_TYPES + BYTES_TYPES + ODD_TYPES),
    JSON_VALUES | st.binary(max_size=32) | st.text(max_size=12),
)


@st.composite
def events(draw: st.DrawFn, data: st.SearchStrategy[tuple[str | None, Any]] = ANY_DATA
           ) -> Event:
    content_type, payload = draw(data)
    return Event(
        id=draw(TEXT),
        source=draw(TEXT),
        type=draw(TEXT),
        data=payload,
        time=draw(st.none() | RFC3339),
        subject=draw(st.none() | TEXT),
        datacontenttype=content_type,
        dataschema=draw(st.none() | TEXT),
        extensions=draw(EXTENSIONS),
    )


# --- round trips ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(events(BINARY_DATA))
def test_binary_round_trip_is_exact(event: Event) -> None:
    headers, body = http.to_binary(event)
    assert all(v.isascii() and v.isprintable() for v in headers.values())
    assert http.content_mode(headers) == "binary"
    assert http.from_http(headers, body) == [event]


@settings(max_examples=100, deadline=None)
@given(events())
def test_structured_round_trip_is_exact(event: Event) -> None:
    headers, body = http.to_structured(event)
    assert headers == {"content-type": "application/cloudevents+json; charset=utf-8"}
    assert http.from_http(headers, body) == [event]


@settings(max_examples=50, deadline=None)
@given(st.lists(events(), min_size=1, max_size=5))
def test_batch_round_trip_is_exact(batch: list[Event]) -> None:
    headers, body = http.to_batch(batch)
    assert headers["content-type"].startswith("application/cloudevents-batch+json")
    assert http.from_http(headers, body) == batch


@settings(max_examples=200, deadline=None)
@given(events())
def test_to_http_is_exact_and_binary_refuses_only_what_it_cannot_carry(event: Event) -> None:
    assert http.from_http(*http.to_http(event)) == [event]
    problems = http.binary_problems(event)
    if problems:
        with pytest.raises(ValidationError) as err:
            http.to_binary(event)
        assert list(err.value.problems) == problems
    else:
        assert http.from_http(*http.to_binary(event)) == [event]


def test_header_names_are_case_insensitive() -> None:
    event = Event(id="1", source="s", type="t", data={"a": 1},
                  datacontenttype="application/json", extensions={"traceparent": "x"})
    headers, body = http.to_binary(event)
    shouted = {name.upper(): value for name, value in headers.items()}
    assert http.from_http(shouted, body) == [event]
    assert http.from_http({"Content-Type": "Application/CloudEvents+JSON"},
                          http.to_structured(event)[1]) == [event]


# --- binary mode details --------------------------------------------------------------


def test_percent_encoding_follows_the_spec_example() -> None:
    assert http.percent_encode("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert http.percent_encode('50% "off"') == "50%25%20%22off%22"
    assert http.percent_encode("a/b:c?d=e&f") == "a/b:c?d=e&f"  # printable ASCII stays


@pytest.mark.parametrize(("raw", "expected"), [
    ("Euro%20%e2%82%ac", "Euro €"),  # lower-case hex must be accepted
    ("%41bc", "Abc"),  # needlessly encoded characters too
    ('"quoted value \\"x\\""', 'quoted value "x"'),  # quoted-string from older senders
    ("  padded  ", "padded"),  # HTTP strips optional whitespace
])
def test_header_values_are_decoded(raw: str, expected: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t",
               "ce-subject": raw}
    [event] = http.from_http(headers, b"")
    assert event.subject == expected


@pytest.mark.parametrize(("content_type", "data", "body"), [
    ("application/octet-stream", b"\x00\x01{}", b"\x00\x01{}"),
    ("application/octet-stream", b'{"a":1}', b'{"a":1}'),  # JSON-looking bytes stay bytes
    ("text/plain; charset=utf-8", "héllo", "héllo".encode()),
    ("text/plain; charset=latin-1", "héllo", "héllo".encode("latin-1")),
    ("application/json", {"a": [1, 2.5, None]}, b'{"a":[1,2.5,null]}'),
    ("application/json", "just a string", b'"just a string"'),
    (None, {"a": 1}, b'{"a":1}'),  # no content type: JSON, as the JSON format presumes
    (None, b"\xff\xfe raw", b"\xff\xfe raw"),  # ... unless the bytes are not JSON
    ("application/json", None, b""),
])
def test_binary_body_by_content_type(content_type: str | None, data: Any, body: bytes) -> None:
    event = Event(id="1", source="s", type="t", data=data, datacontenttype=content_type)
    headers, sent = http.to_binary(event)
    assert sent == body
    assert headers.get("content-type") == content_type
    assert "ce-datacontenttype" not in headers
    assert http.from_http(headers, sent) == [event]


@pytest.mark.parametrize(("content_type", "data", "expected"), [
    ("application/json", b'{"a":1}', "bytes data with JSON datacontenttype"),
    ("text/plain", b"abc", "bytes data with text datacontenttype"),
    ("application/octet-stream", "abc", "str data with binary datacontenttype"),
    ("application/xml", {"a": 1}, "dict data cannot be sent as text datacontenttype"),
    ("application/octet-stream", b"", "empty data would be read back as no data"),
    ("text/plain", "", "empty data would be read back as no data"),
    (None, b"123", "bytes data that is itself valid JSON"),
    ("application/cloudevents+json", {"a": 1}, "would make the message read as structured"),
    ("tëxt/plain", "x", "only printable ASCII"),
    ("text/plain; charset=latin-1", "€", "cannot be encoded in latin-1"),
    ("text/plain; charset=nope", "x", "unknown charset 'nope'"),
    ("application/json", float("nan"), "cannot be encoded as JSON"),
])
def test_binary_refuses_events_it_cannot_bring_back(content_type: str | None, data: Any,
                                                    expected: str) -> None:
    event = Event(id="e1", source="s", type="t", data=data, datacontenttype=content_type)
    with pytest.raises(ValidationError, match="cannot be sent exactly in binary mode") as err:
        http.to_binary(event)
    assert expected in str(err.value)
    if data == data:  # NaN cannot come back equal in any mode; the rest go structured
        assert http.from_http(*http.to_http(event)) == [event]


def test_empty_batch_is_refused_when_sending() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        http.to_batch([])


# --- malformed messages: every problem named ------------------------------------------

BINARY_OK = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
GOOD = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


MALFORMED: list[tuple[str, dict[str, str], bytes, list[str]]] = [
    ("structured bad JSON", STRUCTURED, b'{"id": "1",, }',
     ["body is not valid JSON: Expecting property name enclosed in double quotes: "
      "line 1 column 12 (char 11)"]),
    ("structured invalid UTF-8", STRUCTURED, b'{"id": "\xff"}',
     ["body is not valid UTF-8: invalid start byte at byte 8"]),
    ("structured missing every required attribute", STRUCTURED, b"{}",
     ["event: missing required attribute 'id'", "event: missing required attribute 'source'",
      "event: missing required attribute 'type'",
      "event: missing required attribute 'specversion'"]),
    ("structured wrong specversion and bad time", STRUCTURED,
     _json({**GOOD, "specversion": "0.3", "time": "yesterday"}),
     ["event: unsupported specversion '0.3' (expected '1.0')",
      "event: attribute 'time' must be an RFC 3339 timestamp, got 'yesterday'"]),
    ("structured not an object", STRUCTURED, b"[1]", ["event must be a JSON object"]),
    ("structured invalid data_base64", STRUCTURED, _json({**GOOD, "data_base64": "@@@"}),
     ["event: 'data_base64' is not valid base64"]),
    ("structured NaN is not JSON", STRUCTURED, b'{"data": NaN}',
     ["body is not valid JSON: NaN is not valid JSON"]),
    ("unsupported format", {"content-type": "application/cloudevents+avro"}, b"x",
     ["unsupported event format 'application/cloudevents+avro'"]),
    ("empty batch", BATCH, b"[]", ["batch is empty"]),
    ("batch not an array", BATCH, _json(GOOD), ["a batch must be a JSON array, got an object"]),
    ("batch items: every bad one by index", BATCH,
     _json([GOOD, 5, GOOD, {k: v for k, v in GOOD.items() if k != "id"},
            {**GOOD, "data_base64": "!", "Bad-Name": "x"}]),
     ["event[1] must be a JSON object", "event[3]: missing required attribute 'id'",
      "event[4]: 'data_base64' is not valid base64",
      "event[4]: extension attribute name 'Bad-Name' must be 1-20 lowercase letters or digits"]),
    ("no CloudEvent at all", {"content-type": "application/json"}, b"{}",
     ["not a CloudEvent: no 'ce-specversion' header and the content type "
      "('application/json') is neither"]),
    ("no headers at all", {}, b"", ["not a CloudEvent: no 'ce-specversion' header and the "
                                    "content type (none)"]),
    ("binary: wrong specversion, missing id and source, bad JSON body",
     {"ce-specversion": "0.3", "ce-type": "t", "content-type": "application/json"}, b"{oops",
     ["missing required attribute 'id'", "missing required attribute 'source'",
      "unsupported specversion '0.3'",
      "data is not valid JSON: Expecting property name enclosed in double quotes: "
      "line 1 column 2 (char 1)"]),
    ("binary: bad percent-encoding, overlong UTF-8, ce-datacontenttype, ce-data",
     {**BINARY_OK, "ce-subject": "100%", "ce-partitionkey": "%C0%A0",
      "ce-datacontenttype": "text/plain", "ce-data": "x"}, b"",
     ["header 'ce-subject': invalid percent-encoding '%' at position 3",
      "header 'ce-partitionkey': percent-encoded bytes are not valid UTF-8",
      "header 'ce-datacontenttype' must not be present in binary mode",
      "header 'ce-data' 'data' is reserved"]),
    ("binary: text body not in its charset",
     {**BINARY_OK, "content-type": "text/plain; charset=utf-8"}, b"\xff",
     ["data is not valid utf-8: invalid start byte at byte 0"]),
    ("binary: conflicting header spellings",
     {**BINARY_OK, "CE-ID": "2"}, b"", ["header 'ce-id' is given twice with different values"]),
]


@pytest.mark.parametrize(("headers", "body", "expected"),
                         [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_messages_name_every_problem(headers: dict[str, str], body: bytes,
                                               expected: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        http.from_http(headers, body)
    problems = err.value.problems
    assert len(problems) == len(expected), problems
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
        assert fragment in str(err.value)


def test_read_http_keeps_the_good_events_of_a_bad_batch() -> None:
    events, problems = http.read_http(BATCH, _json([GOOD, {}, {**GOOD, "id": "3"}]))
    assert [(where, e.id) for where, e in events] == [("event[0]", "1"), ("event[2]", "3")]
    assert len(problems) == 4 and all(p.startswith("event[1]: ") for p in problems)


@pytest.mark.parametrize(("content_type", "kind"), [
    (None, None),
    ("application/json", "json"), ("application/JSON; charset=UTF-8", "json"),
    ("text/json", "json"), ("application/ld+json", "json"),
    ("text/plain", "text"), ("application/atom+xml", "text"), ("application/xml", "text"),
    ("application/x-custom; charset=utf-8", "text"),
    ("application/octet-stream", "bytes"), ("image/png", "bytes"),
])
def test_data_kind_table(content_type: str | None, kind: str | None) -> None:
    assert http.data_kind(content_type) == kind
