"""Rows deferred to a transaction's commit (the timeline's) obey its savepoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.local.database import Database

_INSERT = "INSERT INTO notifications (id, message, sent_at) VALUES (?, ?, 0)"


def _ids(db: Database) -> list[str]:
    return [row[0] for row in db.read("SELECT id FROM notifications ORDER BY rowid")]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "deferred.db")


def test_deferred_rows_are_written_at_commit_in_the_order_given(db: Database) -> None:
    with db.write() as conn:
        db.defer(_INSERT, ("a", "{}"))
        conn.execute(_INSERT, ("b", "{}"))  # written now, so ahead of the deferred ones
        db.defer(_INSERT, ("c", "{}"))
        assert [r[0] for r in conn.execute("SELECT id FROM notifications")] == ["b"]
    assert _ids(db) == ["b", "a", "c"]


def test_interleaved_statements_keep_the_order_of_each_one_s_rows(db: Database) -> None:
    """A transaction's deferred rows go in one statement per statement (a delivery's ack
    and its timeline row, then the next delivery's): each statement's rows in order."""
    delete = "DELETE FROM notifications WHERE id = ?"
    with db.write() as conn:
        conn.execute(_INSERT, ("x", "{}"))
        conn.execute(_INSERT, ("y", "{}"))
    with db.write():
        db.defer(_INSERT, ("a", "{}"))
        db.defer(delete, ("x",))
        db.defer(_INSERT, ("b", "{}"))
        db.defer(delete, ("y",))
        db.defer(_INSERT, ("c", "{}"))
    assert _ids(db) == ["a", "b", "c"]


def test_a_savepoint_rolled_back_drops_the_rows_deferred_inside_it(db: Database) -> None:
    with db.write():
        db.defer(_INSERT, ("kept", "{}"))
        with pytest.raises(RuntimeError), db.write():
            db.defer(_INSERT, ("dropped", "{}"))
            with db.write():  # a released inner savepoint goes with its outer one
                db.defer(_INSERT, ("dropped too", "{}"))
            raise RuntimeError("roll back this savepoint")
        with db.write():
            db.defer(_INSERT, ("after", "{}"))
    assert _ids(db) == ["kept", "after"]


def test_a_transaction_rolled_back_writes_none_of_its_deferred_rows(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write():
        db.defer(_INSERT, ("gone", "{}"))
        raise RuntimeError("roll back")
    with db.write():
        pass  # the next transaction does not inherit them
    assert _ids(db) == []


def test_a_deferred_row_that_fails_rolls_the_transaction_back(db: Database) -> None:
    with pytest.raises(Exception, match="UNIQUE"), db.write() as conn:
        conn.execute(_INSERT, ("written", "{}"))
        db.defer(_INSERT, ("dup", "{}"))
        db.defer(_INSERT, ("dup", "{}"))
    assert _ids(db) == []
    with db.write():  # the lock was released and no transaction was left open
        db.defer(_INSERT, ("next", "{}"))
    assert _ids(db) == ["next"]


def test_outside_a_transaction_a_deferred_row_is_written_at_once(db: Database) -> None:
    db.defer(_INSERT, ("now", "{}"))
    assert _ids(db) == ["now"]


def test_atomic_joins_only_a_joined_savepoint_directly_around_it(db: Database) -> None:
    """The engine's unit of writes and effects (`atomic`) is a savepoint of its own,
    except directly inside a `joined()` block: a failure there is left to the joined
    savepoint, which rolls back whole."""

    def rows(conn: sqlite3.Connection) -> list[str]:
        return [r[0] for r in conn.execute("SELECT id FROM notifications ORDER BY rowid")]

    with db.write() as conn:
        with pytest.raises(RuntimeError), db.write():  # not joined: atomic's own savepoint
            conn.execute(_INSERT, ("outer", "{}"))
            with pytest.raises(RuntimeError), db.atomic():
                conn.execute(_INSERT, ("inner", "{}"))
                raise RuntimeError("roll back the atomic unit only")
            assert rows(conn) == ["outer"]
            raise RuntimeError("and now the outer savepoint")
        with pytest.raises(RuntimeError), db.write(), db.joined():  # a delivery's savepoint
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            with db.atomic():
                conn.execute(_INSERT, ("joined", "{}"))
            conn.set_trace_callback(None)
            assert not [s for s in statements if "SAVEPOINT" in s.upper()]
            with db.write():  # one level deeper: atomic has a savepoint of its own again
                conn.execute(_INSERT, ("deeper", "{}"))
                with pytest.raises(RuntimeError), db.atomic():
                    conn.execute(_INSERT, ("deepest", "{}"))
                    raise RuntimeError("roll back the atomic unit only")
            assert rows(conn) == ["joined", "deeper"]
            raise RuntimeError("the joined savepoint rolls back all of it")
        with db.atomic():  # after the joined block: its own savepoint again
            conn.execute(_INSERT, ("after", "{}"))
        assert rows(conn) == ["after"]
    assert _ids(db) == ["after"]
