"""The app description as artifacts: AsyncAPI 3.0, JSON Schema per type, a Markdown catalog.

A pure function of the app description: no Pulumi, no cloud SDK, no clock, no randomness.
Lists follow the app description's own order (the catalog's, the consumers') and mappings
are written with sorted keys, so the same app gives byte-identical output in any process.

This module imports only the standard library: `catalog check --against REF` loads it by
file path to export the app description of an older checkout (whose `handlers` package
may lack attributes added since, hence the `getattr` defaults below).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

ASYNCAPI_VERSION: Final = "3.0.0"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: `$id` of each exported data schema. A URN, because the project publishes the schemas
#: as files (`catalog export --format jsonschema`), not at a web address of its own.
SCHEMA_ID_PREFIX: Final = "urn:switchyard:schema:"
CONTENT_TYPE: Final = "application/json"
#: Type of the storage events a bucket with `events=True` emits (handlers.core.storage).
_STORAGE_FINALIZED: Final = "com.switchyard.storage.object.finalized"
#: Binding versions the official AsyncAPI 3.0.0 JSON Schema knows (it validates a binding
#: only against the versions it lists: sqs 0.1.0/0.2.0, sns 0.1.0, googlepubsub 0.2.0).
_SQS_BINDING: Final = "0.2.0"
_SNS_BINDING: Final = "0.1.0"
_PUBSUB_BINDING: Final = "0.2.0"
#: W3C Trace Context `traceparent` (version-traceid-parentid-flags, lowercase hex).
_TRACEPARENT: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
EXTERNAL: Final = "external"


def dumps(document: Any) -> str:
    """The one serialisation of every artifact: sorted keys, two-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- what the app description says ------------------------------------------------------


def _types(app: Any) -> list[Any]:
    return list(app.catalog)


def producers(app: Any) -> dict[str, list[str]]:
    """Producer name -> the types it emits, in declaration order.

    Producers are what the app declares: consumers' `emits`, the saga's `emits`, each
    schedule, each bucket with upload events. Anything may also come from outside through
    the ingress (HTTP, PutEvents, Pub/Sub publish), which accepts every catalog type.
    """
    found: dict[str, list[str]] = {}
    for consumer in app.consumers:
        if consumer.emits:
            found[consumer.name] = list(consumer.emits)
    saga = getattr(app, "saga", None)
    if saga is not None and getattr(saga, "emits", None):
        found[f"saga.{saga.name}"] = list(saga.emits)
    for schedule in getattr(app, "schedules", ()):
        found[f"schedule.{schedule.name}"] = [schedule.emits]
    for bucket in getattr(app, "buckets", ()):
        if getattr(bucket, "events", False) and app.catalog.get(_STORAGE_FINALIZED):
            found[f"bucket.{bucket.name}"] = [_STORAGE_FINALIZED]
    return found


def producers_of(app: Any, type_: str) -> list[str]:
    return [name for name, emits in producers(app).items() if type_ in emits]


def consumers_of(app: Any, type_: str) -> list[str]:
    return [c.name for c in app.consumers if type_ in c.consumes]


# --- AsyncAPI 3.0 ------------------------------------------------------------------------


def cloudevents_headers(event_type: Any) -> dict[str, Any]:
    """The CloudEvents 1.0 context attributes of one type, as an AsyncAPI headers schema.

    Attribute names are the CloudEvents ones; each binding spells them its own way
    (`ce-*` HTTP headers and Pub/Sub attributes in binary mode, JSON members in structured
    mode, EventBridge `Source`/`DetailType` plus `detail`). `source` is fixed per type
    because the AWS rules route on it (EventBridge pattern on source and detail-type).
    """
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"const": "1.0", "description": "CloudEvents spec version."},
            "id": {"type": "string", "minLength": 1,
                   "description": "Unique per source; consumers drop a repeated (source, id)."},
            "source": {"const": event_type.source,
                       "description": "CloudEvents source; the EventBridge Source."},
            "type": {"const": event_type.type, "description": "CloudEvents type."},
            "time": {"type": "string", "format": "date-time",
                     "description": "When it happened (RFC 3339)."},
            "subject": {"type": "string"},
            "datacontenttype": {"type": "string", "default": CONTENT_TYPE},
            "dataschema": {"type": "string", "format": "uri",
                           "description": "May name the exported schema's $id."},
            "traceparent": {"type": "string", "pattern": _TRACEPARENT,
                            "description": "W3C Trace Context extension."},
            "claimcheck": {"type": "string",
                           "description": "Extension: where an oversize payload was parked "
                                          "(bucket/key); data is then absent."},
            "claimsize": {"type": "string",
                          "description": "Extension: the parked payload's size in bytes."},
        },
    }


