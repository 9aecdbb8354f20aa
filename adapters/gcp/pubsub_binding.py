"""CloudEvents Pub/Sub protocol binding: Event <-> Pub/Sub message, and push decoding.

Binary mode puts every context attribute in a `ce-<name>` message attribute (values
verbatim: Pub/Sub attributes are UTF-8 strings, there is no percent-encoding as in HTTP),
`datacontenttype` in the `content-type` attribute and the data as the message bytes.
Structured mode sends the JSON event format with `content-type:
application/cloudevents+json` (plus `ce-type`, for subscription filters). The rules for
what data bytes mean under which content type are the HTTP binding's
(`handlers.core.http_binding`): decoding hands the message to that decoder with the
attributes percent-encoded into `ce-*` "headers", which is exactly invertible, so both
bindings accept and refuse the same things and report every problem.

A push request arrives either as Pub/Sub's raw envelope (`{"message": {...},
"subscription": ...}`) or, through Eventarc, as a `google.cloud.pubsub.topic.v1.
messagePublished` CloudEvent whose data is that same envelope; `read_push` accepts both.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from handlers.core import http_binding
from handlers.core.errors import ValidationError
from handlers.core.events import Event, attribute_problems

Mode = Literal["binary", "structured", "auto"]

PREFIX: Final = "ce-"
CONTENT_TYPE: Final = "content-type"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
#: Pub/Sub limits (https://cloud.google.com/pubsub/quotas#resource_limits).
MAX_MESSAGE_BYTES: Final = 10 * 1000 * 1000
MAX_ATTRIBUTES: Final = 100
MAX_ATTRIBUTE_KEY_BYTES: Final = 256
MAX_ATTRIBUTE_VALUE_BYTES: Final = 1024
#: Eventarc's type for "a message was published on a topic".
MESSAGE_PUBLISHED: Final = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True, slots=True)
class PubSubMessage:
    """What Pub/Sub carries: data bytes and string attributes."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)

    def size(self) -> int:
        """Bytes Pub/Sub counts against the message size limit (data plus attributes)."""
        return len(self.data) + sum(len(k.encode()) + len(v.encode())
                                    for k, v in self.attributes.items())


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a pushed event came from; `attempt` is Pub/Sub's deliveryAttempt (1-based)."""

    message_id: str | None
    subscription: str | None
    attempt: int | None
    attributes: Mapping[str, str]


# --- encoding -------------------------------------------------------------------------


def to_message(event: Event, mode: Mode = "auto") -> PubSubMessage:
    """Encode `event`; "auto" is binary mode when that is exact, else structured mode."""
    if mode == "auto":
        mode = "structured" if http_binding.binary_problems(event) else "binary"
    if mode == "structured":
        _, body = http_binding.to_structured(event)
        # The body carries the event; `ce-type` is repeated as an attribute only because
        # subscription filters can match attributes alone (without it, every consumer's
        # `attributes.ce-type = ...` filter would silently skip a structured message).
        # Decoding ignores it: in structured mode the body wins.
        return PubSubMessage(body, {CONTENT_TYPE: STRUCTURED_CONTENT_TYPE,
                                    PREFIX + "type": event.type})
    _, body = http_binding.to_binary(event)  # raises, naming why, if not exact
    attributes = {PREFIX + name: value for name, value in event.attributes().items()
                  if name != "datacontenttype"}
    if event.datacontenttype is not None:
        attributes[CONTENT_TYPE] = event.datacontenttype
    return PubSubMessage(body, attributes)


def limit_problems(message: PubSubMessage) -> list[str]:
    """Why Pub/Sub would refuse this message (empty when it fits every limit)."""
    problems: list[str] = []
    if len(message.attributes) > MAX_ATTRIBUTES:
        problems.append(f"{len(message.attributes)} attributes, over Pub/Sub's limit of "
                        f"{MAX_ATTRIBUTES}")
    for key, value in message.attributes.items():
        if len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES:
            problems.append(f"attribute name '{key[:40]}...' is over "
                            f"{MAX_ATTRIBUTE_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            problems.append(f"attribute '{key}' is {len(value.encode())} bytes, over "
                            f"{MAX_ATTRIBUTE_VALUE_BYTES}")
        if key.startswith("goog"):
            problems.append(f"attribute name '{key}' is reserved (starts with 'goog')")
    if message.size() > MAX_MESSAGE_BYTES:
        problems.append(f"message is {message.size()} bytes, over Pub/Sub's limit of "
                        f"{MAX_MESSAGE_BYTES} bytes")
    return problems


