"""`handlers.core.fastjson` gives exactly what the standard library's calls give."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.core import fastjson

_ENCODERS = [
    json.JSONEncoder(),
    json.JSONEncoder(separators=(",", ":")),
    json.JSONEncoder(default=str, ensure_ascii=False),
    json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False),
    json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str),
    json.JSONEncoder(check_circular=False),
]
_VALUES: list[Any] = [
    "é\n\"x", 1, 1.5, -0.0, None, True, [], {}, (1, 2), {"b": [1, 2.25, "ü"], "a": {"x": None}},
    {3: "an int key", "z": 1}, float("nan"), {"c": float("inf")}, {"k": b"bytes"},
    {1.5: "float key", None: "null key", True: "bool key"}, "\ud800",
]


def _outcome(encode: Any, value: Any) -> tuple[Any, ...]:
    try:
        return ("text", encode(value))
    except Exception as error:  # noqa: BLE001 - the error is the outcome compared
        return ("error", type(error), str(error))


@pytest.mark.parametrize("template", _ENCODERS, ids=lambda e: repr(vars(e)))
def test_an_encoder_gives_the_text_and_errors_of_encode(template: json.JSONEncoder) -> None:
    encode = fastjson.encoder(template)
    for value in _VALUES:
        assert _outcome(encode, value) == _outcome(template.encode, value), value


def test_a_cycle_is_refused_as_encode_refuses_it() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    template = json.JSONEncoder()
    assert _outcome(fastjson.encoder(template), cycle) == _outcome(template.encode, cycle)
    # The check starts afresh each call: a failed call leaves nothing behind.
    assert fastjson.encoder(template)([[1], [1]]) == "[[1], [1]]"


def test_encoders_it_cannot_speed_up_keep_their_encode() -> None:
    indented = json.JSONEncoder(indent=2)
    assert fastjson.encoder(indented) == indented.encode

    class Custom(json.JSONEncoder):
        def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
            return iter(["custom"])

    custom = Custom()
    assert fastjson.encoder(custom) == custom.encode


def test_dumps_is_json_dumps() -> None:
    for value in _VALUES:
        assert _outcome(fastjson.dumps, value) == _outcome(json.dumps, value)


@pytest.mark.parametrize("text", [
    '{"a":1}', ' {"a":1}', '{"a":1} ', '{"a":1}\n', "\ufeff{}", '{"a":1}x', "", "[1,2",
    '"s"', "1", "NaN", "-Infinity", "nan", "[1] [2]", '{"a": [1, {"b": null}]}', "\t\n"])
def test_loads_is_json_loads(text: str) -> None:
    assert _outcome(fastjson.loads, text) == _outcome(json.loads, text)
