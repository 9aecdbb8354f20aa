"""Cloud Storage and Cloud Scheduler deliveries, normalised to catalog events.

Cloud Storage announces a finished upload in two shapes, both accepted here:

- a Pub/Sub notification (`JSON_API_V1`) pushed by the uploads subscription: attributes
  `eventType=OBJECT_FINALIZE`, `bucketId`, `objectId`, `objectGeneration`, data = the
  object resource (this is what the stack deploys: a push subscription can have a
  dead-letter topic, an Eventarc trigger cannot);
- a `google.cloud.storage.object.v1.finalized` CloudEvent (an Eventarc trigger), binary
  or structured HTTP mode, data = the same object resource.

Either becomes `storage.object.finalized` with the logical bucket name and an id derived
from (bucket, object, generation): Cloud Storage may notify twice for one write.

Cloud Scheduler publishes a fixed message; it cannot put the firing time in it. A job's
message carries the attribute `switchyard-schedule` (the schedule's name); the firing
time is the message's publish time truncated to the minute, so a retried publish of the
same firing gets the same slot, hence the same event id.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from handlers.core import http_binding
from handlers.core.app import App
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.schedule import fired_event, slot_iso
from handlers.core.storage import STORAGE_OBJECT_FINALIZED
from handlers.core.wire import jsontext

GCS_FINALIZED: Final = "google.cloud.storage.object.v1.finalized"
OBJECT_FINALIZE: Final = "OBJECT_FINALIZE"
SCHEDULE_ATTRIBUTE: Final = "switchyard-schedule"
_NAMESPACE: Final = uuid.UUID("b3a1f0c2-6d4e-4a8b-9f17-2c5e7d9a0b64")


def from_object_resource(resource: Any, buckets: Mapping[str, str],
                         time: str | None = None) -> Event:
    """The catalog event for one object resource (JSON API `Object`)."""
    problems: list[str] = []
    if not isinstance(resource, Mapping):
        raise ValidationError("Cloud Storage event data is not an object resource",
                              [f"got {type(resource).__name__}"])
    physical = str(resource.get("bucket", ""))
    logical = {v: k for k, v in buckets.items()}.get(physical)
    if logical is None:
        problems.append(f"bucket {physical!r} is not one this function knows "
                        f"({', '.join(sorted(buckets.values())) or 'none'})")
    for field in ("name", "size", "generation"):
        if field not in resource:
            problems.append(f"object resource has no '{field}'")
    size = str(resource.get("size", "0"))
    if not size.isdigit():
        problems.append(f"object size {size!r} is not a whole number")
    if problems:
        raise ValidationError("Cloud Storage event cannot be normalised", problems)
    name, generation = str(resource["name"]), str(resource["generation"])
    return Event(
        id=str(uuid.uuid5(_NAMESPACE, f"{physical}/{name}#{generation}")), source="storage",
        type=STORAGE_OBJECT_FINALIZED, subject=name, datacontenttype="application/json",
        time=time or resource.get("updated") or resource.get("timeCreated"),
        data={"bucket": logical, "name": name, "size": int(size),
              "etag": str(resource.get("md5Hash") or resource.get("etag") or generation),
              "content_type": str(resource.get("contentType", ""))})


def is_storage_cloudevent(headers: Mapping[str, str]) -> bool:
    """Whether an Eventarc delivery in binary mode carries a Cloud Storage finalize."""
    for name, value in headers.items():  # (a loop: no generator for every push)
        if value == GCS_FINALIZED and name.lower() == "ce-type":
            return True
    return False


def from_cloudevent(headers: Mapping[str, str], body: bytes, buckets: Mapping[str, str],
                    parsed: jsontext.Once | None = None) -> Event:
    """An Eventarc `google.cloud.storage.object.v1.finalized` delivery (`parsed`: the
    body's parse, shared with the caller's other readers of it)."""
    [event] = http_binding.from_http(headers, body, parsed)
    if event.type != GCS_FINALIZED:
        raise ValidationError("not a Cloud Storage finalized event",
                              [f"type is {event.type!r}, want {GCS_FINALIZED!r}"])
    return from_object_resource(event.data, buckets, event.time)


def is_structured_storage_event(headers: Mapping[str, str], body: bytes,
                                parsed: jsontext.Once | None = None) -> bool:
    if http_binding.content_mode(headers) != "structured":
        return False
    envelope, _ = (parsed if parsed is not None else jsontext.Once(body)).parse()
    return isinstance(envelope, dict) and envelope.get("type") == GCS_FINALIZED


def push_message(body: bytes, parsed: jsontext.Once | None = None
                 ) -> tuple[Mapping[str, str], bytes, str | None] | None:
    """(attributes, data, publishTime) of a raw push envelope; None if it is not one."""
    envelope, problem = (parsed if parsed is not None else jsontext.Once(body)).parse()
    if problem:
        return None
    try:
        message = envelope["message"]
        attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
        data = base64.b64decode(message.get("data", ""), validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
    return attributes, data, message.get("publishTime") or message.get("publish_time")


def _is_native(parsed: jsontext.Once) -> bool:
    """Whether a push carries one of the attributes `from_push` acts on (looked at before
    anything of the message is decoded: most pushes are ordinary bus messages)."""
    envelope, problem = parsed.parse()
    if problem or not isinstance(envelope, dict):
        return False
    message = envelope.get("message")
    attributes = message.get("attributes") if isinstance(message, dict) else None
    if not isinstance(attributes, dict):
        return False
    # Given as push_message reads it: str() of what was sent is not empty.
    schedule, event_type = attributes.get(SCHEDULE_ATTRIBUTE), attributes.get("eventType")
    if schedule is None and event_type is None:
        return False  # an ordinary bus message
    return _given(schedule) or (_given(event_type) and _given(attributes.get("bucketId")))


def _given(value: Any) -> bool:
    return value is not None and str(value) != ""


def from_push(body: bytes, app: App, buckets: Mapping[str, str],
              parsed: jsontext.Once | None = None) -> Event | None:
    """A pushed GCS notification or Cloud Scheduler message as a catalog event; None for
    anything else (ordinary bus messages, decoded by `pubsub_binding`). `parsed`: the
    body's parse, shared with the caller's other readers of it."""
    parsed = parsed if parsed is not None else jsontext.Once(body)
    if not _is_native(parsed):
        return None  # an ordinary bus message: nothing here to decode it twice
    found = push_message(body, parsed)
    if found is None:
        return None
    attributes, data, publish_time = found
    if attributes.get("eventType") and attributes.get("bucketId"):
        if attributes["eventType"] != OBJECT_FINALIZE:
            raise ValidationError("unexpected Cloud Storage notification",
                                  [f"eventType is {attributes['eventType']!r}, want "
                                   f"{OBJECT_FINALIZE!r} (the notification config asks only "
                                   "for finalized objects)"])
        if attributes.get("payloadFormat", "JSON_API_V1") != "JSON_API_V1":
            raise ValidationError("Cloud Storage notification without the object",
                                  ["payloadFormat must be JSON_API_V1"])
        try:
            resource = json.loads(data)
        except ValueError as error:
            raise ValidationError("Cloud Storage notification data is not JSON",
                                  [str(error)]) from None
        return from_object_resource(resource, buckets, publish_time)
    name = attributes.get(SCHEDULE_ATTRIBUTE)
    if name:
        schedule = next((s for s in app.schedules if s.name == name), None)
        if schedule is None:
            raise ValidationError("Cloud Scheduler message for an unknown schedule",
                                  [f"no schedule named {name!r}"])
        if not publish_time:
            raise ValidationError("Cloud Scheduler message has no publishTime")
        at = datetime.fromisoformat(publish_time.replace("Z", "+00:00"))
        return fired_event(schedule, app.catalog, slot_iso(at.replace(second=0,
                                                                      microsecond=0)))
    return None


def scheduler_message(schedule_name: str, event_type: str) -> dict[str, Any]:
    """What a Cloud Scheduler job publishes on the bus: `ce-type` routes it through the
    consumers' subscription filters, `switchyard-schedule` says which schedule fired."""
    return {"data": base64.b64encode(json.dumps({"schedule": schedule_name}).encode()).decode(),
            "attributes": {SCHEDULE_ATTRIBUTE: schedule_name, "ce-type": event_type}}


def notification_attributes() -> dict[str, str]:
    """Custom attributes the uploads bucket's notification adds, so the bus subscription
    filters (`attributes.ce-type`) route it to the file processor."""
    return {"ce-type": STORAGE_OBJECT_FINALIZED}