def _message(event_type: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": event_type.type,
        "title": event_type.detail_type,
        "contentType": CONTENT_TYPE,
        "headers": cloudevents_headers(event_type),
        "payload": copy.deepcopy(dict(event_type.schema)),
        # Pub/Sub binary mode: the attributes a push subscription filters on (ce-type).
        "bindings": {"googlepubsub": {
            "bindingVersion": _PUBSUB_BINDING,
            "attributes": {"ce-specversion": "1.0", "ce-source": event_type.source,
                           "ce-type": event_type.type},
        }},
        # EventBridge has no AsyncAPI binding; its spelling of the type is an extension.
        "x-eventbridge": {"source": event_type.source, "detail-type": event_type.detail_type},
    }
    if event_type.description:
        message["summary"] = event_type.description
    return message


def _refs(channel: str, types: Iterable[str]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{t}"} for t in types]


#: Prefix of the AWS names in the bindings when none is given. A stack's own prefix is
#: `switchyard:prefix`, by default `switchyard-<stack>` (infra/config.py).
DEFAULT_PREFIX: Final = "switchyard"


def asyncapi(app: Any, version: str = "0.0.0", prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The app's AsyncAPI 3.0 document: bus, consumers, producers, every type as a message.

    The queue and topic names in the `sqs`/`sns` bindings are those a stack with `prefix`
    creates (adapters/aws/topology.py `Names`: `<prefix>-<consumer>`, `-dlq`,
    `<prefix>-notifications`).
    """
    types = _types(app)
    all_types = [t.type for t in types]
    messages = {t.type: _message(t) for t in types}
    channels: dict[str, Any] = {
        "bus": {
            "address": "bus",
            "title": "Event bus",
            "description": "Every event is published here: an EventBridge custom bus (AWS), "
                           "a Pub/Sub topic (GCP), the SQLite event log (local).",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in all_types},
        },
    }
    operations: dict[str, Any] = {
        f"send.{EXTERNAL}": {
            "action": "send",
            "channel": {"$ref": "#/channels/bus"},
            "title": "Publish from outside",
            "description": "Producers outside the app publish through the ingress (HTTP "
                           "CloudEvents, PutEvents, Pub/Sub publish); every type is accepted "
                           "once its data matches the schema.",
            "messages": _refs("bus", all_types),
        },
    }
    for name, emits in producers(app).items():
        operations[f"send.{name}"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/bus"},
            "title": f"{name} publishes",
            "messages": _refs("bus", emits),
        }
    for consumer in app.consumers:
        key = f"consumers.{consumer.name}"
        channels[key] = {
            "address": consumer.name,
            "title": f"{consumer.name} route",
            "description": (consumer.description or consumer.name) + " Its route: an "
                           "EventBridge rule to an SQS queue (AWS), a push subscription "
                           "filtered on ce-type (GCP), queue rows (local); failures "
                           "dead-letter after maxDeliveries.",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in consumer.consumes},
            # The rule delivers to the consumer's own queue (point to point from there):
            # the binding's Channel form, with the queue and its DLQ. Standard queues: the
            # binding requires `fifoQueue`; order is never assumed, so none is FIFO.
            "bindings": {"sqs": {
                "bindingVersion": _SQS_BINDING,
                "queue": {"name": f"{prefix}-{consumer.name}", "fifoQueue": False},
                "deadLetterQueue": {"name": f"{prefix}-{consumer.name}-dlq",
                                    "fifoQueue": False},
            }},
        }
        operations[f"receive.{consumer.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "title": f"{consumer.name} receives",
            "messages": _refs(key, consumer.consumes),
        }
    notifiers = [c for c in app.consumers if getattr(c, "notifies", False)]
    if notifiers:
        channels["notifier"] = {
            "address": "notifications",
            "title": "Notifications topic",
            "description": "Fan-out of notifications to people and systems: an SNS topic "
                           "(AWS), a Pub/Sub topic (GCP), a local topic and the log.",
            "messages": {"notification": {"$ref": "#/components/messages/notification"}},
            "bindings": {"sns": {"bindingVersion": _SNS_BINDING,
                                 "name": f"{prefix}-notifications"}},
        }
        messages["notification"] = {
            "name": "notification",
            "title": "Notification",
            "contentType": CONTENT_TYPE,
            "summary": "What a notifying consumer hands the notifier: the notification's "
                       "fields plus the event_id receivers drop duplicates by.",
            "payload": {"type": "object"},
        }
        for consumer in notifiers:
            operations[f"notify.{consumer.name}"] = {
                "action": "send",
                "channel": {"$ref": "#/channels/notifier"},
                "title": f"{consumer.name} notifies",
                "messages": _refs("notifier", ["notification"]),
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": app.name,
            "version": version,
            "description": "Event contracts of the app: every CloudEvents type on the bus, "
                           "who publishes it and who consumes it.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


# --- JSON Schema per type -----------------------------------------------------------------


def schema_id(type_: str) -> str:
    return SCHEMA_ID_PREFIX + type_


def json_schema(event_type: Any) -> dict[str, Any]:
    """One type's data as a complete draft 2020-12 schema."""
    schema = copy.deepcopy(dict(event_type.schema))
    schema.update({"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(event_type.type),
                   "title": event_type.detail_type})
    if event_type.description:
        schema["description"] = event_type.description
    return schema


def json_schemas(app: Any) -> dict[str, dict[str, Any]]:
    """File name -> schema, one per type (`<type>.schema.json`)."""
    return {f"{t.type}.schema.json": json_schema(t) for t in _types(app)}


# --- Markdown -----------------------------------------------------------------------------

_LOWER: Final = (("minimum", ">="), ("exclusiveMinimum", ">"), ("minLength", "length >="),
                 ("minItems", "items >="), ("minProperties", "fields >="))
_UPPER: Final = (("maximum", "<="), ("exclusiveMaximum", "<"), ("maxLength", "length <="),
                 ("maxItems", "items <="), ("maxProperties", "fields <="))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "—"


def _type_name(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        return " \\| ".join(declared)
    if declared:
        return str(declared)
    if "enum" in schema:
        kinds = sorted({type(v).__name__ for v in schema["enum"]})
        return {"str": "string", "int": "integer", "float": "number"}.get(kinds[0], kinds[0]) \
            if len(kinds) == 1 else "any"
    return "any"


def _constraints(schema: Mapping[str, Any]) -> str:
    parts = [f"{label} {schema[key]}" for key, label in _LOWER + _UPPER if key in schema]
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]))
    if "const" in schema:
        parts.append(f"= `{json.dumps(schema['const'])}`")
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    if "format" in schema:
        parts.append(f"format {schema['format']}")
    return _cell("; ".join(parts)) if parts else ""


