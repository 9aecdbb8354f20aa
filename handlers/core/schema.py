"""A small JSON Schema (draft 2020-12 subset) validator that reports every problem.

Schemas in the catalog are plain JSON Schema documents, so they can be published as they
are; this validator implements the keywords they use (type, properties, required,
additionalProperties, items, minItems, minimum, exclusiveMinimum, minLength, maxLength,
enum, pattern) without a third-party dependency, because the Lambda and Cloud Functions
archives carry only `handlers/` and `adapters/`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


def validate(schema: Mapping[str, Any], value: Any, path: str = "data") -> list[str]:
    """Every way `value` violates `schema`, each naming the offending path."""
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        return [f"{path} must be of type {expected}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        problems.append(f"{path} must be one of {allowed}, got {value!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path} must not be empty" if schema["minLength"] == 1
                            else f"{path} must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path} must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path} must match {schema['pattern']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path} must be >= {schema['minimum']}, got {value}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            problems.append(f"{path} must be > {schema['exclusiveMinimum']}, got {value}")
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                problems.append(f"{path}.{name} is required")
        for name, item in value.items():
            if name in properties:
                problems.extend(validate(properties[name], item, f"{path}.{name}"))
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}.{name} is not allowed")
    if isinstance(value, (list, tuple)):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{path} must have at least {schema['minItems']} item(s)")
        if "items" in schema:
            for index, item in enumerate(value):
                problems.extend(validate(schema["items"], item, f"{path}[{index}]"))
    return problems
