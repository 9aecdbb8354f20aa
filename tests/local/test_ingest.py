"""The broker's ingest: a whole request's events and queue rows in a few multi-row
statements, in request order, all or nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from adapters.local import broker
from adapters.local.runtime import Runtime
from handlers.app import APP
from handlers.catalog import CATALOG
from handlers.core import jsonformat
from handlers.core.events import Event
from tests.factories import order_created, restock


def _unrouted_type() -> str:
    return next(t.type for t in CATALOG if not APP.routes(t.type))


def _events(count: int) -> list[Event]:
    """Restocks (one consumer), orders (several) and an unrouted type, interleaved."""
    unrouted = _unrouted_type()
    made: list[Event] = []
    for i in range(count):
        if i % 3 == 0:
            made.append(restock(f"item-{i}", 1))
        elif i % 3 == 1:
            made.append(order_created(f"o{i}", [("A", 1, 1.0)]))
        else:
            made.append(Event.new(CATALOG[unrouted].source, unrouted, {"n": i}))
    return made


def test_a_batch_over_one_statement_keeps_request_order_and_every_route(
        runtime: Runtime) -> None:
    events = _events(2 * broker._ROWS_PER_INSERT + 17)  # three statements of events
    ids = runtime.ingest(events)
    assert ids == [e.id for e in events]
    logged = runtime.db.read("SELECT seq, id, body FROM events ORDER BY seq")
    assert [row[1] for row in logged] == ids
    seqs = [row[0] for row in logged]
    assert seqs == list(range(seqs[0], seqs[0] + len(events)))
    bodies = {seq: body for seq, _, body in logged}
    queued = runtime.db.read("SELECT consumer, event_seq, body FROM queue ORDER BY mid")
    expected = [(c.name, seq) for seq, event in zip(seqs, events, strict=True)
                for c in APP.routes(event.type)]
    assert [(c, s) for c, s, _ in queued] == expected
    assert all(body == bodies[seq] for _, seq, body in queued)
    # The body is the event as `jsonformat` writes it, with the traceparent ingest added.
    first = json.loads(logged[0][2])
    assert jsonformat.dumps(jsonformat.from_dict(first)) == logged[0][2]
    assert first["traceparent"]
    unrouted = [r for r in runtime.timeline() if r["outcome"] == "unrouted"]
    assert [r["event_id"] for r in unrouted] == [e.id for e in events
                                                 if not APP.routes(e.type)]


def test_numbers_go_on_after_the_largest_ever_given(runtime: Runtime) -> None:
    runtime.ingest(_events(5))
    last = runtime.db.read("SELECT max(seq) FROM events")[0][0]
    with runtime.db.write() as conn:  # rows gone (pruned): their numbers are not reused
        conn.execute("DELETE FROM queue")
        conn.execute("DELETE FROM events")
    runtime.ingest(_events(3))
    assert [r[0] for r in runtime.db.read("SELECT seq FROM events ORDER BY seq")] == [
        last + 1, last + 2, last + 3]
    # ...and a row numbered by SQLite itself afterwards comes after ingest's.
    with runtime.db.write() as conn:
        seq = conn.execute("INSERT INTO events (id, source, type, body, accepted_at, origin)"
                           " VALUES ('x', 's', 't', '{}', 0, 'test')").lastrowid
    assert seq == last + 4


def test_a_failed_statement_writes_nothing_of_the_batch(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.ingest([restock("A", 1)])
    before = runtime.db.read("SELECT (SELECT count(*) FROM events), "
                             "(SELECT count(*) FROM queue)")
    monkeypatch.setattr(broker, "_QUEUE_INSERT", ("INSERT INTO no_such_table (a, b, c, d, e)",
                                                  5))
    with pytest.raises(sqlite3.OperationalError):
        runtime.ingest(_events(2 * broker._ROWS_PER_INSERT))
    assert runtime.db.read("SELECT (SELECT count(*) FROM events), "
                           "(SELECT count(*) FROM queue)") == before
    monkeypatch.undo()
    runtime.ingest([restock("B", 1)])  # the write lock was released with the rollback
    assert runtime.db.read("SELECT count(*) FROM events")[0][0] == before[0][0] + 1


def test_statements_stay_within_the_parameters_sqlite_binds(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build binding 999 parameters a statement (SQLite before 3.32) gets more, smaller
    statements, and the same rows."""
    monkeypatch.setattr(broker, "_variable_limit", lambda conn: 999)
    events = _events(broker._ROWS_PER_INSERT + 3)
    runtime.ingest(events)
    assert [r[0] for r in runtime.db.read("SELECT id FROM events ORDER BY seq")] == [
        e.id for e in events]
    assert runtime.db.read("SELECT count(*) FROM queue")[0][0] == sum(
        len(APP.routes(e.type)) for e in events)
