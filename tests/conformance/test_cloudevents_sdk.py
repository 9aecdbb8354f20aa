"""Conformance with the CloudEvents SDK for Python, an independent implementation.

Both directions, property-based:
- the SDK's `to_binary` / `to_structured` (and a batch built per the HTTP binding spec,
  the SDK has no batch helper) into every front door: the local server's WSGI app (over
  a recording runtime), the AWS API function (API Gateway's payload) and the GCP ingest
  function. What the door publishes must be the SDK's event exactly (the `traceparent` a
  door may start when the event has none aside); data that the catalog's object schemas
  refuse (text, bytes) must be refused naming the type the door read, which proves it
  was read as the SDK meant it.
- our `http_binding.to_binary` / `to_structured` into the SDK's `from_http`: same
  attributes, same extensions, same data.

Binary-mode header values are drawn from the characters the HTTP binding sends as
themselves (printable ASCII but space, '"' and '%'): the SDK (1.x) neither percent-encodes
nor percent-decodes header values, so outside that set it and the spec disagree, and
no receiver can agree with both.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.aws import lambda_entry
from adapters.aws.runtime import AwsRuntime, reset_runtime, runtime
from adapters.aws.settings import Settings as AwsSettings
from adapters.aws.topology import TableSpec
from adapters.gcp.entry import Runtime as GcpRuntime
from adapters.gcp.entry import process_ingest
from adapters.gcp.settings import Settings as GcpSettings
from adapters.local.http_server import Access
from adapters.local.http_server import App as LocalApp
from adapters.memory import MemoryPublisher, memory_ports
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED
from handlers.core import http_binding
from handlers.core.events import Event
from tests.strategies import EXTENSION_NAMES, JSON_VALUES, RFC3339, TEXT

#: (status, body text, the events it published)
Answer = tuple[int, str, list[Event]]
Door = Callable[[dict[str, str], bytes], Answer]

# --- strategies -------------------------------------------------------------------------

# What the HTTP binding sends unencoded in a header value (CloudEvents HTTP binding 3.1.3.2).
SAFE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                             blacklist_characters='"%'), min_size=1, max_size=24)
TRACEPARENT = st.builds(lambda trace, span: f"00-{trace:032x}-{span:016x}-01",
                        st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1))
SAFE_EXTENSIONS = st.builds(
    lambda more, trace: {**more, **({"traceparent": trace} if trace else {})},
    st.dictionaries(EXTENSION_NAMES.filter(lambda n: n != "traceparent"), SAFE, max_size=3),
    st.none() | TRACEPARENT)
RESTOCK = st.fixed_dictionaries(
    {"item_id": st.text(min_size=1, max_size=128), "quantity": st.integers(1, 10**9),
     "action": st.sampled_from(["restock", "remove"])},
    # Producers may add fields: the catalog's schemas allow them.
    optional={"note": JSON_VALUES, "warehouse": st.text(max_size=12)},
)


@st.composite
def sdk_events(draw: st.DrawFn, data: st.SearchStrategy[Any] = RESTOCK,
               content_type: str | None = None, safe: bool = True) -> CloudEvent:
    """An SDK CloudEvent of a catalog type; `safe` limits values to header-safe text."""
    text = SAFE if safe else TEXT
    attributes: dict[str, Any] = {
        "id": draw(text), "source": "inventory", "type": INVENTORY_UPDATED,
        "time": draw(RFC3339), **draw(SAFE_EXTENSIONS if safe else
                                     st.dictionaries(EXTENSION_NAMES, TEXT, max_size=3))}
    subject = draw(st.none() | text)
    if subject is not None:
        attributes["subject"] = subject
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return CloudEvent(attributes, draw(data))


def expected(sdk_event: CloudEvent) -> Event:
    return Event.from_attributes(sdk_event.get_attributes(), sdk_event.get_data())


def without_trace(event: Event) -> Event:
    return replace(event, extensions={k: v for k, v in event.extensions.items()
                                      if k != "traceparent"})


# --- the three front doors ---------------------------------------------------------------


class _RecordingRuntime:
    """What the local server's WSGI app needs of a runtime: the app, and ingest."""

    def __init__(self) -> None:
        self.app = APP
        self.ingested: list[Event] = []

    def ingest(self, events: list[Event]) -> list[str]:
        self.ingested.extend(events)
        return [e.id for e in events]