# --- decoding -------------------------------------------------------------------------


def from_message(data: bytes, attributes: Mapping[str, str]) -> Event:
    """Decode a message in either mode; `ValidationError` names every problem."""
    event, problems = _read_message(data, attributes)
    if problems or event is None:
        raise ValidationError("invalid CloudEvents Pub/Sub message", problems)
    return event


def _read_message(data: bytes, attributes: Mapping[str, str]) -> tuple[Event | None, list[str]]:
    problems: list[str] = []
    headers: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(value, str):
            problems.append(f"attribute '{key}' must be a string")
            continue
        lowered = key.lower()
        if lowered.startswith(PREFIX):
            headers[lowered] = http_binding.percent_encode(value)
        elif lowered == CONTENT_TYPE:
            headers[lowered] = value
    mode = http_binding.content_mode(headers)
    if mode == "batch":
        return None, [*problems, "batched mode is not part of the Pub/Sub binding"]
    if mode is None and any(name.startswith(PREFIX) for name in headers):
        # Meant as binary mode but without ce-specversion: name every missing attribute
        # rather than just "not a CloudEvent".
        named = {name[len(PREFIX):]: value for name, value in attributes.items()
                 if name.lower().startswith(PREFIX)}
        return None, [*problems, *attribute_problems(named)]
    positioned, more = http_binding.read_http(headers, data)
    problems.extend(p.replace("header '", "attribute '") for p in more)
    if problems or not positioned:
        return None, problems
    return positioned[0][1], []


def read_push(headers: Mapping[str, str], body: bytes) -> tuple[Event, Delivery]:
    """Decode a push request (raw envelope, or Eventarc's messagePublished CloudEvent).

    Raises `ValidationError` listing every problem: envelope shape, base64, attributes.
    """
    problems: list[str] = []
    envelope: Any = None
    if http_binding.content_mode(headers) is not None:
        try:
            [wrapper] = http_binding.from_http(headers, body)
        except ValidationError as error:
            raise ValidationError("invalid Eventarc push", error.problems) from None
        except ValueError:
            raise ValidationError("invalid Eventarc push",
                                  ["expected exactly one CloudEvent"]) from None
        if wrapper.type != MESSAGE_PUBLISHED:
            problems.append(f"Eventarc event type '{wrapper.type}' is not {MESSAGE_PUBLISHED}")
        envelope = wrapper.data
    else:
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise ValidationError("invalid push request",
                                  [f"body is not valid JSON: {error}"]) from None
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("message"), Mapping):
        raise ValidationError("invalid push request",
                              [*problems, "push body must be an object with a 'message' object"])
    message: Mapping[str, Any] = envelope["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        problems.append("message 'attributes' must be an object")
        attributes = {}
    raw = message.get("data", "")
    data = b""
    if not isinstance(raw, str):
        problems.append("message 'data' must be a base64 string")
    else:
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            problems.append("message 'data' is not valid base64")
    event, more = _read_message(data, attributes)
    problems.extend(more)
    if problems or event is None:
        raise ValidationError("invalid CloudEvents Pub/Sub message", problems)
    attempt = envelope.get("deliveryAttempt")
    return event, Delivery(
        message_id=_opt(message.get("messageId") or message.get("message_id")),
        subscription=_opt(envelope.get("subscription")),
        attempt=attempt if isinstance(attempt, int) else None,
        attributes={str(k): str(v) for k, v in attributes.items()},
    )


def push_envelope(message: PubSubMessage, *, message_id: str = "1",
                  subscription: str = "projects/p/subscriptions/s",
                  attempt: int | None = None) -> dict[str, Any]:
    """The envelope Pub/Sub POSTs for `message` (tests and local tooling)."""
    body: dict[str, Any] = {
        "message": {"data": base64.b64encode(message.data).decode("ascii"),
                    "attributes": dict(message.attributes), "messageId": message_id},
        "subscription": subscription,
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return body


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


__all__ = ["Delivery", "PubSubMessage", "from_message", "limit_problems", "push_envelope",
           "read_push", "to_message"]
