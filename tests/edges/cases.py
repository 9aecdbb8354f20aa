"""The inputs every edge must refuse (missing or wrong attributes, bad JSON, garbage,
payloads over a limit), and the ingress policy's table of what every HTTP front door
takes and refuses, as data: each case names the words its answer must contain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handlers.catalog import INVENTORY_UPDATED

GOOD: dict[str, Any] = {
    "specversion": "1.0", "id": "edge-1", "source": "inventory", "type": INVENTORY_UPDATED,
    "datacontenttype": "application/json",
    "data": {"item_id": "EDGE", "quantity": 3, "action": "restock"},
}
GARBAGE = b"\x00\xff\xfe\x80garbage\x01"


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k not in names}


def with_raw(value: str, raw: str) -> bytes:
    """GOOD as JSON text with one JSON value (as text) replaced by raw text."""
    text = json.dumps(GOOD, ensure_ascii=False)
    assert text.count(value) == 1, value
    return text.replace(value, raw).encode()


@dataclass(frozen=True)
class Bad:
    """A structured CloudEvent (or raw bytes) and the words its error must contain."""

    name: str
    event: dict[str, Any] | None = None
    raw: bytes | None = None
    words: tuple[str, ...] = ()

    def body(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.event).encode()


#: Structured-mode cases every CloudEvents edge understands.
EVENTS: list[Bad] = [
    Bad("missing id", without("id"), words=("'id'",)),
    Bad("missing source", without("source"), words=("'source'",)),
    Bad("missing type", without("type"), words=("'type'",)),
    Bad("missing specversion", without("specversion"), words=("'specversion'",)),
    Bad("missing all four", without("id", "source", "type", "specversion"),
        words=("'id'", "'source'", "'type'", "'specversion'")),
    Bad("wrong specversion", {**GOOD, "specversion": "0.3"},
        words=("specversion", "'0.3'")),
    Bad("bad JSON", raw=b'{"id": "x", ', words=("JSON",)),
    Bad("garbage bytes", raw=GARBAGE, words=("not valid JSON",)),
    # JSON that json.loads accepts but no store or next hop can take (the shared reader,
    # handlers.core.wire.jsontext, refuses each one by name).
    Bad("number overflowing to infinity", raw=with_raw("3", "1e999"),
        words=("out of range", "1e999")),
    Bad("negative number overflowing", raw=with_raw("3", "-1e999"),
        words=("out of range", "-1e999")),
    Bad("lone surrogate in id", raw=with_raw('"edge-1"', '"\\ud800"'),
        words=("lone surrogate", "$.id")),
    Bad("lone surrogate in source", raw=with_raw('"inventory"', '"inv\\udfff"'),
        words=("lone surrogate", "$.source")),
    Bad("lone surrogate in type", raw=with_raw(f'"{INVENTORY_UPDATED}"', '"\\udc00"'),
        words=("lone surrogate", "$.type")),
    Bad("lone surrogate in data", raw=with_raw('"EDGE"', '"\\ud83d"'),
        words=("lone surrogate", "$.data.item_id")),
    Bad("nested 100,000 deep", raw=with_raw('"restock"', "[" * 100_000 + "]" * 100_000),
        words=("nested deeper than 64",)),
    Bad("invalid UTF-8", raw=with_raw('"EDGE"', '"\xff"').replace(b"\xc3\xbf", b"\xff"),
        words=("not valid UTF-8",)),
]


def put_events(*details: dict[str, Any], detail_type: str = "Inventory Updated") -> bytes:
    return json.dumps({"Entries": [{"Source": "inventory", "DetailType": detail_type,
                                    "Detail": json.dumps(d)} for d in details]}).encode()


def binary_headers(content_type: str | None = "application/json",
                   **changes: str) -> dict[str, str]:
    headers = {"ce-specversion": "1.0", "ce-id": "edge-bin", "ce-source": "inventory",
               "ce-type": INVENTORY_UPDATED, **{f"ce-{k}": v for k, v in changes.items()}}
    if content_type is not None:
        headers["content-type"] = content_type
    return headers


@dataclass(frozen=True)
class Ingress:
    """One request to a front door, the status every front door must answer, the words
    the answer must contain, and how many events a 202 publishes."""

    name: str
    headers: dict[str, str]
    body: bytes
    status: int
    words: tuple[str, ...] = ()
    published: int = 0


_STRUCTURED = {"content-type": "application/cloudevents+json"}
_BATCH = {"content-type": "application/cloudevents-batch+json"}
_JSON = {"content-type": "application/json"}
_FORM = {"content-type": "application/x-www-form-urlencoded"}
_RESTOCK = GOOD["data"]
_NO_QUANTITY = {"item_id": "EDGE", "action": "restock"}

#: The ingress policy (`handlers.core.ingress_binding`): one verdict per request, the same
#: on the local server, the AWS API function and the GCP ingest function.
INGRESS: list[Ingress] = [
    Ingress("structured event", _STRUCTURED, json.dumps(GOOD).encode(), 202, published=1),
    Ingress("binary, JSON data", binary_headers(), json.dumps(_RESTOCK).encode(), 202,
            published=1),
    Ingress("binary without Content-Type (the CloudEvents SDK's to_binary)",
            binary_headers(None), json.dumps(_RESTOCK).encode(), 202, published=1),
    Ingress("batch of two", _BATCH, json.dumps([GOOD, {**GOOD, "id": "edge-2"}]).encode(),
            202, published=2),
    Ingress("PutEvents, JSON", _JSON, put_events(_RESTOCK, _RESTOCK), 202, published=2),
    Ingress("PutEvents without Content-Type", {}, put_events(_RESTOCK), 400,
            ("no Content-Type", "application/json")),
    Ingress("structured, schema-invalid data", _STRUCTURED,
            json.dumps({**GOOD, "data": {"item_id": "", "quantity": 0,
                                         "action": "sell"}}).encode(), 400,
            ("data.item_id must not be empty", "data.quantity must be > 0",
             "data.action must be one of")),
    Ingress("binary, schema-invalid data", binary_headers(),
            json.dumps(_NO_QUANTITY).encode(), 400, ("data.quantity is required",)),
    Ingress("binary, text data for an object schema", binary_headers("text/plain"),
            b"restock EDGE", 400, ("data must be of type object, got str",)),
    Ingress("PutEvents, one schema-invalid entry of two", _JSON,
            put_events(_RESTOCK, _NO_QUANTITY), 400, ("Entries[1]: data.quantity is required",)),
    Ingress("batch, one bad event of two", _BATCH,
            json.dumps([GOOD, {**GOOD, "id": "edge-2", "data": _NO_QUANTITY}]).encode(), 400,
            ("event[1]: data.quantity is required",)),
    Ingress("unknown type", _STRUCTURED,
            json.dumps({**GOOD, "type": "com.example.nope"}).encode(), 400,
            ("unknown event type 'com.example.nope'",)),
    Ingress("source not the catalog's for the type", _STRUCTURED,
            json.dumps({**GOOD, "source": "somewhere-else"}).encode(), 400,
            ("source 'somewhere-else' is not 'inventory'",)),
    Ingress("curl -d with a PutEvents body", _FORM, put_events(_RESTOCK), 400,
            ("curl -d", "application/json")),
    Ingress("curl -d with binary-mode headers", {**binary_headers(), **_FORM},
            json.dumps(_RESTOCK).encode(), 400, ("curl -d",)),
    Ingress("JSON that is not a PutEvents body", _JSON, b'{"item_id": "EDGE"}', 400,
            ("not a PutEvents request",)),
    Ingress("PutEvents body as text/plain", {"content-type": "text/plain"},
            put_events(_RESTOCK), 400, ("not an event", "'text/plain'")),
    Ingress("garbage", _JSON, GARBAGE, 400, ("not valid",)),
]