def _local_door() -> Door:
    recorder = _RecordingRuntime()
    # The server as `make_server` binds it to 127.0.0.1:8080, Host check included.
    app = LocalApp(recorder, Access().bound("127.0.0.1", 8080))  # type: ignore[arg-type]

    def door(headers: dict[str, str], body: bytes) -> Answer:
        recorder.ingested = []
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/events", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080", "HTTP_HOST": "127.0.0.1:8080",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        for name, value in headers.items():
            if name.lower() == "content-type":
                environ["CONTENT_TYPE"] = value
            else:
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        status: list[str] = []
        chunks = app(environ, lambda line, _headers: status.append(line))
        return int(status[0].split()[0]), b"".join(chunks).decode(), recorder.ingested

    return door


@pytest.fixture(scope="module")
def doors(aws_module: None) -> Iterator[dict[str, Door]]:
    tables = {t: f"t-{t}" for t in APP.tables}
    for logical, physical in tables.items():
        boto3.client("dynamodb").create_table(**TableSpec(logical).create_table_kwargs(physical))
    reset_runtime(AwsRuntime(AwsSettings(consumer="api", tables=tables, bus_name="bus"), APP))
    aws_bus = MemoryPublisher()
    runtime().ports.publisher = aws_bus

    def aws(headers: dict[str, str], body: bytes) -> Answer:
        aws_bus.published = []
        answer = lambda_entry.api_handler({
            "headers": {k.lower(): v for k, v in headers.items()}, "isBase64Encoded": True,
            "body": base64.b64encode(body).decode()})
        return answer["statusCode"], answer["body"], aws_bus.published

    gcp_bus = MemoryPublisher()
    gcp_rt = GcpRuntime(APP, GcpSettings(project="p"), memory_ports(), None, bus=gcp_bus)

    def gcp(headers: dict[str, str], body: bytes) -> Answer:
        gcp_bus.published = []
        text, status, _ = process_ingest(gcp_rt, "POST", "/events", headers, body)
        return status, text, gcp_bus.published

    yield {"local": _local_door(), "aws": aws, "gcp": gcp}
    reset_runtime(None)


def _accepted_exactly(doors: dict[str, Door], headers: dict[str, str], body: bytes,
                      events: list[Event]) -> None:
    for name, door in doors.items():
        status, text, published = door(headers, body)
        assert status == 202, (name, text)
        assert [without_trace(e) for e in published] == [without_trace(e) for e in events], name
        for sent, got in zip(events, published, strict=True):
            if sent.traceparent is not None:  # a door starts a trace only when there is none
                assert got.traceparent == sent.traceparent, name


def _refused_naming(doors: dict[str, Door], headers: dict[str, str], body: bytes,
                    words: str) -> None:
    for name, door in doors.items():
        status, text, published = door(headers, body)
        assert status == 400 and published == [], (name, text)
        assert words in " ".join(json.loads(text)["problems"]), (name, text)


_SETTINGS = settings(max_examples=40, deadline=None)

# --- the SDK into every front door -------------------------------------------------------


@_SETTINGS
@given(sdk_events(content_type="application/json") | sdk_events())
def test_sdk_binary_json_is_published_exactly(doors: dict[str, Door],
                                              event: CloudEvent) -> None:
    # Without datacontenttype the SDK sends JSON and no Content-Type header at all.
    headers, body = to_binary(event)
    _accepted_exactly(doors, headers, body, [expected(event)])


@_SETTINGS
@given(sdk_events(safe=False) | sdk_events(content_type="application/json", safe=False))
def test_sdk_structured_json_is_published_exactly(doors: dict[str, Door],
                                                  event: CloudEvent) -> None:
    headers, body = to_structured(event)
    _accepted_exactly(doors, headers, body, [expected(event)])


