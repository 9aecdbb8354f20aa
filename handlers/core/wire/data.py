"""The one data codec: an event's `data` <-> bytes, keyed by its `datacontenttype`.

Every place that turns data into bytes and back uses this table: HTTP binary mode (the
body), Pub/Sub binary mode (the message data), and the claim check (the stored object).
The JSON event format carries data as a JSON value or, for bytes, as `data_base64`
(`encode_base64` / `decode_base64` below).

    datacontenttype                      bytes on the wire        read back as
    JSON (application/json, text/json,   JSON text in charset     the JSON value
      any */*+json, AWS's x-amz-json)
    text (text/*, */*+xml, */*+yaml,     the str in charset       str
      a few application/* text types,
      any type with a charset parameter)
    any other                            the bytes as they are    bytes
    none                                 JSON text                the JSON value if the
                                                                  bytes parse, else bytes

The last row is how the CloudEvents SDK for Python reads a body without a content type:
its `from_http` tries `json.loads` on the body and keeps the raw body when that fails,
and its `to_binary` writes JSON without a Content-Type header. So a JSON event from the
SDK arrives as the JSON value it was.

An event whose data does not fit its content type (bytes labelled JSON, a dict labelled
XML, empty data that would read back as no data) cannot cross a bytes transport exactly:
`encode` names why instead of changing it in flight.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
from collections.abc import Mapping
from typing import Any, Final, Literal

from handlers.core.wire import jsontext

DataKind = Literal["json", "text", "bytes"]

DEFAULT_CHARSET: Final = "utf-8"

# Media types read by their full name first, then by RFC 6839 suffix, then by top-level type.
_MEDIA_TYPE_KINDS: Final[Mapping[str, DataKind]] = {
    "application/json": "json",
    "text/json": "json",
    # The AWS JSON protocols: what AWS SDKs send PutEvents requests as.
    "application/x-amz-json-1.0": "json",
    "application/x-amz-json-1.1": "json",
    "application/xml": "text",
    "application/yaml": "text",
    "application/x-yaml": "text",
    "application/javascript": "text",
    "application/x-www-form-urlencoded": "text",
    "application/graphql": "text",
}
_SUFFIX_KINDS: Final[Mapping[str, DataKind]] = {"+json": "json", "+xml": "text", "+yaml": "text"}
_TOP_LEVEL_KINDS: Final[Mapping[str, DataKind]] = {"text": "text"}
_EMPTY_DATA: Final = "empty data would be read back as no data (None)"
_NOT_JSON: Final = object()


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """("type/subtype" lower-cased, {parameter: value}) of a Content-Type value."""
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, param = part.partition("=")
        if sep:
            params[key.strip().lower()] = param.strip().strip('"')
    return media_type.strip().lower(), params


def media_type(value: str) -> str:
    """The "type/subtype" of a Content-Type value, lower-cased (`parse_media_type`'s first
    part, remembered per distinct value)."""
    return _media_type(value)


@functools.lru_cache(maxsize=256)
def _media_type(value: str) -> str:
    return parse_media_type(value)[0]


@functools.lru_cache(maxsize=256)
def charset(content_type: str | None) -> str:
    """The declared charset, UTF-8 when none is declared."""
    if content_type is None:
        return DEFAULT_CHARSET
    return parse_media_type(content_type)[1].get("charset", DEFAULT_CHARSET)


@functools.lru_cache(maxsize=256)
def data_kind(datacontenttype: str | None) -> DataKind | None:
    """What bytes of this content type are read back as (None: no content type)."""
    if datacontenttype is None:
        return None
    media_type, params = parse_media_type(datacontenttype)
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


def encode(data: Any, datacontenttype: str | None) -> tuple[bytes, list[str]]:
    """The bytes that carry `data`, and every reason `decode` would not give it back
    exactly (empty when it would). `data` None is no bytes at all."""
    if data is None:
        return b"", []
    kind = data_kind(datacontenttype)
    encoding = charset(datacontenttype)
    problems: list[str] = []
    if isinstance(data, (bytes, bytearray)):
        body = bytes(data)
        if not body:
            problems.append(_EMPTY_DATA)
        elif kind == "json":
            problems.append(f"bytes data with JSON datacontenttype '{datacontenttype}' "
                            "would be read back as the parsed JSON value")
        elif kind == "text":
            problems.append(f"bytes data with text datacontenttype '{datacontenttype}' "
                            "would be read back as str")
        elif kind is None and _sniff_json(body) is not _NOT_JSON:
            problems.append("bytes data that is itself valid JSON, without a "
                            "datacontenttype, would be read back as the JSON value; set "
                            "datacontenttype (e.g. application/octet-stream)")
        return body, problems
    if kind in (None, "json"):
        try:
            return jsontext.dumps(data).encode(encoding), problems
        except LookupError:
            return b"", [f"unknown charset '{encoding}'"]
        except (TypeError, ValueError, RecursionError) as exc:  # incl. UnicodeEncodeError
            return b"", [f"data cannot be encoded as JSON in {encoding}: {exc}"]
    if not isinstance(data, str):
        noun = "text" if kind == "text" else "binary"
        return b"", [f"{type(data).__name__} data cannot be sent as {noun} datacontenttype "
                     f"'{datacontenttype}' (use str or bytes data, or a JSON content type)"]
    if not data:
        problems.append(_EMPTY_DATA)
    if kind == "bytes":
        problems.append(f"str data with binary datacontenttype '{datacontenttype}' would "
                        "be read back as bytes")
    try:
        return data.encode(encoding), problems
    except LookupError:
        return b"", [f"unknown charset '{encoding}'"]
    except UnicodeEncodeError as exc:
        return b"", [*problems, f"data cannot be encoded in {encoding}: {exc.reason}"]


def decode(body: bytes, datacontenttype: str | None,
           parsed: jsontext.Once | None = None) -> tuple[Any, list[str]]:
    """The inverse of `encode`: (data, []) or (None, every problem). No bytes is no data,
    whatever the content type. `parsed`, when given, holds `body` itself: a JSON read
    of it (no content type, or JSON in UTF-8) reuses its parse instead of parsing again."""
    if not body:
        return None, []
    kind = data_kind(datacontenttype)
    if kind is None:
        value = _sniff_json(body, parsed)
        return (body if value is _NOT_JSON else value), []
    if kind == "bytes":
        return body, []
    encoding = charset(datacontenttype)
    try:
        text = body.decode(encoding)
    except LookupError:
        return None, [f"unknown charset '{encoding}' in the content type"]
    except UnicodeDecodeError as exc:
        return None, [f"data is not valid {encoding}: {exc.reason} at byte {exc.start}"]
    if kind == "text":
        return text, []
    # `text` decoded as UTF-8, which is what a parse of the bytes does first.
    value, problem = parsed.parse("data") if parsed is not None and _is_utf8(encoding) \
        else jsontext.parse(text, "data")
    return value, [problem] if problem else []


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_base64(raw: Any, what: str) -> tuple[bytes | None, str | None]:
    """(bytes, None), or (None, a problem naming `what`): strict RFC 4648 alphabet and
    padding, so a corrupted payload is refused rather than read as other bytes."""
    if not isinstance(raw, str):
        return None, f"{what} must be a base64 string, got {jsontext.json_type(raw)}"
    try:
        # What base64.b64decode(raw, validate=True) runs, without its Python wrapper (a
        # str that is not ASCII is a ValueError from either).
        return binascii.a2b_base64(raw, strict_mode=True), None
    except (binascii.Error, ValueError):
        return None, f"{what} is not valid base64"


def _sniff_json(body: bytes, parsed: jsontext.Once | None = None) -> Any:
    value, problem = parsed.parse() if parsed is not None else jsontext.parse(body)
    return _NOT_JSON if problem else value


@functools.lru_cache(maxsize=64)
def _is_utf8(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


__all__ = ["DEFAULT_CHARSET", "DataKind", "charset", "data_kind", "decode", "media_type",
           "decode_base64", "encode", "encode_base64", "parse_media_type"]
