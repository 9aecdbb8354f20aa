"""JSON in one call, without the standard library's set-up on every call.

`json.JSONEncoder.encode` builds a new C encoder (and a Python closure that the C encoder
never uses) on each call, and `json.loads` goes through three Python layers before its C
scanner. For the documents, rows and log lines written once per delivery that set-up was
a measurable share of their cost. `encoder(e)` gives a function returning exactly
`e.encode(o)`, by the same C encoder made with the same settings; `loads(s)` returns
exactly `json.loads(s)` for a `str`, taking the C scanner directly when the text is one
JSON value with nothing around it (what these modules write) and `json.loads` otherwise,
so whitespace, a BOM and every error are handled (and worded) as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any, Final

#: The C scanner of a decoder with `json.loads`'s settings.
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = \
    json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def encoder(template: json.JSONEncoder) -> Callable[[Any], str]:
    """`template.encode`, without its per-call set-up (the same text, the same errors).
    An indented encoder, one whose class changes `encode` or `iterencode`, or a Python
    without the C module keeps `encode`."""
    make = getattr(_encoder, "c_make_encoder", None)  # the C module's, when there is one
    if make is None or template.indent is not None or \
            type(template).iterencode is not json.JSONEncoder.iterencode or \
            type(template).encode is not json.JSONEncoder.encode:
        return template.encode
    strings = _encoder.encode_basestring_ascii if template.ensure_ascii \
        else _encoder.encode_basestring
    settings = (template.default, strings, None, template.key_separator,
                template.item_separator, template.sort_keys, template.skipkeys,
                template.allow_nan)
    circular = template.check_circular

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return strings(value)
        return "".join(make({} if circular else None, *settings)(value, 0))

    return encode


def loads(text: str) -> Any:
    """`json.loads(text)` for a `str`."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # not a JSON value at 0: its usual error (or whitespace)
    if end != len(text):
        return json.loads(text)  # something after it: trailing whitespace, or an error
    return value


#: `json.dumps(value)` with the default settings.
dumps: Final = encoder(json.JSONEncoder())

__all__ = ["dumps", "encoder", "loads"]
