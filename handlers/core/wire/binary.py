"""Binary content mode, shared by the HTTP and Pub/Sub bindings.

Both carry each context attribute in a `ce-<name>` field (an HTTP header, a Pub/Sub
message attribute), `datacontenttype` in a `content-type` field, and the data as the
raw body / message bytes, encoded by the data codec (`wire.data`). The only difference
is how a field value is spelled: HTTP percent-encodes it (the HTTP binding does that on
its side), Pub/Sub attributes are UTF-8 strings taken as they are. Errors name the field
with the transport's own noun ("header 'ce-id'", "attribute 'ce-id'"), so no binding
rewrites another's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from handlers.core.events import CORE_ATTRIBUTES, Event, attribute_problems
from handlers.core.wire import data as codec
from handlers.core.wire import jsontext

PREFIX: Final = "ce-"
CONTENT_TYPE: Final = "content-type"

# Attributes that must never arrive as a `ce-` field, and why.
_FORBIDDEN: Final[Mapping[str, str]] = {
    "ce-datacontenttype": "must not be present in binary mode (the content-type {noun} "
    "carries datacontenttype)",
    "ce-data": "'data' is reserved for the event data and cannot be an attribute",
}


#: Field -> attribute, for the fields nearly every event has (`read`'s fast path).
_ATTRIBUTE_OF: Final[Mapping[str, str]] = {
    **{PREFIX + name: name for name in sorted(CORE_ATTRIBUTES - {"datacontenttype"})},
    PREFIX + "traceparent": "traceparent", CONTENT_TYPE: "datacontenttype"}
_USUAL_FIELDS: Final = frozenset(_ATTRIBUTE_OF)


def write(event: Event) -> tuple[dict[str, str], bytes, list[str]]:
    """(fields, body, problems): `ce-*` fields with plain values plus `content-type`, the
    data bytes, and every reason the event would not read back exactly."""
    body, problems = codec.encode(event.data, event.datacontenttype)
    fields: dict[str, str] = {}
    for name, value in event.attributes().items():
        fields[CONTENT_TYPE if name == "datacontenttype" else PREFIX + name] = value
    return fields, body, problems


def read(fields: Mapping[str, str], body: bytes, noun: str,
         parsed: jsontext.Once | None = None) -> tuple[Event | None, list[str]]:
    """The event in lower-cased, already-decoded `fields` and `body`, or every problem.

    Fields that are neither `ce-*` nor `content-type` are not the event's and are ignored.
    `parsed` (holding `body`) lets a caller that has parsed the body share that parse.
    """
    problems: list[str] = []
    attributes: dict[str, Any]
    if fields.keys() <= _USUAL_FIELDS:
        # Each name is a core attribute's, the trace context's or the content type's:
        # renamed all at once (content-type becomes datacontenttype, set again below).
        attributes = dict(zip(map(_ATTRIBUTE_OF.__getitem__, fields), fields.values(),
                              strict=True))
    else:
        attributes = {}
        for name, value in fields.items():
            if not name.startswith(PREFIX):
                continue
            if name in _FORBIDDEN:
                problems.append(f"{noun} '{name}' {_FORBIDDEN[name].format(noun=noun)}")
                continue
            attributes[name[len(PREFIX):]] = value
    content_type = fields.get(CONTENT_TYPE, "").strip(" \t") or None
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    else:
        attributes.pop("datacontenttype", None)  # (only the renaming above can set it)
    problems.extend(attribute_problems(attributes))
    data, more = codec.decode(body, content_type, parsed)
    problems.extend(more)
    if problems:
        return None, problems
    return Event.from_checked_attributes(attributes, data), []


__all__ = ["CONTENT_TYPE", "PREFIX", "read", "write"]
