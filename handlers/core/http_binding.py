"""CloudEvents HTTP protocol binding 1.0: Event <-> (headers, body) in every content mode.

Structured and batched mode put the whole event in a JSON body (`jsonformat`), so they
carry any event exactly. Binary mode carries the attributes as percent-encoded `ce-*`
headers and the data as the raw body (`wire.binary`), so only the content type can say
which Python type `data` had on the way in: the data codec's table (`wire.data`) says
how each content type reads back, and a missing Content-Type is read the way the
CloudEvents SDK reads it (the JSON value if the body parses, else the bytes).

An event whose data does not fit its content type cannot cross binary mode exactly.
`to_binary` refuses it, naming why, rather than change it in flight; `to_http` picks binary
mode when it is exact and structured mode otherwise, so callers that do not care about the
mode never lose anything.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from handlers.core import jsonformat
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.wire import binary, jsontext
from handlers.core.wire.data import data_kind, media_type
from handlers.core.wire.jsontext import Positioned

Mode = Literal["binary", "structured", "batch"]

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json; charset=utf-8"

_HEADER_PREFIX: Final = binary.PREFIX
_SPECVERSION_HEADER: Final = _HEADER_PREFIX + "specversion"
_CONTENT_TYPE: Final = binary.CONTENT_TYPE
_STRUCTURED_MEDIA_TYPE: Final = "application/cloudevents+json"
_BATCH_MEDIA_TYPE: Final = "application/cloudevents-batch+json"
# The spec tells modes apart by prefix, so "application/cloudevents+avro" is structured
# mode in a format we cannot read (a problem), not a binary event.
_MODE_PREFIXES: Final[tuple[tuple[str, Mode], ...]] = (
    ("application/cloudevents-batch", "batch"),
    ("application/cloudevents", "structured"),
)

# Characters sent as themselves in a header value (spec 3.1.3.2): printable ASCII except
# space, double quote and percent. Everything else goes out as %XX of its UTF-8 bytes.
_HEADER_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}
_HEX: Final = frozenset("0123456789abcdefABCDEF")


# --- encoding -------------------------------------------------------------------------


def to_binary(event: Event) -> tuple[dict[str, str], bytes]:
    """Binary mode: `ce-*` headers, Content-Type from datacontenttype, data as the body.

    Raises `ValidationError` when the event cannot come back exactly (see the module
    docstring); use `to_http` to fall back to structured mode instead.
    """
    fields, body, problems = _binary(event)
    if problems:
        raise ValidationError(f"event '{event.id}' cannot be sent exactly in binary mode",
                              problems)
    return {name: value if name == _CONTENT_TYPE else percent_encode(value)
            for name, value in fields.items()}, body


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
    return _binary(event)[2]


def percent_encode(value: str) -> str:
    """Header value encoding of spec 3.1.3.2 (upper-case hex, UTF-8 bytes)."""
    return "".join(
        c if c in _HEADER_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
        for c in value
    )


def _binary(event: Event) -> tuple[dict[str, str], bytes, list[str]]:
    """The wire's binary mode, plus what only HTTP adds: the Content-Type header rules."""
    fields, body, problems = binary.write(event)
    return fields, body, _content_type_problems(event.datacontenttype) + problems


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
    # What `_lower` would give (the last spelling of a header wins), without building it.
    content_type: str | None = None
    specversion = False
    for name, value in headers.items():
        key = name.lower()
        if key == _CONTENT_TYPE:
            content_type = value
        elif key == _SPECVERSION_HEADER:
            specversion = True
    mode = _mode_of(content_type)
    if mode is None and specversion:
        return "binary"
    return mode


def from_http(headers: Mapping[str, str], body: bytes,
              parsed: jsontext.Once | None = None) -> list[Event]:
    """Decode any content mode; raises `ValidationError` naming every problem.

    `parsed`, when given, holds `body` itself: a caller that already parsed the body (or
    will) shares that one parse, whatever the mode reads as JSON.
    """
    events, problems = read_http(headers, body, parsed)
    if problems:
        raise ValidationError("invalid CloudEvents HTTP message", problems)
    return [event for _, event in events]


def read_http(headers: Mapping[str, str], body: bytes, parsed: jsontext.Once | None = None
              ) -> tuple[list[Positioned], list[str]]:
    """The events that decoded (with their position) and every problem with the rest.

    For receivers that want to check more (catalog, schemas) before reporting, so the
    sender learns about every problem in one round trip. `parsed`: as for `from_http`.
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
        event, more = _read_binary(lowered, body, parsed)
        return ([("event", event)] if event else []), problems + more
    format_ = media_type(content_type or "")
    expected = _STRUCTURED_MEDIA_TYPE if mode == "structured" else _BATCH_MEDIA_TYPE
    if format_ != expected:
        return [], [*problems, f"unsupported event format '{format_}' (only {expected} "
                    f"is understood)"]
    value, problem = parsed.parse() if parsed is not None else jsontext.parse(body)
    if problem:
        return [], [*problems, problem]
    if mode == "structured":
        return _read_items([("event", value)], problems)
    if not isinstance(value, list):
        return [], [*problems, f"a batch must be a JSON array, got {jsontext.json_type(value)}"]
    if not value:
        return [], [*problems, "batch is empty (send at least one event)"]
    return _read_items([(f"event[{i}]", item) for i, item in enumerate(value)], problems)


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


def _read_binary(lowered: Mapping[str, str], body: bytes,
                 parsed: jsontext.Once | None) -> tuple[Event | None, list[str]]:
    """Undo the header value encoding, then read binary mode like every transport does."""
    problems: list[str] = []
    fields: dict[str, str] = {}
    for header, raw in lowered.items():
        if header == _CONTENT_TYPE:
            fields[header] = raw
        elif header.startswith(binary.PREFIX):
            value, problem = _decode_header_value(raw)
            if problem:
                problems.append(f"header '{header}': {problem}")
            else:
                fields[header] = value
    event, more = binary.read(fields, body, "header", parsed)
    problems.extend(more)
    return (None if problems else event), problems


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
    return None if content_type is None else _mode_of_type(content_type)


@functools.lru_cache(maxsize=256)
def _mode_of_type(content_type: str) -> Mode | None:
    """`_mode_of` a Content-Type value, remembered per distinct value (a handful in use)."""
    kind = media_type(content_type)
    for prefix, mode in _MODE_PREFIXES:
        if kind.startswith(prefix):
            return mode
    return None


def _json_bytes(value: Any) -> bytes:
    try:
        return jsontext.dumps(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationError("event cannot be encoded as JSON", [str(exc)]) from exc


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
