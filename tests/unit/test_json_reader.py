"""The strict JSON reader every edge shares (handlers.core.wire.jsontext): what
json.loads accepts but no store or next hop can take is refused by name, and everything
else reads exactly as json.loads reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.app import APP
from handlers.core import ingress_binding
from handlers.core.eventbridge_binding import read_put_events_body
from handlers.core.wire.jsontext import MAX_JSON_DEPTH, JsonError, parse
from handlers.core.wire.jsontext import loads as parse_json

REFUSED: list[tuple[str, bytes | str, str]] = [
    ("overflow", b"1e999", "has a number out of range: 1e999"),
    ("negative overflow", b'{"a": [-1e999]}', "has a number out of range: -1e999"),
    ("NaN", b"NaN", "is not valid JSON: NaN is not valid JSON"),
    ("Infinity", b"[Infinity]", "is not valid JSON: Infinity is not valid JSON"),
    ("lone high surrogate", b'{"id": "\\ud800"}', "has a string at $.id with a lone surrogate"),
    ("lone low surrogate in a list", b'{"a": ["x", "\\udc00"]}',
     "has a string at $.a[1] with a lone surrogate"),
    ("lone surrogate in a key", b'{"a": {"\\ud83d": 1}}', "has a key in $.a with a lone"),
    ("reversed pair", b'"\\ude00\\ud83d"', "has a string at $ with a lone surrogate"),
    ("surrogate in a str input", '{"id": "\ud800"}', "lone surrogate"),
    ("100,000 deep", b"[" * 100_000 + b"]" * 100_000, f"nested deeper than {MAX_JSON_DEPTH}"),
    ("one level too deep", b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
     f"nested deeper than {MAX_JSON_DEPTH}"),
    ("invalid UTF-8", b'"caf\xe9"', "is not valid UTF-8: invalid continuation byte at byte 4"),
    ("CESU-8 surrogate", b'"\xed\xa0\x80"', "is not valid UTF-8"),
    ("UTF-16", '{"a": 1}'.encode("utf-16"), "is not valid UTF-8"),
    ("huge integer", b"1" * 5000, "has an integer of 5000 digits"),
    ("syntax", b'{"a": ', "is not valid JSON: Expecting value"),
]


@pytest.mark.parametrize(("name", "text", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_by_name(name: str, text: bytes | str, expected: str) -> None:
    with pytest.raises(JsonError) as caught:
        parse_json(text)
    assert expected in str(caught.value)
    assert parse(text) == (None, f"body {caught.value}")


def test_the_deepest_allowed_nesting_and_valid_pairs_are_read() -> None:
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(deep) == json.loads(deep)
    assert parse_json(b'"\\ud83d\\ude00 caf\xc3\xa9"') == "\U0001f600 café"
    assert parse_json(b"1.7976931348623157e308") == 1.7976931348623157e308
    assert parse_json(b"1e-999") == 0.0  # underflow rounds to a double; only overflow is lost


@pytest.mark.parametrize("escaped", [False, True])
def test_depth_is_the_deepest_branch_among_many_brackets(escaped: bool) -> None:
    """A batch opens far more brackets than the limit, side by side: only the deepest
    branch counts, whether or not the text also has strings to look at (escapes)."""
    def nest(containers: int) -> Any:
        value: Any = "\u00e9" if escaped else 1
        for level in range(containers):
            value = {"k": value} if level % 2 else [value]
        return value
    shallow = [{"a": [1, {"b": []}]} for _ in range(40)]
    # The batch's array is the first level.
    fits = json.dumps([*shallow, nest(MAX_JSON_DEPTH - 1), *shallow])
    assert parse_json(fits) == json.loads(fits)
    too_deep = json.dumps([*shallow, nest(MAX_JSON_DEPTH), *shallow])
    with pytest.raises(JsonError, match=f"is nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_json(too_deep)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children,
                                                                      max_size=4),
    max_leaves=30)


@given(_JSON, st.booleans())
def test_everything_else_reads_as_json_loads_reads_it(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert parse_json(text.encode("utf-8")) == json.loads(text)
    assert parse_json(text) == json.loads(text)


def test_the_ingress_functions_name_the_problem_not_just_not_an_event() -> None:
    """The AWS and GCP ingress functions share the reader through ingress_binding."""
    for body, words in ((b'{"Entries": [], "x": 1e999}', "body has a number out of range"),
                        (b"[" * 100_000, f"body is nested deeper than {MAX_JSON_DEPTH}")):
        _, problems = ingress_binding.read_request({"Content-Type": "application/json"}, body,
                                                   APP.catalog)
        assert len(problems) == 1 and problems[0].startswith(words), problems
    _, problems = read_put_events_body({"Entries": [{
        "Source": "orders", "DetailType": "Order Created",
        "Detail": '{"order_id": "\\ud800"}'}]}, APP.catalog)
    assert any("Entries[0].Detail has a string at $.order_id with a lone surrogate" in p
               for p in problems), problems
