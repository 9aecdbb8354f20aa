"""The embedded runtime on a real SQLite file: routing, retries, dead letters, redrive."""

from __future__ import annotations

import sqlite3

from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.app import APP
from tests.eventually import eventually
from tests.factories import order_created, restock, workflow_triggered


def _attempts(runtime: Runtime, event_id: str, consumer: str) -> list[str]:
    return [r["outcome"] for r in runtime.timeline()
            if r["event_id"] == event_id and r["consumer"] == consumer]


def test_queues_are_generated_from_the_routing_table(runtime: Runtime) -> None:
    created = order_created("o1", [("A", 1, 1.0)])
    runtime.ingest([restock("A", 1), created])
    rows = runtime.db.read("SELECT consumer FROM queue ORDER BY mid")
    assert [r[0] for r in rows] == ["inventory", *[c.name for c in APP.routes(created.type)]]
    assert "orders" in [c.name for c in APP.routes(created.type)]


def test_full_flow_and_duplicate_delivery(runtime: Runtime) -> None:
    created = order_created("o1", [("A", 2, 10.0)])
    runtime.ingest([restock("A", 5)])
    runtime.ingest([created, created])  # at-least-once: delivered twice
    runtime.run_until_idle()
    assert runtime.order("o1")["status"] == "completed"
    assert runtime.available("A") == 3
    assert sorted(_attempts(runtime, created.id, "orders")) == ["duplicate", "processed"]
    assert runtime.counts()["notifications"] == 1


def test_poison_message_gets_exactly_max_deliveries_then_dlq(tmp_path) -> None:
    rt = Runtime(tmp_path / "p.db", settings=RuntimeSettings(max_deliveries=4,
                                                             retry_scale=0.001))
    try:
        poison = workflow_triggered("never-created")  # TransientError on every delivery
        healthy = restock("A", 2)
        rt.ingest([poison, healthy])
        rt.run_until_idle()
        assert _attempts(rt, poison.id, "orders") == ["retry"] * 3 + ["dead-lettered"]
        (entry,) = rt.dlq()
        assert entry["attempts"] == 4 and entry["consumer"] == "orders"
        assert "failed 4 deliveries (maxDeliveries=4)" in entry["reason"]
        assert "not known yet" in entry["reason"]
        assert rt.available("A") == 2  # the rest of the batch is unaffected
    finally:
        rt.close()


def test_permanent_error_is_dead_lettered_at_once(runtime: Runtime) -> None:
    bad = order_created("o1", [("A", 1, 1.0)])
    bad = type(bad)(id=bad.id, source=bad.source, type=bad.type, data={"order_id": "o1"})
    runtime.ingest([bad])
    runtime.run_until_idle()
    assert _attempts(runtime, bad.id, "orders") == ["dead-lettered"]
    (entry,) = runtime.dlq("orders")
    assert entry["attempts"] == 1
    assert "data.customer_id is required" in entry["reason"]
    assert entry["event"]["id"] == bad.id


def test_redrive_after_fix_processes_once_and_is_idempotent(runtime: Runtime) -> None:
    early = workflow_triggered("o7")
    runtime.ingest([early])
    runtime.run_until_idle()
    assert len(runtime.dlq()) == 1
    runtime.ingest([restock("A", 1), order_created("o7", [("A", 1, 1.0)])])
    runtime.run_until_idle()
    assert len(runtime.redrive()) == 1
    assert runtime.redrive() == []  # a second redrive finds nothing left to redrive
    runtime.run_until_idle()
    assert runtime.dlq() == []
    assert _attempts(runtime, early.id, "orders")[-1] == "processed"
    assert runtime.order("o7")["status"] == "completed"
    starts = [r for r in runtime.timeline() if r["type"] == "saga.start"]
    assert [r["outcome"] for r in starts] == ["started", "no-op"]


def test_delivery_abandoned_by_a_dead_worker_is_redelivered(tmp_path) -> None:
    rt = Runtime(tmp_path / "v.db", settings=RuntimeSettings(visibility_timeout=0.05,
                                                             retry_scale=0.001))
    try:
        event = restock("A", 3)
        rt.ingest([event])
        # Claim the message as a worker would, then "die" before finishing it.
        with rt.db.write() as conn:
            conn.execute("UPDATE queue SET attempts = 1, visible_at = visible_at + 0.05")
        rt.run_until_idle()
        assert rt.available("A") == 3
        assert _attempts(rt, event.id, "inventory") == ["processed"]
    finally:
        rt.close()


def test_max_deliveries_counts_receives_that_never_finished(tmp_path) -> None:
    rt = Runtime(tmp_path / "m.db", settings=RuntimeSettings(max_deliveries=2))
    try:
        event = restock("A", 3)
        rt.ingest([event])
        with rt.db.write() as conn:
            conn.execute("UPDATE queue SET attempts = 2")
        rt.run_until_idle()
        (entry,) = rt.dlq()
        assert "exceeded maxDeliveries=2" in entry["reason"]
        assert "worker stopped mid-delivery" in entry["reason"]
    finally:
        rt.close()


