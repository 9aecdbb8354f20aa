"""What a write transaction keeps in its cache (items read or written, the event log's
last number) never outlives a rollback, nor the transaction itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.local.database import Database
from adapters.local.runtime import Runtime
from adapters.local.sqlite_store import SQLiteStore
from handlers.core.ports import Put, Update
from tests.factories import restock


class Undo(Exception):
    """Rolls a savepoint back."""


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "cache.db")


def _stored(db: Database, key: str) -> str | None:
    rows = db.read("SELECT doc FROM items WHERE tbl = 't' AND key = ?", (key,))
    return rows[0][0] if rows else None


def test_the_cache_exists_only_inside_a_write_transaction(db: Database) -> None:
    assert db.cache() is None
    with db.write():
        cache = db.cache()
        assert cache == {}
        with db.write():
            assert db.cache() is cache
        cache["x"] = 1
    assert db.cache() is None
    with db.write():
        assert db.cache() == {}  # the next transaction starts empty


def test_a_write_rolled_back_with_its_savepoint_is_not_read_back(db: Database) -> None:
    store = SQLiteStore(db)
    assert store.transact([Put("t", "k", {"n": 1})])
    with db.write():
        assert store.get("t", "k") == {"n": 1}
        with pytest.raises(Undo), db.write():
            assert store.transact([Update("t", "k", add={"n": 1})])
            assert store.get("t", "k") == {"n": 2}
            assert store.transact([Put("t", "new", {"n": 0})])
            raise Undo
        assert store.get("t", "k") == {"n": 1}
        assert store.get("t", "new") is None
        # Conditions are checked against what is stored, not what was rolled back.
        assert not store.transact([Update("t", "k", expect={"n": 2}, add={"n": 1})])
        assert store.transact([Update("t", "k", expect={"n": 1}, add={"n": 10})])
        assert store.transact([Put("t", "new", {"n": 5}, if_absent=True)])
    assert store.get("t", "k") == {"n": 11}
    assert store.get("t", "new") == {"n": 5}


def test_a_read_inside_a_rolled_back_savepoint_is_not_kept(db: Database) -> None:
    """What a savepoint read may have been its own write: dropped with it, all of it."""
    store = SQLiteStore(db)
    with db.write():
        with pytest.raises(Undo), db.write():
            assert store.transact([Put("t", "k", {"n": 1})])
            with db.write():  # released into the savepoint that then rolls back
                assert store.get("t", "k") == {"n": 1}
            raise Undo
        assert store.get("t", "k") is None
        assert store.transact([Put("t", "k", {"n": 2}, if_absent=True)])
    assert _stored(db, "k") == '{"n":2}'


def test_a_transaction_rolled_back_leaves_nothing_cached(db: Database) -> None:
    store = SQLiteStore(db)
    with pytest.raises(Undo), db.write():
        assert store.transact([Put("t", "k", {"n": 1})])
        assert store.get("t", "k") == {"n": 1}
        raise Undo
    with db.write():
        assert store.get("t", "k") is None
        assert store.transact([Put("t", "k", {"n": 2}, if_absent=True)])
    assert store.get("t", "k") == {"n": 2}


def test_the_next_transaction_reads_what_another_connection_wrote(tmp_path: Path) -> None:
    db, other = Database(tmp_path / "two.db"), Database(tmp_path / "two.db")
    store, their_store = SQLiteStore(db), SQLiteStore(other)
    with db.write():
        assert store.get("t", "k") is None  # cached as absent, for this transaction only
    assert their_store.transact([Put("t", "k", {"n": 1})])
    with db.write():
        assert store.get("t", "k") == {"n": 1}
        assert not store.transact([Put("t", "k", {"n": 2}, if_absent=True)])


def test_every_get_returns_a_document_of_its_own(db: Database) -> None:
    store = SQLiteStore(db)
    assert store.transact([Put("t", "k", {"n": 1, "tags": ["a"]})])
    with db.write():
        first = store.get("t", "k")
        assert first is not None
        first["n"] = 99
        first["tags"].append("changed by the caller")
        assert store.get("t", "k") == {"n": 1, "tags": ["a"]}
        assert store.transact([Update("t", "k", expect={"n": 1}, add={"n": 1})])
    assert store.get("t", "k") == {"n": 2, "tags": ["a"]}


def test_ingests_in_one_transaction_number_events_on_across_a_rollback(
        tmp_path: Path) -> None:
    """The log's last number is kept for the transaction's next ingest; a savepoint rolled
    back takes its events, and their numbers, with it."""
    runtime = Runtime(tmp_path / "seq.db")
    try:
        runtime.ingest([restock("A", 1)])
        (last,), = runtime.db.read("SELECT max(seq) FROM events")
        with runtime.db.write():
            runtime.ingest([restock("B", 1)], origin="emit")
            with pytest.raises(Undo), runtime.db.write():
                runtime.ingest([restock("C", 1), restock("D", 1)], origin="emit")
                raise Undo
            runtime.ingest([restock("E", 1)], origin="emit")
        rows = runtime.db.read("SELECT seq, body FROM events ORDER BY seq")
        assert [seq for seq, _ in rows] == [last, last + 1, last + 2]
        assert ['"item_id":"C"' in body or '"item_id":"D"' in body
                for _, body in rows] == [False, False, False]
    finally:
        runtime.close()
