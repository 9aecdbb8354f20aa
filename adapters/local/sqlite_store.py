"""The Store port on SQLite: items as JSON documents, conditions checked in one transaction."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from adapters.local.database import Database
from handlers.core import fastjson
from handlers.core.ports import Op, Put, apply_op

#: Items as compact JSON (`json.dumps` with options builds an encoder per call).
encode_doc: Final = fastjson.encoder(json.JSONEncoder(separators=(",", ":")))
SELECT_ITEM: Final = "SELECT doc FROM items WHERE tbl = ? AND key = ?"
#: The first element of this store's keys in `Database.cache`.
_ITEM: Final = "item"


class SQLiteStore:
    """Inside a write transaction (a delivery's, a saga run's) every item read or written
    is kept in the transaction's cache (`Database.cache`) as its stored text (None: no
    such item), so `transact` checks its conditions without reading again what the
    handler, or the engine, just read. The cache holds text, never a dict handed out:
    every `get` returns a fresh document."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        cache = self._db.cache()
        if cache is None:
            rows = self._db.read(SELECT_ITEM, (table, key))
            return fastjson.loads(rows[0][0]) if rows else None
        where = (_ITEM, table, key)
        if where in cache:
            doc = cache[where]
        else:
            rows = self._db.read(SELECT_ITEM, (table, key))
            doc = cache[where] = rows[0][0] if rows else None
        return fastjson.loads(doc) if doc is not None else None

    def unchanged(self, reads: Sequence[tuple[tuple[str, str], str | None]]) -> bool:
        """Inside a write transaction: whether every item still has the text given (None:
        absent). What it reads (one statement for all it has not cached) stays in the
        transaction's cache, for the writes that follow."""
        cache = self._db.cache()
        assert cache is not None
        missing = [key for key in ((_ITEM, *where) for where, _ in reads) if key not in cache]
        if missing:
            for key in missing:
                cache[key] = None  # unless found below
            params = [part for key in missing for part in key[1:]]
            for n, doc in self._db.connection().execute(_select_items(len(missing)), params):
                cache[missing[n]] = doc
        return all(cache[(_ITEM, *where)] == text for where, text in reads)

    def transact(self, ops: Sequence[Op]) -> bool:
        staged: dict[tuple[str, str], dict[str, Any]] = {}
        # Every condition is checked before the one write at the end: inside a delivery's
        # transaction this needs no savepoint of its own.
        with self._db.write(savepoint=False) as conn:
            cache = self._db.cache()
            assert cache is not None  # inside the transaction just opened (or joined)
            for op in ops:
                where = (op.table, op.key)
                if where in staged:
                    current: dict[str, Any] | None = staged[where]
                else:
                    cached = (_ITEM, *where)
                    if cached in cache:
                        doc = cache[cached]
                    else:
                        row = conn.execute(SELECT_ITEM, where).fetchone()
                        doc = cache[cached] = row[0] if row else None
                    current = fastjson.loads(doc) if doc is not None else None
                new = apply_op(current, op)
                if new is None:
                    return False  # nothing written yet: the transaction commits empty
                staged[where] = new
            self._replace(conn, cache, [(t, k, encode_doc(doc))
                                        for (t, k), doc in staged.items()])
        return True

    def replace(self, texts: Iterable[tuple[tuple[str, str], str]]) -> None:
        """Write these items' texts as they are (what `transact` writes once its
        conditions hold), in the open write transaction or one of their own."""
        with self._db.write(savepoint=False) as conn:
            cache = self._db.cache()
            assert cache is not None
            self._replace(conn, cache, [(t, k, text) for (t, k), text in texts])

    @staticmethod
    def _replace(conn: Any, cache: dict[Any, Any], rows: list[tuple[str, str, str]]) -> None:
        """One statement (all rows or none) for the rows of a delivery."""
        conn.execute(_replace_items(len(rows)), [v for row in rows for v in row])
        for t, k, doc in rows:
            cache[(_ITEM, t, k)] = doc

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return self.transact([Put(table, key, item)])

    def scan(self, table: str) -> list[dict[str, Any]]:
        rows = self._db.read("SELECT doc FROM items WHERE tbl = ? ORDER BY key", (table,))
        return [fastjson.loads(r[0]) for r in rows]


@functools.lru_cache(maxsize=32)
def _select_items(count: int) -> str:
    """The items of `count` (table, key) pairs, each row with the pair's position: one
    primary-key search per pair (a row-value IN list would scan the table)."""
    return " UNION ALL ".join(f"SELECT {n}, doc FROM items WHERE tbl = ? AND key = ?"
                              for n in range(count))


@functools.lru_cache(maxsize=32)
def _replace_items(count: int) -> str:
    rows = ", ".join(["(?, ?, ?)"] * count)
    return f"INSERT OR REPLACE INTO items (tbl, key, doc) VALUES {rows}"