def test_workers_in_threads_process_everything(tmp_path) -> None:
    rt = Runtime(tmp_path / "w.db", settings=RuntimeSettings(retry_scale=0.001,
                                                             poll_interval=0.01))
    try:
        rt.ingest([restock("A", 50)])
        rt.run_until_idle()  # stock first: the orders below must not race their restock
        rt.ingest([order_created(f"o{n}", [("A", 1, 1.0)]) for n in range(30)])
        rt.start(workers=4)
        eventually(lambda: rt.counts()["queued"] == 0 and rt.counts()["sagas_active"] == 0,
                   "every order's saga to finish")
        rt.stop()
        statuses = {o["status"] for o in rt.orders()}
        assert statuses == {"completed"} and len(rt.orders()) == 30
        assert rt.available("A") == 20
    finally:
        rt.close()


def test_database_is_sqlite_wal(runtime: Runtime) -> None:
    conn = sqlite3.connect(runtime.db.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_savepoint_larger_than_the_journal_spill_rolls_back_from_memory(tmp_path) -> None:
    """A savepoint's undo (its statement journal) is held in memory, not in a temporary
    file once past 64 KiB: one that changed megabytes still rolls back exactly."""
    from adapters.local.database import Database

    db = Database(tmp_path / "big.db")
    assert db.connection().execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    big = "x" * 4000
    with db.write() as conn:
        conn.execute("INSERT INTO notifications VALUES ('kept', '{}', 0)")
        try:
            with db.write() as inner:
                inner.executemany("INSERT INTO notifications VALUES (?, ?, 0)",
                                  [(f"n{i}", big) for i in range(500)])
                inner.execute("UPDATE notifications SET message = ? WHERE id = 'kept'", (big,))
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
    assert db.read("SELECT id, message FROM notifications") == [("kept", "{}")]


def test_nested_writes_are_savepoints_of_one_commit(tmp_path) -> None:
    from adapters.local.database import Database

    db = Database(tmp_path / "n.db")
    with db.write() as conn:
        conn.execute("INSERT INTO notifications VALUES ('kept', '{}', 0)")
        try:
            with db.write() as inner:
                inner.execute("INSERT INTO notifications VALUES ('undone', '{}', 0)")
                raise RuntimeError("inner block fails")
        except RuntimeError:
            pass
        # Another connection sees nothing until the outer transaction commits.
        other = sqlite3.connect(tmp_path / "n.db")
        assert other.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 0
    assert [r[0] for r in db.read("SELECT id FROM notifications")] == ["kept"]
    assert other.execute("SELECT id FROM notifications").fetchall() == [("kept",)]
    other.close()


def test_a_failing_effect_undoes_the_handlers_writes_and_is_retried(tmp_path) -> None:
    rt = Runtime(tmp_path / "e.db", settings=RuntimeSettings(retry_scale=0.001))
    try:
        real_notify, calls = rt.ports.notifier.notify, []

        def flaky_notify(notification_id: str, message: dict) -> None:
            calls.append(notification_id)
            if len(calls) == 1:
                raise ConnectionError("notifier unavailable")
            real_notify(notification_id, message)

        rt.ports.notifier.notify = flaky_notify  # type: ignore[method-assign]
        rt.ingest([restock("A", 5), order_created("o1", [("A", 1, 1.0)])])
        rt.run_until_idle()
        assert rt.order("o1")["status"] == "completed"
        assert len(calls) == 2 and calls[0] == calls[1]  # same notification id, once sent
        assert rt.counts()["notifications"] == 1
        outcomes = [r["outcome"] for r in rt.timeline() if r["consumer"] == "notifications"]
        assert outcomes == ["retry", "processed"]
    finally:
        rt.close()


def test_a_reader_sees_all_tables_or_none_while_a_writer_creates_them(tmp_path) -> None:
    """A read-only command opening the file while `serve` creates it (here: in the middle
    of the writer's schema, after its first table) gets a clear error, never a schema
    with some tables missing."""
    import pytest

    from adapters.local.database import Database, DatabaseMissing

    path = tmp_path / "starting.db"
    seen: list[str] = []

    class Writer(Database):
        def connection(self) -> sqlite3.Connection:
            conn = super().connection()
            conn.set_authorizer(self._look)
            return conn

        def _look(self, action: int, name: str | None, *_: object) -> int:
            if action == sqlite3.SQLITE_CREATE_TABLE and name == "events" and not seen:
                try:
                    Runtime(path, create=False, read_only=True).close()
                    seen.append("opened")
                except DatabaseMissing as error:
                    seen.append(str(error))
            return sqlite3.SQLITE_OK

    Writer(path).close()
    assert len(seen) == 1 and "has no tables" in seen[0], seen
    Runtime(path, create=False, read_only=True).close()  # once created, it opens
    path.with_name("empty.db").touch()
    with pytest.raises(DatabaseMissing, match="has no tables: an empty file"):
        Runtime(path.with_name("empty.db"), create=False, read_only=True)
