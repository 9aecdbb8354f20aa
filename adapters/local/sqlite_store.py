"""The Store port on SQLite: items as JSON documents, conditions checked in one transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from adapters.local.database import Database
from handlers.core import fastjson
from handlers.core.ports import Op, Put, apply_op

#: Items as compact JSON (`json.dumps` with options builds an encoder per call).
_encode_doc: Final = fastjson.encoder(json.JSONEncoder(separators=(",", ":")))


class SQLiteStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        rows = self._db.read("SELECT doc FROM items WHERE tbl = ? AND key = ?", (table, key))
        return fastjson.loads(rows[0][0]) if rows else None

    def transact(self, ops: Sequence[Op]) -> bool:
        staged: dict[tuple[str, str], dict[str, Any]] = {}
        # Every condition is checked before the one write at the end: inside a delivery's
        # transaction this needs no savepoint of its own.
        with self._db.write(savepoint=False) as conn:
            for op in ops:
                where = (op.table, op.key)
                if where in staged:
                    current: dict[str, Any] | None = staged[where]
                else:
                    row = conn.execute("SELECT doc FROM items WHERE tbl = ? AND key = ?",
                                       where).fetchone()
                    current = fastjson.loads(row[0]) if row else None
                new = apply_op(current, op)
                if new is None:
                    return False  # nothing written yet: the transaction commits empty
                staged[where] = new
            conn.executemany(
                "INSERT OR REPLACE INTO items (tbl, key, doc) VALUES (?, ?, ?)",
                [(t, k, _encode_doc(doc)) for (t, k), doc in staged.items()],
            )
        return True

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return self.transact([Put(table, key, item)])

    def scan(self, table: str) -> list[dict[str, Any]]:
        rows = self._db.read("SELECT doc FROM items WHERE tbl = ? ORDER BY key", (table,))
        return [fastjson.loads(r[0]) for r in rows]
