"""The JSON Schema validator: every keyword it implements, each failing and passing, and
the refusal at load of any keyword it does not implement."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.catalog import CATALOG
from handlers.core.app import EventType
from handlers.core.schema import (
    ANNOTATIONS,
    VALIDATION_KEYWORDS,
    checker,
    schema_problems,
    validate,
)

# (keyword, schema, a value that passes, a value that fails, words of the failure)
KEYWORDS: list[tuple[str, dict[str, Any], Any, Any, str]] = [
    ("type", {"type": "object"}, {}, [], "data must be of type object, got list"),
    ("type", {"type": "integer"}, 3.0, 3.5, "must be of type integer"),
    ("type", {"type": "number"}, 1.5, True, "must be of type number, got bool"),
    ("type", {"type": ["string", "null"]}, None, 1, "must be of type ['string', 'null']"),
    ("enum", {"enum": ["a", 1]}, 1, True, "data must be one of 'a', 1, got True"),
    ("const", {"const": False}, False, 0, "data must be False, got 0"),
    ("minLength", {"minLength": 2}, "ab", "a", "at least 2 characters"),
    ("minLength", {"minLength": 1}, "é", "", "must not be empty"),
    ("maxLength", {"maxLength": 2}, "é😀", "abc", "at most 2 characters"),
    ("pattern", {"pattern": "^[A-Z]+-\\d+$"}, "SKU-1", "sku-1", "must match"),
    ("minimum", {"minimum": 0}, 0, -1, "data must be >= 0, got -1"),
    ("maximum", {"maximum": 200}, 200, 201, "data must be <= 200, got 201"),
    ("exclusiveMinimum", {"exclusiveMinimum": 0}, 1, 0, "data must be > 0, got 0"),
    ("exclusiveMaximum", {"exclusiveMaximum": 10}, 9.5, 10, "data must be < 10, got 10"),
    ("required", {"required": ["a"]}, {"a": 1}, {"b": 1}, "data.a is required"),
    ("properties", {"properties": {"a": {"type": "string"}}}, {"a": "x"}, {"a": 1},
     "data.a must be of type string"),
    ("additionalProperties", {"properties": {"a": {}}, "additionalProperties": False},
     {"a": 1}, {"a": 1, "b": 2}, "data.b is not allowed"),
    ("additionalProperties", {"additionalProperties": {"type": "integer"}}, {"n": 1},
     {"n": "1"}, "data.n must be of type integer"),
    ("items", {"items": {"type": "integer"}}, [1, 2], [1, "2"], "data[1] must be of type"),
    ("minItems", {"minItems": 1}, [0], [], "at least 1 item(s)"),
    ("maxItems", {"maxItems": 1}, [0], [0, 1], "at most 1 item(s)"),
    ("uniqueItems", {"uniqueItems": True}, [1, True, "1"], [{"a": 1}, {"a": 1}],
     "data[1] repeats an earlier item"),
]


@pytest.mark.parametrize(("keyword", "schema", "good", "bad", "words"), KEYWORDS,
                         ids=[f"{k}-{i}" for i, (k, *_) in enumerate(KEYWORDS)])
def test_each_keyword_passes_good_data_and_names_bad_data(
        keyword: str, schema: dict[str, Any], good: Any, bad: Any, words: str) -> None:
    assert schema_problems(schema) == []
    assert validate(schema, good) == []
    problems = validate(schema, bad)
    assert len(problems) == 1 and words in problems[0], problems


def test_every_implemented_keyword_has_a_case() -> None:
    assert {k for k, *_ in KEYWORDS} == set(VALIDATION_KEYWORDS)


def test_every_problem_is_reported_not_just_the_first() -> None:
    schema = {"type": "object", "required": ["a", "b"],
              "properties": {"a": {"type": "string"}, "c": {"maximum": 1}}}
    assert validate(schema, {"a": 1, "c": 2}) == [
        "data.b is required", "data.a must be of type string, got int",
        "data.c must be <= 1, got 2"]


@pytest.mark.parametrize("keyword", ["format", "oneOf", "anyOf", "allOf", "not", "$ref",
                                     "if", "patternProperties", "contains", "dependentRequired",
                                     "multipleOf", "minProperties"])
def test_a_keyword_it_would_skip_is_refused_at_catalog_load(keyword: str) -> None:
    schema = {"type": "object", "properties": {"when": {"type": "string", keyword: {}}}}
    assert schema_problems(schema) == [
        f"schema.properties.when: keyword '{keyword}' is not supported by this validator "
        f"(supported: {', '.join(VALIDATION_KEYWORDS)})"]
    with pytest.raises(ValueError, match=re.escape(
            f"event type com.example.x: schema.properties.when: keyword '{keyword}'")):
        EventType("com.example.x", "x", "X", schema)


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "strnig"}, "schema.type must be a type name"),
    ({"minimum": "0"}, "schema.minimum must be a number"),
    ({"minLength": -1}, "schema.minLength must be a non-negative integer"),
    ({"pattern": "("}, "schema.pattern must be a regular expression"),
    ({"required": "a"}, "schema.required must be an array of property names"),
    ({"enum": []}, "schema.enum must be a non-empty array"),
    ({"items": {"maximum": True}}, "schema.items.maximum must be a number"),
])
def test_a_malformed_keyword_value_is_refused_at_load(schema: dict[str, Any],
                                                      words: str) -> None:
    problems = schema_problems(schema)
    assert len(problems) == 1 and words in problems[0], problems


def test_annotations_are_allowed_and_do_not_validate() -> None:
    schema = {keyword: "anything" for keyword in ANNOTATIONS}
    assert schema_problems(schema) == []
    assert validate(schema, 42) == []


def test_the_catalog_uses_only_implemented_keywords() -> None:
    for event_type in CATALOG:
        assert schema_problems(event_type.schema) == [], event_type.type


# --- the compiled predicate the front doors run first: the same verdict as `validate` ---

_KEYS = st.sampled_from(["a", "b", "c"])
_LEAF_VALUES = (st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(
    [0.0, 1.0, 2.5, -1.5]) | st.sampled_from(["", "a", "ab", "A-1", "é😀x"]))
_VALUES = st.recursive(
    _LEAF_VALUES,
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=10)
_TYPE_NAMES = st.sampled_from(["object", "array", "string", "integer", "number", "boolean",
                               "null"])
_SCALAR_KEYWORDS = st.fixed_dictionaries({}, optional={
    "type": _TYPE_NAMES | st.lists(_TYPE_NAMES, min_size=1, max_size=3, unique=True),
    "enum": st.lists(_LEAF_VALUES, min_size=1, max_size=3),
    "const": _LEAF_VALUES,
    "minLength": st.integers(0, 3), "maxLength": st.integers(0, 3),
    "pattern": st.sampled_from(["^a", "\\d", "^[A-Z]+-\\d+$"]),
    "minimum": st.integers(-2, 2), "maximum": st.sampled_from([0, 1.5, 3]),
    "exclusiveMinimum": st.sampled_from([-1, 0, 0.5]), "exclusiveMaximum": st.integers(0, 3),
    "minItems": st.integers(0, 2), "maxItems": st.integers(0, 3),
    "uniqueItems": st.booleans(), "required": st.lists(_KEYS, max_size=2),
    "title": st.just("an annotation"),
})


def _with_children(children: st.SearchStrategy[dict[str, Any]]
                   ) -> st.SearchStrategy[dict[str, Any]]:
    nested = st.fixed_dictionaries({}, optional={
        "properties": st.dictionaries(_KEYS, children, max_size=3),
        "additionalProperties": st.booleans() | children,
        "items": children})
    return st.builds(lambda own, more: {**own, **more}, _SCALAR_KEYWORDS, nested)


_SCHEMAS = st.recursive(_SCALAR_KEYWORDS, _with_children, max_leaves=6)


@given(_SCHEMAS, _VALUES)
@settings(max_examples=600, deadline=None)
def test_the_compiled_check_agrees_with_validate(schema: dict[str, Any], value: Any) -> None:
    assert schema_problems(schema) == []
    assert checker(schema)(value) is (validate(schema, value) == [])


@pytest.mark.parametrize(("keyword", "schema", "good", "bad", "words"), KEYWORDS,
                         ids=[f"{k}-{i}" for i, (k, *_) in enumerate(KEYWORDS)])
def test_the_compiled_check_passes_good_data_and_stops_bad_data(
        keyword: str, schema: dict[str, Any], good: Any, bad: Any, words: str) -> None:
    check = checker(schema)
    assert check(good) is True
    assert check(bad) is False


@given(st.sampled_from(list(CATALOG)), _VALUES)
@settings(max_examples=300, deadline=None)
def test_each_catalog_type_words_problems_only_for_data_that_has_them(
        event_type: EventType, value: Any) -> None:
    assert event_type.data_problems(value) == validate(event_type.schema, value)


@given(st.sampled_from(list(CATALOG)), st.data())
@settings(max_examples=300, deadline=None)
def test_catalog_data_near_the_schema_gets_the_same_verdict(event_type: EventType,
                                                           data: st.DataObject) -> None:
    from adapters.contracts.samples import sample_data

    value = sample_data(event_type.schema)
    assert event_type.data_problems(value) == []
    for _ in range(data.draw(st.integers(0, 2))):  # change, add or drop one field
        key = data.draw(st.sampled_from([*value, "extra"]))
        if data.draw(st.booleans()):
            value.pop(key, None)
        else:
            value[key] = data.draw(_VALUES)
    assert event_type.data_problems(value) == validate(event_type.schema, value)
