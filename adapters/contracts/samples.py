"""A valid sample event for every catalog type, generated from the type's JSON Schema.

Used by `switchyard events sample` and by the local console's send form. The generator
reads the same schema the consumers validate with, so a sample cannot drift from the
contract: a test validates every sample against its schema and posts it to the local
ingress. Deterministic: the same catalog gives byte-identical samples (fixed id and time),
so a sample is safe to commit or diff. Sending one sample twice is a duplicate (same
source and id: the consumers make it a no-op); give a new `id` to send it again.

Supported keywords: `const`, `default`, `examples` (used as they are), `enum` (the first
value), `type` (a list: its first non-null type), `properties`/`required` (every declared
property is filled, so the sample shows the whole shape), `items`/`minItems`, `minimum`,
`exclusiveMinimum`, `maximum`, `minLength`/`maxLength` and `format` (date-time, date,
email, uri, uuid). A schema with `pattern` and no example cannot be satisfied blindly: it
is refused with a clear error instead of yielding an invalid sample.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from handlers.core.app import Catalog, EventType
from handlers.core.events import Event
from handlers.core.http_binding import to_structured

#: Fixed, so samples are deterministic; obviously a sample, not a real moment.
SAMPLE_TIME: Final = "2026-01-01T00:00:00Z"
FORMATS: Final = ("cloudevent", "putevents")
_FORMAT_VALUES: Final[dict[str, str]] = {
    "date-time": SAMPLE_TIME,
    "date": SAMPLE_TIME[:10],
    "email": "someone@example.com",
    "uri": "https://example.com/sample",
    "uuid": "00000000-0000-4000-8000-000000000001",
}
#: A typical positive amount rather than the bare minimum (0 would be a free order).
_NUMBER_OFFSET: Final = 9.99


class SampleError(ValueError):
    """The schema uses something the generator cannot satisfy; the message names it."""


def sample_data(schema: Mapping[str, Any], name: str = "value", path: str = "data") -> Any:
    """A value that satisfies `schema`; `name` (the property) seeds readable strings."""
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        missing = [r for r in schema.get("required", ()) if r not in properties]
        if missing:
            raise SampleError(f"{path}: required {', '.join(missing)} has no schema")
        return {key: sample_data(sub, key, f"{path}.{key}") for key, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        item = schema.get("items", {"type": "string"})
        return [sample_data(item, _singular(name), f"{path}[{i}]") for i in range(count)]
    if kind == "string":
        return _string(schema, name, path)
    if kind in ("integer", "number"):
        return _number(schema, kind, path)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    raise SampleError(f"{path}: unsupported type {kind!r}")


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def _string(schema: Mapping[str, Any], name: str, path: str) -> str:
    if "format" in schema:
        if schema["format"] not in _FORMAT_VALUES:
            raise SampleError(f"{path}: unsupported format {schema['format']!r}")
        return _FORMAT_VALUES[schema["format"]]
    if "pattern" in schema:
        raise SampleError(f"{path}: has a pattern and no `examples`; add an example")
    # `item_id` -> "item-1": readable, and the same across types, so an order sample
    # names the item a restock sample stocks.
    value = f"{name.removesuffix('_id').replace('_', '-')}-1"
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    value = value.ljust(low, "x")
    if high is not None:
        value = value[: int(high)]
        if len(value) < low:
            raise SampleError(f"{path}: minLength {low} > maxLength {high}")
    return value


def _number(schema: Mapping[str, Any], kind: str, path: str) -> int | float:
    value: int | float
    if kind == "integer":
        if "exclusiveMinimum" in schema:
            value = int(schema["exclusiveMinimum"]) + 1
        else:
            value = int(schema.get("minimum", 1))
    else:
        base = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = round(base + _NUMBER_OFFSET, 2)
    if "maximum" in schema and value > schema["maximum"]:
        value = schema["maximum"]
        if validate_number(schema, value):
            raise SampleError(f"{path}: no {kind} between its minimum and maximum")
    return value


def validate_number(schema: Mapping[str, Any], value: float) -> bool:
    """True when `value` breaks the schema's lower bounds."""
    return (("minimum" in schema and value < schema["minimum"])
            or ("exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]))


def sample_event(spec: EventType) -> Event:
    """The sample CloudEvent of one catalog type (fixed id and time)."""
    data = sample_data(spec.schema)
    suffix = spec.type.rsplit(".", 2)[-2:]
    return Event.new(spec.source, spec.type, data, id=f"sample-{'-'.join(suffix)}",
                     time=SAMPLE_TIME)


def render(event: Event, catalog: Catalog, fmt: str = "cloudevent") -> Any:
    """The sample as JSON-ready data: a structured-mode CloudEvent, or a PutEvents body
    with one entry (both accepted by `POST /events` and `switchyard send --file -`)."""
    if fmt == "cloudevent":
        return json.loads(to_structured(event)[1])
    if fmt == "putevents":
        from handlers.core.eventbridge_binding import to_put_events_entry

        return {"Entries": [to_put_events_entry(event, catalog)]}
    raise SampleError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")


def sample(catalog: Catalog, type_: str, fmt: str = "cloudevent") -> Any:
    """The sample of `type_` in `fmt`; an unknown type is a SampleError naming the known
    ones (a CloudEvents type, or an EventBridge DetailType such as "Order Created")."""
    spec = catalog.get(type_) or next((t for t in catalog if t.detail_type == type_), None)
    if spec is None:
        known = ", ".join(t.type for t in catalog)
        raise SampleError(f"unknown event type {type_!r} (known: {known})")
    return render(sample_event(spec), catalog, fmt)
