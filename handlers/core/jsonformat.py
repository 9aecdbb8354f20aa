"""CloudEvents JSON format (the body of structured mode): Event <-> dict, lossless.

`bytes` data travels as `data_base64`; any JSON value travels as `data`.

`parse_json` is the one JSON reader of every edge (HTTP binding in all modes, PutEvents
bodies and their `Detail` strings, the local server, the AWS and GCP ingress functions),
so each of them answers the same input with the same problem. It is stricter than
`json.loads` where `json.loads` accepts what cannot be stored or sent on:

- text must be UTF-8 (RFC 8259 section 8.1; `json.loads` also guesses UTF-16/32 and lets
  encoded surrogates through);
- `NaN`/`Infinity` are not JSON, and a number that overflows a double (`1e999`) is not
  turned into infinity (RFC 8259 section 6 lets a parser limit the range);
- a string (key or value) holding a lone surrogate (`"\ud800"`) is refused: no UTF-8
  encoder can write it, so it would fail later, at the store or the next hop;
- nesting is limited to `MAX_JSON_DEPTH` levels (RFC 8259 section 9 lets a parser limit
  it): Python's parser otherwise dies with RecursionError, and every recursive walk
  after it (schema checks, hashing, the stores' encoders) would too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

from handlers.core.errors import ValidationError
from handlers.core.events import Event, attribute_problems


def to_dict(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = dict(event.attributes())
    if isinstance(event.data, (bytes, bytearray)):
        out["data_base64"] = base64.b64encode(event.data).decode("ascii")
    elif event.data is not None:
        out["data"] = event.data
    return out


def from_dict(body: Any, where: str = "event") -> Event:
    """Parse one JSON-format event; every problem is reported at once."""
    if not isinstance(body, Mapping):
        raise ValidationError(f"invalid {where}", [f"{where} must be a JSON object"])
    problems = [f"{where}: {p}" for p in attribute_problems(_attrs(body))]
    data: Any = body.get("data")
    if "data_base64" in body:
        if "data" in body:
            problems.append(f"{where}: has both 'data' and 'data_base64'")
        raw = body["data_base64"]
        try:
            data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
            if data is None:
                problems.append(f"{where}: 'data_base64' must be a string")
        except (binascii.Error, ValueError):
            problems.append(f"{where}: 'data_base64' is not valid base64")
    if problems:
        raise ValidationError("invalid CloudEvent", problems)
    return Event.from_attributes(_attrs(body), data)


def _attrs(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("data", "data_base64")}


def dumps(event: Event) -> str:
    return json.dumps(to_dict(event), separators=(",", ":"), sort_keys=True, allow_nan=False)


def loads(text: str | bytes) -> Event:
    return from_dict(parse_json(text))


#: Deepest nesting of objects and arrays any edge accepts (the top-level value is level
#: 1). Far above what an event needs (a batch of events with nested data is 4-6 levels),
#: far below Python's recursion limit (about 1000), which json and every recursive walk
#: of the value would otherwise hit.
MAX_JSON_DEPTH: Final = 64
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_MAYBE_SURROGATE: Final = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


class JsonError(ValueError):
    """Why a text is not acceptable JSON. The message is a predicate ("is nested deeper
    than 64 levels") so callers can name the subject: `f"body {error}"`."""


def parse_json(text: str | bytes) -> Any:
    """Strict JSON (see the module docstring); `JsonError` names the problem."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"is not valid UTF-8: {exc.reason} at byte {exc.start}, so not "
                            "valid JSON") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                           parse_int=_int)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError says where: line, column and char
        raise JsonError(f"is not valid JSON: {exc}") from None
    _check_tree(value, text)
    return value


def read_json(text: str | bytes) -> tuple[Any, str | None]:
    """`parse_json` for callers that collect problems: (value, None) or (None, problem
    predicate)."""
    try:
        return parse_json(text), None
    except JsonError as exc:
        return None, str(exc)


def _no_constant(name: str) -> Any:
    # json accepts NaN/Infinity by default; they are not JSON and NaN != NaN breaks equality.
    raise JsonError(f"is not valid JSON: {name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise JsonError(f"has a number out of range: {literal[:40]} (over the largest "
                        "double, about 1.8e308)")
    return value


def _int(literal: str) -> int:
    try:
        return int(literal)
    except ValueError:  # over sys.int_info's string conversion limit
        raise JsonError(f"has an integer of {len(literal)} digits (at most "
                        f"{sys.get_int_max_str_digits()} are read)") from None


def _check_tree(value: Any, text: str) -> None:
    """Depth and lone surrogates, without recursion (the value may be deep)."""
    # A surrogate can only come from a str input or a \\uD800-\\uDFFF escape; most
    # bodies have neither, and then no string needs looking at.
    strings = _MAYBE_SURROGATE.search(text) is not None
    if isinstance(value, str):
        if strings:
            _check_string(value, None)
        return
    if not isinstance(value, (dict, list)):
        return
    # Each entry: (container, depth, trail), trail a (parent trail, key) chain that is
    # turned into a path only when there is a problem to name.
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        node, depth, trail = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JsonError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            if strings:
                for key in node:
                    _check_string(key, trail, key=True)
            items: Any = node.items()
        else:
            items = enumerate(node)
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1, (trail, key)))
            elif strings and isinstance(child, str):
                _check_string(child, (trail, key))


def _check_string(text: str, trail: Any, key: bool = False) -> None:
    match = _SURROGATE.search(text)
    if match is None:
        return
    where = f"a key in {_path(trail)}" if key else f"a string at {_path(trail)}"
    raise JsonError(f"has {where} with a lone surrogate ({match.group()!r}), which UTF-8 "
                    "cannot encode")


def _path(trail: Any) -> str:
    keys: list[Any] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(keys))


def fingerprint(event: Event) -> str:
    """Hash of what makes two deliveries of one (source, id) the same event."""
    payload = to_dict(event)
    material = {k: payload.get(k) for k in ("type", "subject", "data", "data_base64")}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
