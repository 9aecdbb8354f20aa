"""EventBridge wire shapes <-> Event: PutEvents entries and delivered events, as plain data.

`Source` is the CloudEvents source and `DetailType` the catalog's human spelling of the
type ("Order Created"), so rules and consoles read naturally. `Detail` carries the seeds'
envelope, `{"metadata": {...}, "data": ...}`, with every remaining CloudEvents attribute
in `metadata`, so an event crosses the bus exactly. Three shapes of Detail are understood,
because producers written against the seeds keep working unchanged:

* our envelope: `metadata` holds CloudEvents attributes (it has `specversion`) - taken as is;
* the seeds' envelope: `metadata` in the seeds' vocabulary (`trace_id`, `created_at`,
  `version`, `event_id`) - translated through `_SEED_METADATA`;
* anything else: the Detail object is the data itself (the seeds' plain payloads).

No boto3 here: adapters and the local server pass these dicts to boto3 or read them off
SQS themselves.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from handlers.core import jsonformat
from handlers.core.app import Catalog
from handlers.core.errors import ValidationError
from handlers.core.events import CORE_ATTRIBUTES, SPECVERSION, Event, attribute_problems
from handlers.core.wire import data as codec
from handlers.core.wire import jsontext
from handlers.core.wire.jsontext import Positioned, json_type

#: Entries a PutEvents-shaped request may carry at an ingress (the local server and the
#: HTTP front doors). AWS's own PutEvents takes fewer per call: that limit, and the size
#: limits, live with the AWS adapter (`adapters/aws/eventbridge_limits.py`).
MAX_ENTRIES: Final = 500

#: What PutEvents accepts in an entry; anything else is a caller's typo, so it is reported.
ENTRY_FIELDS: Final = frozenset(
    {"Source", "DetailType", "Detail", "Time", "EventBusName", "Resources", "TraceHeader"}
)
_BODY_FIELDS: Final = frozenset({"Entries", "EndpointId"})
_ENVELOPE_KEYS: Final = frozenset({"metadata", "data", "data_base64"})

# The seeds' metadata vocabulary -> CloudEvents attribute. `trace_id` is special-cased:
# it becomes `traceparent` only when it is one, so tracing tools never see a bad value.
_SEED_METADATA: Final[Mapping[str, str]] = {
    "id": "id",
    "event_id": "id",
    "created_at": "time",
    "version": "dataversion",
    "trace_id": "traceparent",
}
_TRACE_ID_FALLBACK: Final = "traceid"
_TRACEPARENT: Final = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
)
# Word separators dropped when a seed metadata key becomes an attribute name; any other
# character outside [a-z0-9] makes the key a problem rather than silently a different name.
_NAME_SEPARATORS: Final = re.compile(r"[-_.\s]")
_EXTENSION_NAME: Final = re.compile(r"^[a-z0-9]{1,20}$")


# --- Event -> EventBridge -------------------------------------------------------------


def to_put_events_entry(
    event: Event, catalog: Catalog, bus_name: str | None = None
) -> dict[str, Any]:
    """A PutEvents entry that `from_put_events_entry` turns back into exactly `event`."""
    known = catalog.get(event.type)
    payload = jsonformat.to_dict(event)
    envelope: dict[str, Any] = {
        "metadata": {k: v for k, v in payload.items() if k not in ("source", "data",
                                                                  "data_base64")}
    }
    for key in ("data", "data_base64"):
        if key in payload:
            envelope[key] = payload[key]
    try:
        detail = jsontext.dumps(envelope)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"event '{event.id}' cannot be encoded as JSON", [str(exc)]) \
            from exc
    entry: dict[str, Any] = {
        "Source": event.source,
        "DetailType": known.detail_type if known else event.type,
        "Detail": detail,
    }
    if event.time is not None:
        entry["Time"] = event.time
    if bus_name:
        entry["EventBusName"] = bus_name
    return entry


# --- EventBridge -> Event -------------------------------------------------------------


def from_put_events_entry(
    entry: Mapping[str, Any],
    catalog: Catalog,
    *,
    default_id: str | None = None,
    where: str = "Entries[0]",
) -> Event:
    """One PutEvents entry as PutEvents takes it (Detail is a JSON string).

    The id is the envelope's, else `default_id` (say, the EventId the bus assigned), else
    a fresh uuid4. Raises `ValidationError` naming every problem, each prefixed by `where`.
    """
    event, problems = _read_entry(entry, catalog, default_id, where)
    if event is None:
        raise ValidationError("invalid PutEvents entry", problems)
    return event


def from_eventbridge_event(evt: Mapping[str, Any], catalog: Catalog) -> Event:
    """The JSON EventBridge delivers to targets (an SQS body, a Lambda event).

    Here `detail` is an object. Our own events keep their id and time from the envelope;
    others take EventBridge's `id` and `time`.
    """
    where = "event"
    # (`isinstance(x, dict)` first: a plain type check, where Mapping's goes through abc.)
    if not isinstance(evt, dict) and not isinstance(evt, Mapping):
        raise ValidationError("invalid EventBridge event", [f"{where} must be a JSON object"])
    problems: list[str] = []
    source, detail_type, event_id = evt.get("source"), evt.get("detail-type"), evt.get("id")
    if not (type(source) is str and source and type(detail_type) is str and detail_type
            and type(event_id) is str and event_id):
        source = _required_str(evt, "source", where, problems)
        detail_type = _required_str(evt, "detail-type", where, problems)
        event_id = _required_str(evt, "id", where, problems)
    time = evt.get("time")
    if time is not None and not isinstance(time, str):
        problems.append(f"{where}.time must be a string")
        time = None
    detail = evt.get("detail")
    event: Event | None = None
    if detail is None:
        problems.append(f"{where}.detail is required")
    elif not isinstance(detail, dict) and not isinstance(detail, Mapping):
        problems.append(f"{where}.detail must be a JSON object, got {json_type(detail)}")
    else:
        event, more = _read_detail(
            source, detail_type, detail, catalog,
            fallback_id=event_id, fallback_time=time, where=where, detail_field="detail",
        )
        problems.extend(more)
    if problems or event is None:
        raise ValidationError("invalid EventBridge event", problems)
    return event


def from_put_events_body(body: Mapping[str, Any], catalog: Catalog) -> list[Event]:
    """A PutEvents request body, `{"Entries": [...]}` (1 to `MAX_ENTRIES` entries)."""
    events, problems = read_put_events_body(body, catalog)
    if problems:
        raise ValidationError("invalid PutEvents request", problems)
    return [event for _, event in events]


def read_put_events_body(
    body: Any, catalog: Catalog
) -> tuple[list[Positioned], list[str]]:
    """The entries that decoded (with their position) and every problem with the rest.

    For receivers that check more before answering, or that, like PutEvents itself,
    accept the good entries and report the failed ones.
    """
    if not isinstance(body, Mapping):
        return [], [f"a PutEvents body must be a JSON object, got {json_type(body)}"]
    problems = [
        f"unknown field '{key}' (a PutEvents body takes {', '.join(sorted(_BODY_FIELDS))})"
        for key in body if key not in _BODY_FIELDS
    ]
    entries = body.get("Entries")
    if not isinstance(entries, list):
        shown = "missing" if entries is None else json_type(entries)
        return [], [*problems, f"Entries must be an array of entries, got {shown}"]
    if not entries:
        return [], [*problems, "Entries is empty (send at least one entry)"]
    if len(entries) > MAX_ENTRIES:
        return [], [*problems, f"Entries has {len(entries)} entries, at most {MAX_ENTRIES} "
                    "are accepted"]
    events: list[Positioned] = []
    for index, entry in enumerate(entries):
        where = f"Entries[{index}]"
        event, more = _read_entry(entry, catalog, None, where)
        problems.extend(more)
        if event is not None:
            events.append((where, event))
    return events, problems


def _read_entry(
    entry: Any, catalog: Catalog, default_id: str | None, where: str
) -> tuple[Event | None, list[str]]:
    if not isinstance(entry, Mapping):
        return None, [f"{where} must be a JSON object, got {json_type(entry)}"]
    problems = [
        f"{where}: unknown field '{key}' (PutEvents entries take "
        f"{', '.join(sorted(ENTRY_FIELDS))})"
        for key in entry if key not in ENTRY_FIELDS
    ]
    source = _required_str(entry, "Source", where, problems)
    detail_type = _required_str(entry, "DetailType", where, problems)
    detail = _detail_object(entry, where, problems)
    time = _time_value(entry.get("Time"), f"{where}.Time", problems)
    for key in ("EventBusName", "TraceHeader"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            problems.append(f"{where}.{key} must be a string")
    resources = entry.get("Resources")
    if resources is not None and (
        not isinstance(resources, list) or not all(isinstance(r, str) for r in resources)
    ):
        problems.append(f"{where}.Resources must be an array of strings")
    if detail is None:
        # Still say whether the type is known, so one round trip reports both.
        unknown = (_resolve_type(source, detail_type, catalog, where)[1]
                   if source is not None and detail_type is not None else None)
        return None, [*problems, unknown] if unknown else problems
    event, more = _read_detail(source, detail_type, detail, catalog,
                               fallback_id=default_id, fallback_time=time, where=where)
    problems.extend(more)
    return (None if problems else event), problems


def _detail_object(entry: Mapping[str, Any], where: str, problems: list[str]) -> Any:
    detail = entry.get("Detail")
    if detail is None:
        problems.append(f"{where}.Detail is required")
        return None
    if isinstance(detail, Mapping):
        problems.append(f"{where}.Detail must be a JSON string, as PutEvents requires, "
                        "got an object (send json.dumps(detail))")
        return None
    if not isinstance(detail, str):
        problems.append(f"{where}.Detail must be a JSON string, got {json_type(detail)}")
        return None
    parsed, problem = jsontext.parse(detail, f"{where}.Detail")
    if problem:
        problems.append(problem)
        return None
    if not isinstance(parsed, dict):
        problems.append(f"{where}.Detail must be a JSON object, got {json_type(parsed)}")
        return None
    return parsed


def _read_detail(
    source: str | None,
    detail_type: str | None,
    detail: Mapping[str, Any],
    catalog: Catalog,
    *,
    fallback_id: str | None,
    fallback_time: str | None,
    where: str,
    detail_field: str = "Detail",
) -> tuple[Event | None, list[str]]:
    """Detail (already an object) -> Event; `source`/`detail_type` None: already reported."""
    problems: list[str] = []
    metadata = detail.get("metadata")
    ours = False
    data: Any
    attributes: dict[str, Any]
    if (isinstance(metadata, dict) or isinstance(metadata, Mapping)) \
            and detail.keys() <= _ENVELOPE_KEYS:
        data = detail.get("data") if "data_base64" not in detail else \
            _envelope_data(detail, f"{where}.{detail_field}", problems)
        ours = "specversion" in metadata
        attributes = (dict(metadata) if ours else _seed_attributes(
            metadata, f"{where}.{detail_field}.metadata", problems))
    else:
        data, attributes = dict(detail), {}
    if not ours:
        # Not our envelope: fill in what a CloudEvent needs from the EventBridge fields.
        attributes.setdefault("specversion", SPECVERSION)
        if fallback_time is not None:
            attributes.setdefault("time", fallback_time)
        if data is not None and not isinstance(data, bytes):
            attributes.setdefault("datacontenttype", "application/json")
    attributes.setdefault("id", fallback_id or str(uuid.uuid4()))

    if source is not None and attributes.get("source", source) != source:
        problems.append(f"{where}: metadata source {attributes['source']!r} differs from "
                        f"Source {source!r}")
    # A missing Source or DetailType is reported already; placeholders keep the checks
    # below from reporting it a second time.
    attributes["source"] = source or "?"
    if source is None or detail_type is None:
        attributes.setdefault("type", "?")
    elif "type" in attributes:
        type_ = attributes["type"]
        # Equal: consistent, whatever the catalog says; the catalog's DetailType for the
        # type (the usual event): consistent too. Anything else is looked at closely.
        if type_ != detail_type and (type(type_) is not str
                                     or (known := catalog.get(type_)) is None
                                     or known.detail_type != detail_type):
            problems.extend(_type_consistency(type_, detail_type, catalog, where))
    else:
        type_, problem = _resolve_type(source, detail_type, catalog, where)
        if problem:
            problems.append(problem)
        attributes["type"] = type_ or "?"

    invalid = attribute_problems(attributes)
    if invalid:
        problems.extend(f"{where}: {p}" for p in invalid)
    if problems:
        return None, problems
    return Event.from_checked_attributes(attributes, data), []


def _envelope_data(detail: Mapping[str, Any], where: str, problems: list[str]) -> Any:
    if "data_base64" not in detail:
        return detail.get("data")
    if "data" in detail:
        problems.append(f"{where}: has both 'data' and 'data_base64'")
    data, problem = codec.decode_base64(detail["data_base64"], f"{where}.data_base64")
    if problem:
        problems.append(problem)
    return data


def _seed_attributes(
    metadata: Mapping[str, Any], where: str, problems: list[str]
) -> dict[str, Any]:
    """The seeds' metadata as CloudEvents attributes; other keys become extensions.

    Keys outside the vocabulary are kept rather than dropped: lower-cased with word
    separators removed ("correlation_id" -> `correlationid`), as CloudEvents names
    require. A key that cannot be made a name, or two keys that land on one attribute
    with different values, are problems.
    """
    attributes: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, raw in metadata.items():
        if raw is None:
            continue  # null means absent, as in the JSON event format
        name = _SEED_METADATA.get(key) or _NAME_SEPARATORS.sub("", key.lower())
        value = _attribute_value(raw, name == "time")
        if value is None:
            problems.append(f"{where}.{key} must be a string, number or boolean, "
                            f"got {json_type(raw)}")
            continue
        if key == "trace_id" and not _TRACEPARENT.match(value):
            name = _TRACE_ID_FALLBACK
        if name not in CORE_ATTRIBUTES and not _EXTENSION_NAME.match(name):
            problems.append(f"{where}.{key} cannot be a CloudEvents attribute name "
                            "(1-20 lowercase letters or digits)")
            continue
        if name in attributes and attributes[name] != value:
            problems.append(f"{where}: '{origin[name]}' and '{key}' both set '{name}' with "
                            "different values")
            continue
        attributes[name], origin[name] = value, key
    return attributes


def _attribute_value(raw: Any, is_time: bool) -> str | None:
    """A metadata value as a CloudEvents string; epoch seconds become RFC 3339 for time."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"  # the canonical CloudEvents spelling
    if isinstance(raw, (int, float)):
        if is_time:
            try:
                return _epoch_to_rfc3339(raw)
            except (OverflowError, OSError, ValueError):
                return str(raw)  # attribute_problems then names the bad time
        return json.dumps(raw)
    return None


