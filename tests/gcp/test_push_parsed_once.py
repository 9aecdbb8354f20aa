"""A push body is parsed once per delivery, by the strict JSON reader, whatever it carries.

`process_push` sniffs the body (Cloud Storage CloudEvent? notification or scheduler
push?), decodes it (`read_push`, or the HTTP binding for Eventarc) and, when that fails,
takes it apart again for the dead letter; all of them share one parse. Counted here by
wrapping the strict reader's `loads` and `json.JSONDecoder.decode` (which `json.loads`
and every other decoder end in), counting only the calls that parse this body: one
strict parse, and no decoder parsing it outside of that one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from adapters.gcp import pubsub_binding as pb
from adapters.gcp import storage_events
from adapters.gcp.entry import REASON_ATTRIBUTE, Runtime, process_push
from handlers.catalog import INVENTORY_UPDATED
from handlers.core import http_binding
from handlers.core.events import Event
from handlers.core.wire import jsontext
from tests.factories import order_created
from tests.gcp.test_adapters import push, runtime
from tests.gcp.test_storage_events import (
    CSV,
    FakeGcs,
    finalized_headers,
    make_runtime,
    object_resource,
)

Push = tuple[Runtime, Mapping[str, str], bytes]


def _bus_message() -> Push:
    return runtime(), {}, push(order_created("o1", [("i1", 1, 5.0)]))


def _permanent_error() -> Push:
    removal = Event.new("inventory", "com.switchyard.inventory.updated",
                        {"item_id": "i", "quantity": 3, "action": "remove"})
    return runtime("inventory"), {}, push(removal)


def _files() -> Runtime:
    gcs = FakeGcs()
    gcs.objects[("p-uploads", "n.csv")] = CSV
    return make_runtime(gcs, "file-processor")


def _storage_notification() -> Push:
    resource = object_resource("n.csv", CSV)
    envelope = pb.push_envelope(pb.PubSubMessage(
        json.dumps(resource).encode(),
        {"eventType": "OBJECT_FINALIZE", "bucketId": "p-uploads", "objectId": "n.csv",
         "objectGeneration": resource["generation"], "payloadFormat": "JSON_API_V1",
         **storage_events.notification_attributes()}))
    return _files(), {"content-type": "application/json"}, json.dumps(envelope).encode()


def _storage_cloudevent_binary() -> Push:
    return (_files(), finalized_headers("n.csv"),
            json.dumps(object_resource("n.csv", CSV)).encode())


def _storage_cloudevent_structured() -> Push:
    event = {"specversion": "1.0", "id": "42", "type": storage_events.GCS_FINALIZED,
             "source": "//storage.googleapis.com/projects/_/buckets/p-uploads",
             "subject": "objects/n.csv", "time": "2026-11-22T04:55:19Z",
             "datacontenttype": "application/json", "data": object_resource("n.csv", CSV)}
    return _files(), {"content-type": "application/cloudevents+json"}, \
        json.dumps(event).encode()


def _eventarc(to_http: Callable[[Event], tuple[dict[str, str], bytes]]) -> Push:
    envelope = pb.push_envelope(pb.to_message(order_created("o2", [("i1", 1, 5.0)])))
    wrapper = Event.new("//pubsub.googleapis.com/projects/p/topics/bus",
                        pb.MESSAGE_PUBLISHED, envelope)
    headers, body = to_http(wrapper)
    return runtime(), headers, body


def _invalid() -> Push:
    return runtime(), {}, b'{"message": {"data": '


CASES: Mapping[str, tuple[Callable[[], Push], str | None]] = {
    # name: (the push, the dead-letter reason it must get, or None if it is handled)
    "bus message": (_bus_message, None),
    "permanent error": (_permanent_error, "cannot remove 3 of item 'i'"),
    "storage notification": (_storage_notification, None),
    "storage CloudEvent, binary": (_storage_cloudevent_binary, None),
    "storage CloudEvent, structured": (_storage_cloudevent_structured, None),
    "Eventarc messagePublished, binary": (lambda: _eventarc(http_binding.to_binary), None),
    "Eventarc messagePublished, structured": (
        lambda: _eventarc(http_binding.to_structured), None),
    "invalid JSON": (_invalid, "invalid push request"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_push_body_is_parsed_once_by_the_strict_reader(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make, reason = CASES[name]
    rt, headers, body = make()
    text = body.decode(errors="replace")
    other_parse: list[object] = []
    strict_parse: list[object] = []
    json_decode, strict_loads = json.JSONDecoder.decode, jsontext.loads
    in_strict = [False]

    def counting_json(self: json.JSONDecoder, s: Any, *args: Any, **kwargs: Any) -> Any:
        if s in (body, text) and not in_strict[0]:
            other_parse.append(s)
        return json_decode(self, s, *args, **kwargs)

    def counting_strict(s: Any) -> Any:
        if s in (body, text):
            strict_parse.append(s)
        in_strict[0] = True
        try:
            return strict_loads(s)
        finally:
            in_strict[0] = False

    monkeypatch.setattr(json.JSONDecoder, "decode", counting_json)
    monkeypatch.setattr(jsontext, "loads", counting_strict)
    assert process_push(rt, headers, body) == ("", 204)
    assert (len(strict_parse), len(other_parse)) == (1, 0)
    letters = rt.dead_letters.letters
    if reason is None:
        assert letters == []
    else:
        [letter] = letters
        assert reason in letter.attributes[REASON_ATTRIBUTE]


def test_an_invalid_body_is_dead_lettered_whole_with_the_parsers_reason() -> None:
    rt, headers, body = _invalid()
    assert process_push(rt, headers, body) == ("", 204)
    [letter] = rt.dead_letters.letters
    assert letter.data == body and letter.attributes[REASON_ATTRIBUTE].startswith(
        "invalid push request: body is not valid JSON: ")


def test_a_storage_upload_is_published_once_parsed() -> None:
    rt, headers, body = _storage_notification()
    assert process_push(rt, headers, body) == ("", 204)
    published = rt.ports.publisher._inner.published  # type: ignore[attr-defined]
    assert [e.type for e in published][0] == INVENTORY_UPDATED
