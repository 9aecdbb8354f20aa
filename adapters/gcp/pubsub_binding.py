"""CloudEvents Pub/Sub protocol binding: Event <-> Pub/Sub message, and push decoding.

Binary mode puts every context attribute in a `ce-<name>` message attribute (values
verbatim: Pub/Sub attributes are UTF-8 strings, there is no percent-encoding as in HTTP),
`datacontenttype` in the `content-type` attribute and the data as the message bytes.
Structured mode sends the JSON event format with `content-type:
application/cloudevents+json` (plus `ce-type`, for subscription filters). Binary mode is
the shared wire layer's (`handlers.core.wire.binary`, with the data codec of
`handlers.core.wire.data`), fed the attributes as they are: the HTTP binding uses the same
code after undoing its header encoding, so both bindings accept and refuse the same
things, and each names its own fields ("attribute 'ce-id'") in every problem.

A push request arrives either as Pub/Sub's raw envelope (`{"message": {...},
"subscription": ...}`) or, through Eventarc, as a `google.cloud.pubsub.topic.v1.
messagePublished` CloudEvent whose data is that same envelope; `read_push` accepts both.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from handlers.core import http_binding, jsonformat
from handlers.core.errors import ValidationError
from handlers.core.events import CORE_ATTRIBUTES, Event
from handlers.core.wire import binary, jsontext
from handlers.core.wire import data as codec

Mode = Literal["binary", "structured", "auto"]

PREFIX: Final = binary.PREFIX
CONTENT_TYPE: Final = binary.CONTENT_TYPE
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
_STRUCTURED_PREFIX: Final = "application/cloudevents"
#: Pub/Sub limits (https://cloud.google.com/pubsub/quotas#resource_limits).
MAX_MESSAGE_BYTES: Final = 10 * 1000 * 1000
MAX_ATTRIBUTES: Final = 100
MAX_ATTRIBUTE_KEY_BYTES: Final = 256
MAX_ATTRIBUTE_VALUE_BYTES: Final = 1024
#: `read_push`'s `mode` when the caller has not read the headers' content mode.
SNIFF: Final = "sniff"
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
    attributes, body, problems = binary.write(event)
    if problems:
        raise ValidationError(f"event '{event.id}' cannot be sent exactly in binary mode",
                              problems)
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


def _read_message(data: bytes, attributes: Mapping[str, Any]) -> tuple[Event | None, list[str]]:
    problems: list[str] = []
    fields: Mapping[str, str]
    if attributes.keys() <= _PLAIN_FIELDS and all(map(isinstance, attributes.values(), _STR)):
        # Every name is already lower-case and the event's, every value a string (what
        # a publisher of ours sends): the loop below would copy them as they are.
        fields = attributes
    else:
        fields = _event_fields(attributes, problems)
    media_type = codec.media_type(fields.get(CONTENT_TYPE, ""))
    if media_type.startswith(_STRUCTURED_PREFIX):
        return _read_structured(media_type, data, problems)
    event, more = binary.read(fields, data, "attribute")
    problems.extend(more)
    return (None if problems else event), problems


#: Attribute names that need no lower-casing and are the event's: the core attributes'
#: fields, `content-type`, and the trace context every event of ours carries.
_PLAIN_FIELDS: Final = frozenset(
    {PREFIX + name for name in CORE_ATTRIBUTES - {"datacontenttype"}}
    | {CONTENT_TYPE, PREFIX + "traceparent"})
_STR: Final = itertools.repeat(str)


def _event_fields(attributes: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    """The event's attributes (`ce-*` and `content-type`), names lower-cased."""
    fields: dict[str, str] = {}
    for key, value in attributes.items():
        lowered = str(key).lower()
        if not (lowered.startswith(PREFIX) or lowered == CONTENT_TYPE):
            continue  # not the event's: Pub/Sub's own, or the publisher's
        if not isinstance(value, str):
            problems.append(f"attribute '{key}' must be a string, got "
                            f"{jsontext.json_type(value)}")
        elif lowered in fields and fields[lowered] != value:
            problems.append(f"attribute '{lowered}' is given twice with different values")
        else:
            fields[lowered] = value
    return fields


def _read_structured(media_type: str, data: bytes,
                     problems: list[str]) -> tuple[Event | None, list[str]]:
    """Structured mode: the message data is one event in the JSON format."""
    if media_type != STRUCTURED_CONTENT_TYPE:
        kind = "batched mode is not part of the Pub/Sub binding" \
            if media_type.startswith(_STRUCTURED_PREFIX + "-batch") else \
            f"unsupported event format '{media_type}' (only {STRUCTURED_CONTENT_TYPE} is " \
            "understood)"
        return None, [*problems, kind]
    parsed, problem = jsontext.parse(data, "message data")
    if problem:
        return None, [*problems, problem]
    try:
        event = jsonformat.from_dict(parsed)
    except ValidationError as error:
        return None, [*problems, *(error.problems or [str(error)])]
    return (None if problems else event), problems