def _field_rows(schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    rows: list[str] = []
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        rows.append(f"| `{path}` | {_type_name(sub)} | {'yes' if name in required else 'no'} "
                    f"| {_constraints(sub)} |")
        rows.extend(_nested(sub, path))
    return rows


def _nested(schema: Mapping[str, Any], path: str) -> list[str]:
    if "properties" in schema:
        return _field_rows(schema, path + ".")
    items = schema.get("items")
    if isinstance(items, Mapping) and "properties" in items:
        return _field_rows(items, path + "[].")
    return []


def markdown(app: Any) -> str:
    """The catalog as Markdown: one table of types, then each type's fields."""
    lines = [
        "| EventBridge source / detail-type | CloudEvents type | producers | consumers "
        "| meaning |",
        "|---|---|---|---|---|",
    ]
    for t in _types(app):
        made_by = producers_of(app, t.type)
        lines.append(f"| `{t.source}` / `{t.detail_type}` | `{t.type}` "
                     f"| {_names(made_by) if made_by else EXTERNAL} "
                     f"| {_names(consumers_of(app, t.type))} | {_cell(t.description)} |")
    lines += ["", "Producers are what the app declares (consumers' and the saga's `emits`,",
              "schedules, upload buckets); every type is also accepted from outside through",
              "the ingress, and `external` marks types only outside producers send.", ""]
    for t in _types(app):
        lines += [f"### {t.detail_type} (`{t.type}`)", "",
                  "| field | type | required | constraints |", "|---|---|---|---|"]
        rows = _field_rows(t.schema)
        lines += rows if rows else ["| (any JSON object) | object | | |"]
        lines.append("")
    return "\n".join(lines)
