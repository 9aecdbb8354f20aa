"""The one JSON dialect on the wire: strict parsing, compact writing, one type wording.

Every edge (the HTTP binding in all modes, PutEvents bodies and their `Detail` strings,
Pub/Sub messages, the local server, the AWS and GCP ingress functions) parses through
`loads` (raises `JsonError`) or `parse` (returns the problem as text), so each answers
the same input with the same problem. It is stricter than `json.loads` where
`json.loads` accepts what cannot be stored or sent on:

- text must be UTF-8 (RFC 8259 section 8.1; `json.loads` also guesses UTF-16/32 and lets
  encoded surrogates through);
- `NaN`/`Infinity` are not JSON (RFC 8259 section 6): other parsers (EventBridge, Pub/Sub
  clients, the CloudEvents SDKs of other languages) refuse them, and `NaN != NaN` would
  break the duplicate check that compares payloads; a number that overflows a double
  (`1e999`) is not turned into infinity (section 6 lets a parser limit the range);
- a string (key or value) holding a lone surrogate (`"\ud800"`) is refused: no UTF-8
  encoder can write it, so it would fail later, at the store or the next hop;
- nesting is limited to `MAX_JSON_DEPTH` levels (section 9 lets a parser limit it):
  Python's parser otherwise dies with RecursionError, and every recursive walk after it
  (schema checks, hashing, the stores' encoders) would too.

Every write refuses to produce NaN/Infinity too.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from handlers.core.events import Event

#: One decoded event and where it was in the message ("event", "event[3]", "Entries[0]").
Positioned = tuple[str, Event]


#: Deepest nesting of objects and arrays any edge accepts (the top-level value is level
#: 1). Far above what an event needs (a batch of events with nested data is 4-6 levels),
#: far below Python's recursion limit (about 1000), which json and every recursive walk
#: of the value would otherwise hit.
MAX_JSON_DEPTH: Final = 64
#: Patterns, compiled on first use (by `re`'s cache): only texts with non-ASCII characters
#: or \u escapes are searched, and the surrogate range takes a while to compile.
_SURROGATE: Final = "[\ud800-\udfff]"
_MAYBE_SURROGATE: Final = r"[\ud800-\udfff]|\\u[dD][89a-fA-F]"


class JsonError(ValueError):
    """Why a text is not acceptable JSON. The message is a predicate ("is nested deeper
    than 64 levels") so callers can name the subject: `f"body {error}"`."""


def loads(text: str | bytes | bytearray) -> Any:
    """Strict JSON (see the module docstring); `JsonError` names the problem."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"is not valid UTF-8: {exc.reason} at byte {exc.start}, so not "
                            "valid JSON") from None
    try:
        # The usual text is one value from its first character to its last: the C scanner
        # `_DECODER.decode` runs, called directly. Anything else (leading or trailing
        # whitespace, a BOM, extra data, a syntax error) takes the full path below, which
        # gives the answer and the wording `json.loads` would.
        value, end = _SCAN(text, 0)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (StopIteration, ValueError):
        end = -1
    if end != len(text):
        value = _decode(text)
    _check_tree(value, text)
    return value


def _decode(text: str) -> Any:
    try:
        if text.startswith("\ufeff"):  # what json.loads says of a str with a BOM
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError says where: line, column and char
        raise JsonError(f"is not valid JSON: {exc}") from None


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


#: json.loads with these hooks would build a decoder per call.
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float,
                                   parse_int=_int)
#: The scanner `loads` tries first: (value, end index) of the JSON value at an index
#: (typeshed leaves it out). Its integers are the C scanner's own `int`, without a call
#: of `_int` for each: the same value, and an integer over the digit limit raises a plain
#: ValueError there, so that text takes `_DECODER`'s full path and gets `_int`'s answer.
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float).scan_once  # type: ignore[attr-defined]


def _check_tree(value: Any, text: str) -> None:
    """Depth and lone surrogates, without recursion (the value may be deep)."""
    # A surrogate can only come from a str input (a raw one is not ASCII) or a
    # \\uD800-\\uDFFF escape; most bodies have neither, and then no string needs looking at.
    # ("\\" first: a one-character search is a memchr, most texts have no backslash.)
    strings = (not text.isascii() or ("\\" in text and "\\u" in text)) and \
        re.search(_MAYBE_SURROGATE, text) is not None
    if not strings and text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return  # each level opens a bracket: this text cannot nest deeper than the limit
    if isinstance(value, str):
        if strings:
            _check_string(value, None)
        return
    if not isinstance(value, (dict, list)):
        return
    if not strings:
        _check_depth(value)
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


def _check_depth(value: dict[str, Any] | list[Any]) -> None:
    """Depth alone (no string to look at): level by level, containers only."""
    level: list[Any] = [value]
    depth = 1
    while level:
        level = [child for node in level
                 for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
        depth += 1
        if level and depth > MAX_JSON_DEPTH:
            raise JsonError(f"is nested deeper than {MAX_JSON_DEPTH} levels")


def _check_string(text: str, trail: Any, key: bool = False) -> None:
    match = re.search(_SURROGATE, text)
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


def parse(text: str | bytes | bytearray, what: str = "body") -> tuple[Any, str | None]:
    """(value, None), or (None, a one-line problem naming `what` and where it broke)."""
    try:
        return loads(text), None
    except JsonError as exc:
        return None, f"{what} {exc}"


class Once:
    """One text and its strict parse, done at most once, on first use.

    For an edge where several readers look at the same bytes (a push body is sniffed for
    what it carries, decoded, and taken apart again for a dead letter when it fails):
    each asks `parse` with its own subject for the problem, and the text is parsed once.
    """

    __slots__ = ("_error", "_parsed", "_value", "text")

    def __init__(self, text: str | bytes | bytearray) -> None:
        self.text = text
        self._parsed = False
        self._value: Any = None
        self._error: JsonError | None = None

    def parse(self, what: str = "body") -> tuple[Any, str | None]:
        """What `parse(self.text, what)` answers, without parsing the text again."""
        if not self._parsed:
            try:
                self._value = loads(self.text)
            except JsonError as exc:
                self._error = exc
            self._parsed = True
        if self._error is not None:
            return None, f"{what} {self._error}"
        return self._value, None


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text, non-ASCII kept as is; raises `TypeError`/`ValueError` for what
    JSON cannot carry (including NaN/Infinity)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      sort_keys=sort_keys)


_TYPE_NAMES: Final[tuple[tuple[type | tuple[type, ...], str], ...]] = (
    (bool, "a boolean"),  # before int: bool is an int subclass
    (Mapping, "an object"),
    ((list, tuple), "an array"),
    (str, "a string"),
    ((int, float), "a number"),
    (type(None), "null"),
)


def json_type(value: Any) -> str:
    """How error messages name a JSON value's type ("an object", "a number", "null")."""
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


__all__ = ["MAX_JSON_DEPTH", "JsonError", "Once", "Positioned", "dumps", "json_type", "loads",
           "parse"]
