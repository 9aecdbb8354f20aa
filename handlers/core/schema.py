"""JSON Schema (draft 2020-12) validation of event data, reporting every problem.

Schemas in the catalog are plain JSON Schema documents, so they are published as they are
(AsyncAPI, JSON Schema export). This validator implements a named set of keywords
(`VALIDATION_KEYWORDS`) and **refuses at catalog load** a schema that uses any other one
(`schema_problems`, called by `EventType`): a keyword it would skip (`format`, `oneOf`,
`$ref`...) can never pass data silently.

Why not a library:
- the front doors answer every problem in one round trip (a producer fixes all of them
  at once), and `fastjsonschema` - the one pure-Python, compiled-validator candidate -
  raises at the first error only: version 2.22.3, given `{"a": 1}` for a schema that
  requires a string `a` and an integer `b`, reports "data must contain ['b'] properties"
  and nothing about `a`. It would also add ~25 KB to each zip, and its import took
  ~6.6 ms on the development machine (bytecode cached; this module: ~1.3 ms) before it
  generates and exec()s code for each schema;
- `jsonschema` reports every error, but needs `referencing` and `rpds-py` (a compiled
  extension): a Lambda zip built on a developer's machine would carry a wheel for the
  wrong platform, and the Lambda runtime gives only the standard library and boto3;
- the catalog uses a dozen keywords; this module is about 200 lines of standard library,
  adds nothing to the function archives and nothing measurable to a cold start.

What is implemented follows the 2020-12 validation vocabulary: `type` (with `integer`
true for 1.0, and JSON booleans not numbers), `enum`/`const` compared as JSON values
(`true` is not `1`), `minLength`/`maxLength` in code points, `pattern` as an unanchored
ECMA-262-like regular expression (Python `re`; the catalog's patterns use the common
subset), numeric bounds, `required`, `properties`, `additionalProperties` (a boolean or a
schema), `items`, `minItems`/`maxItems`, `uniqueItems`. Annotations (`title`,
`description`, `examples`, `default`, `$comment`, `$schema`, `$id`, `deprecated`,
`readOnly`, `writeOnly`) are allowed and, as the spec says, do not affect validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_type(value: Any) -> bool:
    names = [value] if isinstance(value, str) else value
    return isinstance(names, list) and bool(names) and all(n in _TYPES for n in names)


def _is_pattern(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        _compiled(value)
    except re.error:
        return False
    return True


def _is_schema_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values())


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


#: Every validation keyword implemented here, with the check its value must pass.
VALIDATION_KEYWORDS: Final[Mapping[str, tuple[Callable[[Any], bool], str]]] = {
    "type": (_is_type, f"a type name or a list of them ({', '.join(_TYPES)})"),
    "enum": (lambda v: isinstance(v, list) and bool(v), "a non-empty array"),
    "const": (lambda v: True, "any JSON value"),
    "minLength": (_is_count, "a non-negative integer"),
    "maxLength": (_is_count, "a non-negative integer"),
    "pattern": (_is_pattern, "a regular expression"),
    "minimum": (_is_number, "a number"),
    "maximum": (_is_number, "a number"),
    "exclusiveMinimum": (_is_number, "a number"),
    "exclusiveMaximum": (_is_number, "a number"),
    "required": (_is_string_list, "an array of property names"),
    "properties": (_is_schema_map, "an object of schemas"),
    "additionalProperties": (lambda v: isinstance(v, (bool, Mapping)),
                             "a boolean or a schema"),
    "items": (lambda v: isinstance(v, Mapping), "a schema"),
    "minItems": (_is_count, "a non-negative integer"),
    "maxItems": (_is_count, "a non-negative integer"),
    "uniqueItems": (lambda v: isinstance(v, bool), "a boolean"),
}
#: Keywords that annotate and never validate (JSON Schema 2020-12, meta-data vocabulary).
ANNOTATIONS: Final = frozenset({"title", "description", "examples", "default", "$comment",
                                "$schema", "$id", "deprecated", "readOnly", "writeOnly"})


def schema_problems(schema: Any, path: str = "schema") -> list[str]:
    """Every keyword this validator would not enforce, or whose value is malformed."""
    if not isinstance(schema, Mapping):
        return [f"{path} must be an object"]
    problems: list[str] = []
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        rule = VALIDATION_KEYWORDS.get(keyword)
        if rule is None:
            problems.append(f"{path}: keyword '{keyword}' is not supported by this "
                            f"validator (supported: {', '.join(VALIDATION_KEYWORDS)})")
        elif not rule[0](value):
            problems.append(f"{path}.{keyword} must be {rule[1]}")
    if isinstance(schema.get("properties"), Mapping):
        for name, sub in schema["properties"].items():
            problems.extend(schema_problems(sub, f"{path}.properties.{name}"))
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), Mapping):
            problems.extend(schema_problems(schema[keyword], f"{path}.{keyword}"))
    return problems


def validate(schema: Mapping[str, Any], value: Any, path: str = "data") -> list[str]:
    """Every way `value` violates `schema`, each naming the offending path."""
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        return [f"{path} must be of type {expected}, got {type(value).__name__}"]
    problems: list[str] = []
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        allowed = ", ".join(repr(v) for v in schema["enum"])
        problems.append(f"{path} must be one of {allowed}, got {value!r}")
    if "const" in schema and not _same(value, schema["const"]):
        problems.append(f"{path} must be {schema['const']!r}, got {value!r}")
    if isinstance(value, str):
        problems.extend(_string_problems(schema, value, path))
    if _is_number(value):
        problems.extend(_number_problems(schema, value, path))
    if isinstance(value, dict):
        problems.extend(_object_problems(schema, value, path))
    if isinstance(value, (list, tuple)):
        problems.extend(_array_problems(schema, value, path))
    return problems


def _string_problems(schema: Mapping[str, Any], value: str, path: str) -> list[str]:
    problems = []
    if len(value) < schema.get("minLength", 0):
        problems.append(f"{path} must not be empty" if schema["minLength"] == 1
                        else f"{path} must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{path} must be at most {schema['maxLength']} characters")
    if "pattern" in schema and not _compiled(schema["pattern"]).search(value):
        problems.append(f"{path} must match {schema['pattern']!r}")
    return problems


_BOUNDS: Final[tuple[tuple[str, Callable[[float, float], bool], str], ...]] = (
    ("minimum", lambda v, b: v >= b, ">="),
    ("maximum", lambda v, b: v <= b, "<="),
    ("exclusiveMinimum", lambda v, b: v > b, ">"),
    ("exclusiveMaximum", lambda v, b: v < b, "<"),
)


def _number_problems(schema: Mapping[str, Any], value: float, path: str) -> list[str]:
    return [f"{path} must be {word} {schema[keyword]}, got {value}"
            for keyword, ok, word in _BOUNDS
            if keyword in schema and not ok(value, schema[keyword])]


def _object_problems(schema: Mapping[str, Any], value: Mapping[str, Any],
                     path: str) -> list[str]:
    problems = [f"{path}.{name} is required" for name in schema.get("required", ())
                if name not in value]
    properties: Mapping[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problems.extend(validate(properties[name], item, f"{path}.{name}"))
        elif additional is False:
            problems.append(f"{path}.{name} is not allowed")
        elif isinstance(additional, Mapping):
            problems.extend(validate(additional, item, f"{path}.{name}"))
    return problems


def _array_problems(schema: Mapping[str, Any], value: Sequence[Any], path: str) -> list[str]:
    problems = []
    if len(value) < schema.get("minItems", 0):
        problems.append(f"{path} must have at least {schema['minItems']} item(s)")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(f"{path} must have at most {schema['maxItems']} item(s)")
    if schema.get("uniqueItems") is True:
        for later in range(1, len(value)):
            if any(_same(value[later], value[earlier]) for earlier in range(later)):
                problems.append(f"{path}[{later}] repeats an earlier item (items must be "
                                "unique)")
    if "items" in schema:
        for index, item in enumerate(value):
            problems.extend(validate(schema["items"], item, f"{path}[{index}]"))
    return problems


Check = Callable[[Any], bool]


def checker(schema: Mapping[str, Any]) -> Check:
    """A predicate true exactly when `validate(schema, value)` finds no problem, built once
    per schema: the front doors run it on every event's data and ask `validate` for the
    wording only when it says no. It answers the same as `validate`, keyword by keyword,
    without building paths or messages on the way."""
    tests: list[Check] = []
    expected = schema.get("type")
    single = expected if isinstance(expected, str) else None
    if expected is not None:
        tests.append(_TYPE_TESTS[single] if single is not None
                     else lambda v: _type_ok(v, expected))
    if "enum" in schema:
        tests.append(_enum_test(schema["enum"]))
    if "const" in schema:
        const = schema["const"]
        tests.append(lambda v: _same(v, const))
    # Each kind's keywords apply to values of that kind only; when `type` names that one
    # kind, the type test has already made sure of it.
    for kind, build, guard in _KIND_TESTS:
        test = build(schema)
        if test is None:
            continue
        tests.append(test if single in kind else _guarded(guard, test))
    return _all_of(tests)


def _guarded(guard: Check, test: Check) -> Check:
    """`test` for the values `guard` says it applies to; any other value passes it."""
    return lambda v: not guard(v) or test(v)


def _all_of(tests: list[Check]) -> Check:
    if not tests:
        return lambda v: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda v: first(v) and second(v)
    chain = tuple(tests)

    def every(value: Any) -> bool:
        for test in chain:
            if not test(value):
                return False
        return True
    return every


def _enum_test(enum: list[Any]) -> Check:
    allowed = tuple(enum)
    if all(type(a) is str for a in allowed):
        # `_same` of two str is ==, and of a str and anything else False: a set lookup.
        names = frozenset(allowed)
        return lambda v: (v in names) if type(v) is str else any(_same(v, a) for a in allowed)
    return lambda v: any(_same(v, a) for a in allowed)


def _string_test(schema: Mapping[str, Any]) -> Check | None:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    pattern = _compiled(schema["pattern"]).search if "pattern" in schema else None
    if not low and high is None and pattern is None:
        return None

    def test(value: str) -> bool:
        size = len(value)
        return size >= low and (high is None or size <= high) and (
            pattern is None or pattern(value) is not None)
    return test


def _number_test(schema: Mapping[str, Any]) -> Check | None:
    bounds = tuple((ok, schema[keyword]) for keyword, ok, _ in _BOUNDS if keyword in schema)
    if not bounds:
        return None
    if len(bounds) == 1:
        ((ok, bound),) = bounds
        return lambda v: ok(v, bound)
    return lambda v: all(ok(v, bound) for ok, bound in bounds)


def _object_test(schema: Mapping[str, Any]) -> Check | None:
    required = tuple(schema.get("required", ()))
    properties = {name: checker(sub) for name, sub in schema.get("properties", {}).items()}
    additional = schema.get("additionalProperties", True)
    closed = additional is False
    extra = checker(additional) if isinstance(additional, Mapping) else None
    if not required and not properties and not closed and extra is None:
        return None

    def test(value: Mapping[str, Any]) -> bool:
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            check = properties.get(name)
            if check is not None:
                if not check(item):
                    return False
            elif closed or (extra is not None and not extra(item)):
                return False
        return True
    return test


def _array_test(schema: Mapping[str, Any]) -> Check | None:
    low = schema.get("minItems", 0)
    high = schema.get("maxItems")
    unique = schema.get("uniqueItems") is True
    each = checker(schema["items"]) if "items" in schema else None
    if not low and high is None and not unique and each is None:
        return None

    def test(value: Sequence[Any]) -> bool:
        size = len(value)
        if size < low or (high is not None and size > high):
            return False
        if unique and any(_same(value[later], value[earlier])
                          for later in range(1, size) for earlier in range(later)):
            return False
        if each is not None:
            for item in value:
                if not each(item):
                    return False
        return True
    return test


#: The type tests `validate` makes through `_type_ok`, one name at a time.
_TYPE_TESTS: Final[Mapping[str, Check]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: not isinstance(v, bool) and (
        isinstance(v, int) or (isinstance(v, float) and v.is_integer())),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
#: (the `type` names that make the keywords apply, their test, when `validate` applies them)
_KIND_TESTS: Final[tuple[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], Check | None],
                               Check], ...]] = (
    (("string",), _string_test, lambda v: isinstance(v, str)),
    (("number", "integer"), _number_test, _is_number),
    (("object",), _object_test, lambda v: isinstance(v, dict)),
    (("array",), _array_test, lambda v: isinstance(v, (list, tuple))),
)


def _type_ok(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    for name in names:
        if isinstance(value, bool) and name in ("integer", "number"):
            continue  # JSON booleans are not numbers, though Python says they are
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True
        if isinstance(value, _TYPES[name]):
            return True
    return False


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON values: Python's `True == 1` is not JSON's."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


__all__ = ["ANNOTATIONS", "VALIDATION_KEYWORDS", "checker", "schema_problems", "validate"]