def _parse_push(headers: Mapping[str, str], body: bytes, parsed: jsontext.Once,
                mode: str | None) -> tuple[bytes, Mapping[str, Any], Delivery, list[str]]:
    """(data, attributes as sent, delivery, problems), from the body's one parse.

    Eventarc wraps the envelope in a `messagePublished` CloudEvent, whose data the HTTP
    binding hands back already parsed. `mode`: the headers' `http_binding.content_mode`.
    """
    problems: list[str] = []
    envelope: Any = None
    if mode is not None:
        try:
            [wrapper] = http_binding.from_http(headers, body, parsed)
        except ValidationError as error:
            raise ValidationError("invalid Eventarc push", error.problems) from None
        except ValueError:
            raise ValidationError("invalid Eventarc push",
                                  ["expected exactly one CloudEvent"]) from None
        if wrapper.type != MESSAGE_PUBLISHED:
            problems.append(f"Eventarc event type '{wrapper.type}' is not {MESSAGE_PUBLISHED}")
        envelope = wrapper.data
    else:
        envelope, problem = parsed.parse()
        if problem:
            raise ValidationError("invalid push request", [problem])
    # (`isinstance(x, dict)` first: a plain type check, where Mapping's goes through abc.)
    message = envelope.get("message") if isinstance(envelope, (dict, Mapping)) else None
    if not isinstance(message, dict) and not isinstance(message, Mapping):
        raise ValidationError("invalid push request",
                              [*problems, "push body must be an object with a 'message' object"])
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) and not isinstance(attributes, Mapping):
        problems.append(f"message 'attributes' must be an object, got "
                        f"{jsontext.json_type(attributes)}")
        attributes = {}
    data, problem = codec.decode_base64(message.get("data", ""), "message 'data'")
    if problem:
        problems.append(problem)
    attempt = envelope.get("deliveryAttempt")
    message_id = message.get("messageId") or message.get("message_id")
    subscription = envelope.get("subscription")
    delivery = _delivery(
        None if message_id is None else str(message_id),
        None if subscription is None else str(subscription),
        attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )
    return data or b"", attributes, delivery, problems


_new_delivery: Final = object.__new__
_set_message_id, _set_subscription, _set_attempt = (
    vars(Delivery)[name].__set__ for name in ("message_id", "subscription", "attempt"))


def _delivery(message_id: str | None, subscription: str | None, attempt: int | None
              ) -> Delivery:
    """`Delivery(message_id, subscription, attempt)`, each slot set through its own
    descriptor (the frozen dataclass's `__init__` goes through `object.__setattr__`)."""
    delivery = _new_delivery(Delivery)
    _set_message_id(delivery, message_id)
    _set_subscription(delivery, subscription)
    _set_attempt(delivery, attempt)
    return delivery


def read_push(headers: Mapping[str, str], body: bytes,
              parsed: jsontext.Once | None = None, *,
              mode: str | None = SNIFF) -> tuple[Event, Delivery]:
    """Decode a push request (raw envelope, or Eventarc's messagePublished CloudEvent).

    Raises `ValidationError` listing every problem: envelope shape, base64, attributes.
    `parsed`, when given, holds `body` and shares its one parse with the caller's other
    readers of the same request; `mode`, when given, is `http_binding.content_mode` of
    `headers`, for a caller that has looked already.
    """
    data, attributes, delivery, problems = _parse_push(
        headers, body, parsed if parsed is not None else jsontext.Once(body),
        http_binding.content_mode(headers) if mode == SNIFF else mode)
    event, more = _read_message(data, attributes)
    problems.extend(more)
    if problems or event is None:
        raise ValidationError("invalid CloudEvents Pub/Sub message", problems)
    return event, delivery


def push_envelope(message: PubSubMessage, *, message_id: str = "1",
                  subscription: str = "projects/p/subscriptions/s",
                  attempt: int | None = None) -> dict[str, Any]:
    """The envelope Pub/Sub POSTs for `message` (tests and local tooling)."""
    body: dict[str, Any] = {
        "message": {"data": codec.encode_base64(message.data),
                    "attributes": dict(message.attributes), "messageId": message_id},
        "subscription": subscription,
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return body


__all__ = ["Delivery", "PubSubMessage", "from_message", "limit_problems", "push_envelope",
           "read_push", "to_message"]
