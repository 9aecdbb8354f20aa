"""The one JSON dialect on the wire: strict parsing, compact writing, one type wording.

Python's `json` accepts `NaN`, `Infinity` and `-Infinity` by default and writes them too;
they are not JSON (RFC 8259 section 6), other parsers (EventBridge, Pub/Sub clients, the
CloudEvents SDKs of other languages) refuse them, and `NaN != NaN` would break the
duplicate check that compares payloads. So every parse here refuses them and every write
refuses to produce them.

Parsing goes through `loads` (raises) or `parse` (returns the problem as text) only, so
limits on what a parse accepts (depth, number range) are added in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from handlers.core.events import Event

#: One decoded event and where it was in the message ("event", "event[3]", "Entries[0]").
Positioned = tuple[str, Event]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes | bytearray) -> Any:
    """Parse strict JSON; raises `ValueError` (incl. `UnicodeDecodeError`) or
    `RecursionError` like `json.loads`, and also for NaN/Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


def parse(text: str | bytes | bytearray, what: str = "body") -> tuple[Any, str | None]:
    """(value, None), or (None, a one-line problem naming `what` and where it broke)."""
    try:
        return loads(text), None
    except UnicodeDecodeError as exc:
        return None, f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}"
    except ValueError as exc:  # JSONDecodeError says where: line, column and char
        return None, f"{what} is not valid JSON: {exc}"
    except RecursionError:
        return None, f"{what} is not valid JSON: nested too deeply"


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


__all__ = ["Positioned", "dumps", "json_type", "loads", "parse"]