def _time_value(raw: Any, where: str, problems: list[str]) -> str | None:
    """PutEvents `Time`: boto3 sends a datetime, the JSON API epoch seconds, people ISO."""
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, datetime):
        aware = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            return _epoch_to_rfc3339(raw)
        except (OverflowError, OSError, ValueError):
            problems.append(f"{where} is out of range: {raw!r}")
            return None
    problems.append(f"{where} must be an RFC 3339 string or epoch seconds, got "
                    f"{json_type(raw)}")
    return None


def _epoch_to_rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _resolve_type(
    source: str, detail_type: str, catalog: Catalog, where: str
) -> tuple[str | None, str | None]:
    """(Source, DetailType) -> CloudEvents type; a DetailType may also be the type itself."""
    found = catalog.by_detail_type(source, detail_type)
    if found is not None:
        return found.type, None
    if catalog.get(detail_type) is not None:
        return detail_type, None
    known = ", ".join(f"'{t.detail_type}' from '{t.source}'" for t in catalog)
    return None, (f"{where}: unknown DetailType '{detail_type}' from Source '{source}' "
                  f"(known: {known})")


def _type_consistency(
    type_: Any, detail_type: str, catalog: Catalog, where: str
) -> list[str]:
    if not isinstance(type_, str):
        return []  # attribute_problems reports it
    known = catalog.get(type_)
    expected = known.detail_type if known else type_
    if detail_type in (expected, type_):
        return []
    return [f"{where}: DetailType '{detail_type}' does not match metadata type '{type_}' "
            f"(expected '{expected}')"]


def _required_str(
    obj: Mapping[str, Any], key: str, where: str, problems: list[str]
) -> str | None:
    value = obj.get(key)
    if value is None:
        problems.append(f"{where}.{key} is required")
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}.{key} must be a non-empty string")
        return None
    return value


__all__ = [
    "ENTRY_FIELDS",
    "MAX_ENTRIES",
    "from_eventbridge_event",
    "from_put_events_body",
    "from_put_events_entry",
    "read_put_events_body",
    "to_put_events_entry",
]
