"""CloudEvents HTTP protocol binding 1.0: Event <-> (headers, body) in every content mode.

Structured and batched mode put the whole event in a JSON body (`jsonformat`), so they
carry any event exactly. Binary mode carries the attributes as percent-encoded `ce-*`
headers and the data as the raw body, so only the content type can say which Python type
`data` had on the way in:

    Content-Type                         data read back as
    JSON (application/json, */*+json,    the JSON value
      text/json)
    text (text/*, */*+xml, charset=...)  str, decoded with the declared charset
    any other                            bytes
    none                                 the JSON value if the body is JSON, else bytes

An event whose data does not fit its content type (bytes labelled JSON, a dict labelled
XML, empty data that would read back as no data) cannot cross binary mode exactly.
`to_binary` refuses it, naming why, rather than change it in flight; `to_http` picks binary
mode when it is exact and structured mode otherwise, so callers that do not care about the
mode never lose anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from handlers.core import jsonformat
from handlers.core.errors import ValidationError
from handlers.core.events import Event, attribute_problems

Mode = Literal["binary", "structured", "batch"]
DataKind = Literal["json", "text", "bytes"]
#: One decoded event and where it was in the message ("event", "event[3]").
Positioned = tuple[str, Event]

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json; charset=utf-8"

_HEADER_PREFIX: Final = "ce-"
_CONTENT_TYPE: Final = "content-type"
_STRUCTURED_MEDIA_TYPE: Final = "application/cloudevents+json"
_BATCH_MEDIA_TYPE: Final = "application/cloudevents-batch+json"
# The spec tells modes apart by prefix, so "application/cloudevents+avro" is structured
# mode in a format we cannot read (a problem), not a binary event.
_MODE_PREFIXES: Final[tuple[tuple[str, Mode], ...]] = (
    ("application/cloudevents-batch", "batch"),
    ("application/cloudevents", "structured"),
)
# Attributes that must never arrive as a `ce-` header, and why.
_FORBIDDEN_HEADERS: Final[Mapping[str, str]] = {
    "ce-datacontenttype": "must not be present in binary mode (the Content-Type header "
    "carries datacontenttype)",
    "ce-data": "'data' is reserved for the event data and cannot be an attribute",
}

# How a body is read back, by media type; suffixes per RFC 6839, then the top-level type.
_MEDIA_TYPE_KINDS: Final[Mapping[str, DataKind]] = {
    "application/json": "json",
    "text/json": "json",
    "application/xml": "text",
    "application/yaml": "text",
    "application/x-yaml": "text",
    "application/javascript": "text",
    "application/x-www-form-urlencoded": "text",
    "application/graphql": "text",
}
_SUFFIX_KINDS: Final[Mapping[str, DataKind]] = {"+json": "json", "+xml": "text", "+yaml": "text"}
_TOP_LEVEL_KINDS: Final[Mapping[str, DataKind]] = {"text": "text"}
_DEFAULT_CHARSET: Final = "utf-8"

# Characters sent as themselves in a header value (spec 3.1.3.2): printable ASCII except
# space, double quote and percent. Everything else goes out as %XX of its UTF-8 bytes.
_HEADER_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_NOT_JSON: Final = object()
_EMPTY_DATA: Final = "empty data would be read back as no data (None)"


# --- encoding -------------------------------------------------------------------------


def to_binary(event: Event) -> tuple[dict[str, str], bytes]:
    """Binary mode: `ce-*` headers, Content-Type from datacontenttype, data as the body.

    Raises `ValidationError` when the event cannot come back exactly (see the module
    docstring); use `to_http` to fall back to structured mode instead.
    """
    body, problems = _binary_body(event)
    if problems:
        raise ValidationError(f"event '{event.id}' cannot be sent exactly in binary mode",
                              problems)
    headers: dict[str, str] = {}
    for name, value in event.attributes().items():
        if name == "datacontenttype":
            headers[_CONTENT_TYPE] = value
        else:
            headers[_HEADER_PREFIX + name] = percent_encode(value)
    return headers, body


def to_structured(event: Event) -> tuple[dict[str, str], bytes]:
    """Structured mode: the JSON event format as the body."""
    return {_CONTENT_TYPE: STRUCTURED_CONTENT_TYPE}, _json_bytes(jsonformat.to_dict(event))


def to_batch(events: Sequence[Event]) -> tuple[dict[str, str], bytes]:
    """Batched mode: a JSON array of events. An empty batch is refused, as on receipt."""
    if not events:
        raise ValueError("a batch needs at least one event")
    return {_CONTENT_TYPE: BATCH_CONTENT_TYPE}, _json_bytes(
        [jsonformat.to_dict(e) for e in events]
    )


def to_http(event: Event) -> tuple[dict[str, str], bytes]:
    """Binary mode when it carries the event exactly, else structured mode."""
    return to_structured(event) if binary_problems(event) else to_binary(event)


def binary_problems(event: Event) -> list[str]:
    """Why binary mode would not bring this event back exactly (empty when it would)."""
    return _binary_body(event)[1]


def percent_encode(value: str) -> str:
    """Header value encoding of spec 3.1.3.2 (upper-case hex, UTF-8 bytes)."""
    return "".join(
        c if c in _HEADER_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
        for c in value
    )


def data_kind(datacontenttype: str | None) -> DataKind | None:
    """What binary mode reads a body of this content type back as (None: no type)."""
    if datacontenttype is None:
        return None
    media_type, params = _parse_media_type(datacontenttype)
    if media_type in _MEDIA_TYPE_KINDS:
        return _MEDIA_TYPE_KINDS[media_type]
    for suffix, kind in _SUFFIX_KINDS.items():
        if media_type.endswith(suffix):
            return kind
    top_level = media_type.partition("/")[0]
    if top_level in _TOP_LEVEL_KINDS:
        return _TOP_LEVEL_KINDS[top_level]
    # A charset parameter only makes sense for text, whatever the type is called.
    return "text" if "charset" in params else "bytes"


def _binary_body(event: Event) -> tuple[bytes, list[str]]:
    """The body binary mode sends, and every reason it would not read back as `data`."""
    content_type = event.datacontenttype
    problems = _content_type_problems(content_type)
    data = event.data
    if data is None:
        return b"", problems
    kind = data_kind(content_type)
    charset = _charset(content_type)
    if isinstance(data, (bytes, bytearray)):
        body = bytes(data)
        if not body:
            problems.append(_EMPTY_DATA)
        elif kind == "json":
            problems.append(f"bytes data with JSON datacontenttype '{content_type}' would be "
                            "read back as the parsed JSON value")
        elif kind == "text":
            problems.append(f"bytes data with text datacontenttype '{content_type}' would be "
                            "read back as str")
        elif kind is None and body and _sniff_json(body) is not _NOT_JSON:
            problems.append("bytes data that is itself valid JSON, without a "
                            "datacontenttype, would be read back as the JSON value; set "
                            "datacontenttype (e.g. application/octet-stream)")
        return body, problems
    if kind in (None, "json"):
        try:
            return _json_text(data).encode(charset), problems
        except (TypeError, ValueError, RecursionError) as exc:  # incl. UnicodeEncodeError
            return b"", [*problems, f"data cannot be encoded as JSON in {charset}: {exc}"]
        except LookupError:
            return b"", [*problems, f"unknown charset '{charset}'"]
    if not isinstance(data, str):
        noun = "text" if kind == "text" else "binary"
        problems.append(f"{type(data).__name__} data cannot be sent as {noun} "
                        f"datacontenttype '{content_type}' (use str or bytes data, or a "
                        "JSON content type)")
        return b"", problems
    if not data:
        problems.append(_EMPTY_DATA)
    if kind == "bytes":
        problems.append(f"str data with binary datacontenttype '{content_type}' would be "
                        "read back as bytes")
    try:
        return data.encode(charset), problems
    except UnicodeEncodeError as exc:
        return b"", [*problems, f"data cannot be encoded in {charset}: {exc.reason}"]
    except LookupError:
        return b"", [*problems, f"unknown charset '{charset}'"]


def _content_type_problems(content_type: str | None) -> list[str]:
    if content_type is None:
        return []
    if not content_type or content_type != content_type.strip(" \t"):
        return [f"datacontenttype {content_type!r} cannot be a Content-Type header value "
                "(empty, or HTTP would strip its surrounding whitespace)"]
    if any(not 0x20 <= ord(c) <= 0x7E for c in content_type):
        return [f"datacontenttype {content_type!r} cannot be a Content-Type header value "
                "(only printable ASCII is allowed)"]
    if _mode_of(content_type) is not None:
        return [f"datacontenttype '{content_type}' would make the message read as "
                "structured or batched mode"]
    return []


# --- decoding -------------------------------------------------------------------------


def content_mode(headers: Mapping[str, str]) -> Mode | None:
    """Which content mode a message uses; None when it carries no CloudEvent at all."""
    lowered, _ = _lower(headers)
    mode = _mode_of(lowered.get(_CONTENT_TYPE))
    if mode is None and _HEADER_PREFIX + "specversion" in lowered:
        return "binary"
    return mode


def from_http(headers: Mapping[str, str], body: bytes) -> list[Event]:
    """Decode any content mode; raises `ValidationError` naming every problem."""
    events, problems = read_http(headers, body)
    if problems:
        raise ValidationError("invalid CloudEvents HTTP message", problems)
    return [event for _, event in events]


def read_http(headers: Mapping[str, str], body: bytes) -> tuple[list[Positioned], list[str]]:
    """The events that decoded (with their position) and every problem with the rest.

    For receivers that want to check more (catalog, schemas) before reporting, so the
    sender learns about every problem in one round trip.
    """
    lowered, problems = _lower(headers)
    content_type = lowered.get(_CONTENT_TYPE)
    mode = _mode_of(content_type)
    if mode is None:
        if _HEADER_PREFIX + "specversion" not in lowered:
            shown = "none" if content_type is None else repr(content_type)
            return [], [*problems, f"not a CloudEvent: no 'ce-specversion' header and the "
                        f"content type ({shown}) is neither {_STRUCTURED_MEDIA_TYPE} nor "
                        f"{_BATCH_MEDIA_TYPE}"]
        event, more = _read_binary(lowered, body)
        return ([("event", event)] if event else []), problems + more
    media_type = _parse_media_type(content_type or "")[0]
    expected = _STRUCTURED_MEDIA_TYPE if mode == "structured" else _BATCH_MEDIA_TYPE
    if media_type != expected:
        return [], [*problems, f"unsupported event format '{media_type}' (only {expected} "
                    f"is understood)"]
    parsed, problem = _parse_json(body)
    if problem:
        return [], [*problems, problem]
    if mode == "structured":
        return _read_items([("event", parsed)], problems)
    if not isinstance(parsed, list):
        return [], [*problems, f"a batch must be a JSON array, got {_json_type(parsed)}"]
    if not parsed:
        return [], [*problems, "batch is empty (send at least one event)"]
    return _read_items([(f"event[{i}]", item) for i, item in enumerate(parsed)], problems)


def _read_items(
    items: Sequence[tuple[str, Any]], problems: list[str]
) -> tuple[list[Positioned], list[str]]:
    events: list[Positioned] = []
    for where, item in items:
        try:
            events.append((where, jsonformat.from_dict(item, where)))
        except ValidationError as exc:
            problems.extend(exc.problems or [str(exc)])
    return events, problems


def _read_binary(lowered: Mapping[str, str], body: bytes) -> tuple[Event | None, list[str]]:
    problems: list[str] = []
    attributes: dict[str, Any] = {}
    for header, raw in lowered.items():
        if not header.startswith(_HEADER_PREFIX):
            continue
        if header in _FORBIDDEN_HEADERS:
            problems.append(f"header '{header}' {_FORBIDDEN_HEADERS[header]}")
            continue
        value, problem = _decode_header_value(raw)
        if problem:
            problems.append(f"header '{header}': {problem}")
        else:
            attributes[header[len(_HEADER_PREFIX):]] = value
    content_type = lowered.get(_CONTENT_TYPE, "").strip(" \t") or None
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    problems.extend(attribute_problems(attributes))
    data, more = _binary_data(body, content_type)
    problems.extend(more)
    if problems:
        return None, problems
    return Event.from_attributes(attributes, data), []


def _binary_data(body: bytes, content_type: str | None) -> tuple[Any, list[str]]:
    """The inverse of `_binary_body`; an empty body is no data whatever the type."""
    if not body:
        return None, []
    kind = data_kind(content_type)
    if kind is None:
        value = _sniff_json(body)
        return (body if value is _NOT_JSON else value), []
    if kind == "bytes":
        return body, []
    params = _parse_media_type(content_type or "")[1]
    charset = params.get("charset", _DEFAULT_CHARSET)
    try:
        text = body.decode(charset)
    except LookupError:
        return None, [f"unknown charset '{charset}' in Content-Type"]
    except UnicodeDecodeError as exc:
        return None, [f"body is not valid {charset}: {exc.reason} at byte {exc.start}"]
    if kind == "text":
        return text, []
    value, problem = _parse_json(text)
    return value, [problem] if problem else []


def _decode_header_value(raw: str) -> tuple[str, str | None]:
    """Undo quoted-string escaping (older senders), then exactly one percent-decoding."""
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value, problem = _unquote(value[1:-1])
        if problem:
            return "", problem
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "%":
            pair = value[i + 1:i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                return "", f"invalid percent-encoding {value[i:i + 3]!r} at position {i}"
            out.append(int(pair, 16))
            i += 3
        else:
            out += char.encode("utf-8")
            i += 1
    try:
        return out.decode("utf-8"), None  # strict: rejects overlong forms such as %C0%A0
    except UnicodeDecodeError as exc:
        return "", f"percent-encoded bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})"


def _unquote(inner: str) -> tuple[str, str | None]:
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                return "", "quoted value ends with a lone backslash"
            out.append(escaped)
        else:
            out.append(char)
    return "".join(out), None


# --- helpers --------------------------------------------------------------------------


def _lower(headers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Header names are case-insensitive; an event header spelled twice with different
    values is a problem (which one the sender meant is unknowable)."""
    lowered: dict[str, str] = {}
    problems: list[str] = []
    for name, value in headers.items():
        key = name.lower()
        if key in lowered and lowered[key] != value and (
            key == _CONTENT_TYPE or key.startswith(_HEADER_PREFIX)
        ):
            problems.append(f"header '{key}' is given twice with different values")
        lowered[key] = value
    return lowered, problems


