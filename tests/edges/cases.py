"""The malformed inputs every edge must refuse (RELIABILITY.md cases 5 and 7, plus
garbage and hostile JSON), as data: each case names the words its error must contain."""

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
    # handlers.core.jsonformat.parse_json, refuses each one by name).
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
