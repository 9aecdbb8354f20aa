"""Compatibility of two exported catalogs: every change, and which ones break someone.

The rule. Producers and consumers upgrade independently, and the bus holds old events
(the EventBridge archive and Pub/Sub retention replay them, dead letters are redriven
days later). So a new catalog must keep two promises:

- **backward**: every event valid under the old schema is valid under the new one, so a
  producer still on the old version, a replay or a redrive is never refused by an upgraded
  consumer. Breaking: a new required field, a narrowed type, enum or range, a new pattern,
  additional fields forbidden.
- **kept for old consumers**: nothing an old consumer reads disappears or changes meaning.
  Breaking: a removed type or field, a retyped field, a field that is no longer required,
  a changed source or detail-type (the AWS rules route on both).

Additive changes pass: a new type, a new optional field. A *widened* enum or range (or a
dropped bound) passes too, but is listed apart: old consumers may meet values they have not
seen, so they must treat unknown enum values and larger numbers as data, not as a crash
(`catalog check --full` fails on widenings too: FULL compatibility as a schema registry
means it). To really break a contract, publish a new type (e.g. `...order.created.v2`)
beside the old one and retire the old one when no consumer reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Severity = Literal["breaking", "widening", "additive"]

#: Lower bounds: raising one (or adding one) refuses values that were valid.
_LOWER: Final = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
#: Upper bounds: lowering one (or adding one) refuses values that were valid.
_UPPER: Final = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_ORDER: Final = {"breaking": 0, "widening": 1, "additive": 2}


@dataclass(frozen=True, slots=True)
class Change:
    severity: Severity
    type: str  # the CloudEvents type it concerns
    where: str  # "data.items[].quantity", "source", "" for the type itself
    what: str

    def line(self) -> str:
        label = {"breaking": "BREAKING", "widening": "widened ", "additive": "added   "}
        place = f" {self.where}" if self.where else ""
        return f"{label[self.severity]} {self.type}{place}: {self.what}"


class ContractError(ValueError):
    """A document that is not an exported catalog (said in one line)."""


@dataclass(frozen=True, slots=True)
class _Type:
    source: str | None
    detail_type: str | None
    payload: Mapping[str, Any]


def _types(document: Mapping[str, Any], origin: str) -> dict[str, _Type]:
    """CloudEvents type -> what the contract fixes, from an exported AsyncAPI document."""
    if not isinstance(document, Mapping) or not str(document.get("asyncapi", "")).startswith("3."):
        raise ContractError(f"{origin} is not an AsyncAPI 3 document (no 'asyncapi: 3.x')")
    messages = document.get("components", {}).get("messages", {})
    found: dict[str, _Type] = {}
    for message in messages.values():
        headers = message.get("headers", {}).get("properties", {})
        type_ = headers.get("type", {}).get("const")
        if not type_:
            continue  # not a CloudEvent (the notifier's message)
        eventbridge = message.get("x-eventbridge", {})
        found[type_] = _Type(headers.get("source", {}).get("const"),
                             eventbridge.get("detail-type"), message.get("payload", {}))
    if not found:
        raise ContractError(f"{origin} has no CloudEvents messages (components.messages "
                            "with a headers.type const)")
    return found


def compare(old: Mapping[str, Any], new: Mapping[str, Any], old_origin: str = "the old catalog",
            new_origin: str = "the new catalog") -> list[Change]:
    """Every change from `old` to `new`, breaking ones first, then by type and place."""
    before, after = _types(old, old_origin), _types(new, new_origin)
    changes: list[Change] = []
    for type_, was in before.items():
        now = after.get(type_)
        if now is None:
            changes.append(Change("breaking", type_, "", "type removed (its consumers and "
                                                          "producers lose their contract)"))
            continue
        for attribute, old_value, new_value in (("source", was.source, now.source),
                                                ("detail-type", was.detail_type,
                                                 now.detail_type)):
            if old_value != new_value:
                changes.append(Change("breaking", type_, attribute,
                                      f"changed from {old_value!r} to {new_value!r} (routes "
                                      "and producers match the old one)"))
        changes.extend(schema_changes(type_, was.payload, now.payload))
    for type_ in after.keys() - before.keys():
        changes.append(Change("additive", type_, "", "new type"))
    return sorted(changes, key=lambda c: (_ORDER[c.severity], c.type, c.where, c.what))


def _type_set(schema: Mapping[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _shown_types(types: set[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))


def _accepts(types: set[str], kinds: set[str]) -> bool:
    """`types` admits every value of `kinds` (an integer is also a number)."""
    return all(k in types or (k == "integer" and "number" in types) for k in kinds)


def schema_changes(type_: str, old: Mapping[str, Any], new: Mapping[str, Any],
                   where: str = "data") -> list[Change]:
    """Changes between two schemas of one place in the data (recursing into fields/items)."""
    changes: list[Change] = []

    def add(severity: Severity, what: str, at: str = where) -> None:
        changes.append(Change(severity, type_, at, what))

    old_types, new_types = _type_set(old), _type_set(new)
    if old_types != new_types:
        shown = _shown_types
        if new_types is None or (old_types is not None and _accepts(new_types, old_types)):
            add("widening", f"type widened from {shown(old_types)} to {shown(new_types)}")
        else:
            add("breaking", f"retyped from {shown(old_types)} to {shown(new_types)}")
    for key in ("enum", "const"):
        old_values = _values(old, key)
        new_values = _values(new, key)
        if old_values == new_values:
            continue
        if new_values is None:
            add("widening", f"{key} dropped (any value now)")
        elif old_values is None:
            add("breaking", f"{key} added: only {_show(new_values)} allowed now")
        else:
            removed = [v for v in old_values if v not in new_values]
            extra = [v for v in new_values if v not in old_values]
            if removed:
                add("breaking", f"{key} narrowed: {_show(removed)} no longer allowed")
            if extra:
                add("widening", f"{key} widened: {_show(extra)} allowed now")
    for key in _LOWER + _UPPER:
        lower = key in _LOWER
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        if now is None:
            add("widening", f"{key} {was} dropped")
        elif was is None:
            add("breaking", f"{key} {now} added (narrowed range)")
        elif (now > was) == lower:
            add("breaking", f"{key} narrowed from {was} to {now}")
        else:
            add("widening", f"{key} widened from {was} to {now}")
    for key in ("pattern", "format"):
        was, now = old.get(key), new.get(key)
        if was != now:
            if now is None:
                add("widening", f"{key} {was!r} dropped")
            else:
                add("breaking", f"{key} changed from {was!r} to {now!r}")
    if old.get("additionalProperties", True) is not False \
            and new.get("additionalProperties", True) is False:
        add("breaking", "additional fields now forbidden (producers may send them)")
    elif old.get("additionalProperties", True) is False \
            and new.get("additionalProperties", True) is not False:
        add("widening", "additional fields now allowed")
    changes.extend(_field_changes(type_, old, new, where))
    old_items, new_items = old.get("items"), new.get("items")
    if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
        changes.extend(schema_changes(type_, old_items, new_items, f"{where}[]"))
    elif isinstance(new_items, Mapping) and new_items and old_items is None:
        changes.extend(schema_changes(type_, {}, new_items, f"{where}[]"))
    elif isinstance(old_items, Mapping) and old_items and new_items is None:
        changes.append(Change("widening", type_, f"{where}[]", "item schema dropped"))
    return changes


def _field_changes(type_: str, old: Mapping[str, Any], new: Mapping[str, Any],
                   where: str) -> list[Change]:
    changes: list[Change] = []
    old_fields: Mapping[str, Any] = old.get("properties", {})
    new_fields: Mapping[str, Any] = new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    for name, was in old_fields.items():
        at = f"{where}.{name}"
        if name not in new_fields:
            changes.append(Change("breaking", type_, at, "field removed (old consumers read "
                                                         "it)"))
            continue
        if name in old_required and name not in new_required:
            changes.append(Change("breaking", type_, at, "no longer required (old consumers "
                                                         "rely on it being there)"))
        elif name in new_required and name not in old_required:
            changes.append(Change("breaking", type_, at, "now required (old producers may "
                                                         "leave it out)"))
        changes.extend(schema_changes(type_, was, new_fields[name], at))
    for name in new_fields.keys() - old_fields.keys():
        at = f"{where}.{name}"
        if name in new_required:
            changes.append(Change("breaking", type_, at, "new required field (old producers "
                                                         "do not send it)"))
        else:
            changes.append(Change("additive", type_, at, "new optional field"))
    for name in (new_required - old_required) - new_fields.keys() - old_fields.keys():
        changes.append(Change("breaking", type_, f"{where}.{name}",
                              "now required (old producers may leave it out)"))
    return changes


def _values(schema: Mapping[str, Any], key: str) -> list[Any] | None:
    if key not in schema:
        return None
    return list(schema[key]) if key == "enum" else [schema[key]]


def _show(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def verdict(changes: list[Change], full: bool = False) -> bool:
    """True when the new catalog may ship: nothing breaking (nor widened, with `full`)."""
    failing = {"breaking", "widening"} if full else {"breaking"}
    return not any(c.severity in failing for c in changes)