def _mode_of(content_type: str | None) -> Mode | None:
    if content_type is None:
        return None
    media_type = _parse_media_type(content_type)[0]
    for prefix, mode in _MODE_PREFIXES:
        if media_type.startswith(prefix):
            return mode
    return None


def _parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, param = part.partition("=")
        if sep:
            params[key.strip().lower()] = param.strip().strip('"')
    return media_type.strip().lower(), params


def _charset(content_type: str | None) -> str:
    if content_type is None:
        return _DEFAULT_CHARSET
    return _parse_media_type(content_type)[1].get("charset", _DEFAULT_CHARSET)


def _parse_json(body: bytes | str) -> tuple[Any, str | None]:
    # The strict reader every edge shares (UTF-8 only, finite numbers, no lone surrogates,
    # bounded depth): see jsonformat.
    value, problem = jsonformat.read_json(body)
    return value, (f"body {problem}" if problem else None)


def _sniff_json(body: bytes) -> Any:
    value, problem = _parse_json(body)
    return _NOT_JSON if problem else value


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_bytes(value: Any) -> bytes:
    try:
        return _json_text(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationError("event cannot be encoded as JSON", [str(exc)]) from exc


_JSON_TYPE_NAMES: Final[dict[type, str]] = {dict: "an object", list: "an array", str: "a string"}


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "a scalar")


__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "binary_problems",
    "content_mode",
    "data_kind",
    "from_http",
    "percent_encode",
    "read_http",
    "to_batch",
    "to_binary",
    "to_http",
    "to_structured",
]
