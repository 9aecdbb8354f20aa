"""The malformed inputs every edge must refuse (RELIABILITY.md cases 5 and 7, plus
garbage), as data: each case names the words its error must contain."""

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
]
