"""What the local runtime answers about its state: orders, inventory, dead letters, counts.

Read-only views over the runtime's database for the CLI, the HTTP API and the tests;
nothing here writes. (The timeline has its own reader: `adapters.local.timeline`.)
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from adapters.local.database import Database
from adapters.local.sqlite_store import SQLiteStore

_DISCARDED: Final = ("dlq_id", "consumer", "event_id", "type", "reason", "attempts", "event",
                     "failed_at", "discarded_by", "discarded_at")


class Queries:
    def __init__(self, db: Database, store: SQLiteStore) -> None:
        self.db = db
        self._store = store

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self._store.get("orders", order_id)

    def orders(self) -> list[dict[str, Any]]:
        return self._store.scan("orders")

    def available(self, item_id: str) -> int:
        return int((self._store.get("inventory", item_id) or {}).get("available", 0))

    def dlq(self, consumer: str | None = None, include_redriven: bool = False
            ) -> list[dict[str, Any]]:
        sql = ("SELECT did, consumer, event_id, event_type, reason, attempts, body, failed_at,"
               " redriven_at FROM dlq WHERE 1=1")
        params: list[Any] = []
        if not include_redriven:
            sql += " AND redriven_at IS NULL"
        if consumer:
            sql += " AND consumer = ?"
            params.append(consumer)
        rows = self.db.read(sql + " ORDER BY did", tuple(params))
        return [{"dlq_id": r[0], "consumer": r[1], "event_id": r[2], "type": r[3],
                 "reason": r[4], "attempts": r[5], "event": json.loads(r[6]),
                 "failed_at": r[7], "redriven_at": r[8]} for r in rows]

    def discarded(self) -> list[dict[str, Any]]:
        """The record of every discarded dead letter, oldest first."""
        rows = self.db.read("SELECT did, consumer, event_id, event_type, reason, attempts, "
                             "body, failed_at, discarded_by, discarded_at FROM dlq_discarded "
                             "ORDER BY discarded_at, did")
        out = [dict(zip(_DISCARDED, row, strict=True)) for row in rows]
        for entry in out:
            entry["event"] = json.loads(entry["event"])
        return out

    def consumer_status(self, names: list[str], recent: int = 3) -> list[dict[str, Any]]:
        """Per consumer (or `saga:NAME`): backlog, in flight (claimed, not yet done), open
        dead letters and the latest failures, newest first."""
        now = time.time()
        out = []
        for name in names:
            queued = self.db.read("SELECT COUNT(*), SUM(visible_at > ? AND attempts > 0) FROM "
                                  "queue WHERE consumer = ?", (now, name))[0]
            dead = self.db.read("SELECT COUNT(*) FROM dlq WHERE consumer = ? AND redriven_at "
                                "IS NULL", (name,))[0][0]
            failures = self.db.read("SELECT event_type, outcome, detail FROM timeline WHERE "
                                    "consumer = ? AND outcome IN ('retry', 'dead-lettered') "
                                    "ORDER BY seq DESC LIMIT ?", (name, recent))
            in_flight = int(queued[1] or 0)
            out.append({"consumer": name, "backlog": int(queued[0]) - in_flight,
                        "in_flight": in_flight, "dead_letters": int(dead),
                        "recent_failures": [f"{t} {o}: {d}" for t, o, d in failures]})
        return out

    def counts(self) -> dict[str, int]:
        def one(sql: str) -> int:
            return int(self.db.read(sql)[0][0])
        return {
            "events": one("SELECT COUNT(*) FROM events"),
            "queued": one("SELECT COUNT(*) FROM queue"),
            "dead_lettered": one("SELECT COUNT(*) FROM dlq WHERE redriven_at IS NULL"),
            "sagas_active": one("SELECT COUNT(*) FROM sagas WHERE status IN "
                                "('running', 'compensating')"),
            "notifications": one("SELECT COUNT(*) FROM notifications"),
        }