@_SETTINGS
@given(st.lists(sdk_events(safe=False), min_size=1, max_size=4,
                unique_by=lambda e: e["id"]))
def test_a_batch_of_sdk_events_is_published_exactly_in_order(
        doors: dict[str, Door], batch: list[CloudEvent]) -> None:
    # A batch is a JSON array of events in the JSON format (HTTP binding, batched mode).
    body = json.dumps([json.loads(to_structured(e)[1]) for e in batch]).encode()
    headers = {"content-type": "application/cloudevents-batch+json"}
    _accepted_exactly(doors, headers, body, [expected(e) for e in batch])


@_SETTINGS
@given(sdk_events(st.text(min_size=1, max_size=32), content_type="text/plain"))
def test_sdk_text_data_is_read_as_text(doors: dict[str, Door], event: CloudEvent) -> None:
    # The SDK's default binary marshaller JSON-quotes any data; a client sending text
    # passes its own marshaller, as the SDK documents.
    headers, body = to_binary(event, data_marshaller=lambda text: text.encode("utf-8"))
    assert http_binding.from_http(headers, body) == [expected(event)]
    _refused_naming(doors, headers, body, "data must be of type object, got str")
    headers, body = to_structured(event)
    assert http_binding.from_http(headers, body) == [expected(event)]
    _refused_naming(doors, headers, body, "data must be of type object, got str")


@_SETTINGS
@given(sdk_events(st.binary(min_size=1, max_size=32), content_type="application/octet-stream"))
def test_sdk_binary_data_is_read_as_bytes(doors: dict[str, Door], event: CloudEvent) -> None:
    for headers, body in (to_binary(event), to_structured(event)):  # data_base64 in JSON
        assert http_binding.from_http(headers, body) == [expected(event)]
        _refused_naming(doors, headers, body, "data must be of type object, got bytes")


# --- ours into the SDK ---------------------------------------------------------------------

_CHARSET_DATA = st.one_of(
    st.tuples(st.sampled_from(["application/json", "application/vnd.x+json"]),
              JSON_VALUES.filter(lambda v: v is not None)),
    st.tuples(st.sampled_from(["text/plain", "text/csv; charset=utf-8"]),
              st.text(min_size=1, max_size=24)),
    st.tuples(st.just("application/octet-stream"), st.binary(min_size=1, max_size=24)),
)


@st.composite
def our_events(draw: st.DrawFn, safe: bool) -> Event:
    text = SAFE if safe else TEXT
    content_type, data = draw(_CHARSET_DATA)
    # Always a time: the SDK's CloudEvent fills in "now" when an event has none.
    return Event(id=draw(text), source=draw(text), type=draw(text), data=data,
                 time=draw(RFC3339), subject=draw(st.none() | text),
                 datacontenttype=content_type,
                 extensions=draw(SAFE_EXTENSIONS if safe else
                                 st.dictionaries(EXTENSION_NAMES, TEXT, max_size=3)))


def _sdk_reads(event: Event, headers: dict[str, str], body: bytes) -> None:
    kind = http_binding.data_kind(event.datacontenttype)
    # The SDK reads binary-mode data as JSON if it parses, whatever the content type;
    # a receiver of typed data passes the unmarshaller its content type calls for.
    unmarshal = {"json": None, "text": lambda b: b.decode("utf-8"),
                 "bytes": lambda b: b}[kind or "json"]
    got = from_http(headers, body, data_unmarshaller=unmarshal)
    assert got.get_attributes() == event.attributes()
    assert got.get_data() == event.data


@settings(max_examples=150, deadline=None)
@given(our_events(safe=True))
def test_the_sdk_reads_our_binary_mode(event: Event) -> None:
    _sdk_reads(event, *http_binding.to_binary(event))


@settings(max_examples=150, deadline=None)
@given(our_events(safe=False))
def test_the_sdk_reads_our_structured_mode(event: Event) -> None:
    headers, body = http_binding.to_structured(event)
    got = from_http(headers, body)
    assert got.get_attributes() == event.attributes()
    assert got.get_data() == event.data
