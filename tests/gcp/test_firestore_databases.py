"""The Store port over several named Firestore databases, on the emulator.

The stack splits the app's tables into databases so that each function's grants name only
its own data (`adapters.gcp.topology.DataLayout`). These tests check what the split relies
on: each table is read and written in its own database, an idempotency record commits in
the same database as the writes it covers (a saga step's with the step's tables), and a
transaction that would span databases is refused, never half-applied.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from adapters.gcp.firestore_store import FirestoreDatabases, FirestoreStore
from adapters.gcp.settings import Settings
from adapters.gcp.topology import data_layout
from handlers.app import APP
from handlers.core.engine import PROCESSED, step_key
from handlers.core.errors import PermanentError
from handlers.core.ports import Put, Update
from tests.gcp.conftest import PROJECT, GcpEmulated

PREFIX = f"t{uuid.uuid4().hex[:8]}"


def _client(database: str) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=PROJECT, database=database)


@pytest.fixture(scope="module")
def saga_store(gcp: GcpEmulated) -> FirestoreDatabases:
    """What the saga step function opens: the databases of orders, inventory, payments."""
    saga = data_layout(APP, PREFIX).saga
    return FirestoreDatabases({db: FirestoreStore(_client(db)) for db in saga.databases},
                              saga.home, saga.tables, saga.steps)


def _raw(database: str, table: str, key: str) -> dict[str, Any] | None:
    snapshot = _client(database).collection(table).document(key).get()
    return snapshot.to_dict() if snapshot.exists else None


def test_each_table_lives_in_its_own_database(saga_store: FirestoreDatabases) -> None:
    layout = data_layout(APP, PREFIX)
    item = f"i-{uuid.uuid4().hex}"
    assert saga_store.put_if_absent("inventory", item, {"available": 3})
    inventory_db = layout.table_databases()["inventory"]
    assert _raw(inventory_db, "inventory", item) == {"available": 3}
    assert _raw(layout.table_databases()["orders"], "inventory", item) is None
    assert saga_store.get("inventory", item) == {"available": 3}


def test_a_step_record_commits_with_the_step_s_tables(saga_store: FirestoreDatabases) -> None:
    layout = data_layout(APP, PREFIX)
    item, saga_id = f"i-{uuid.uuid4().hex}", f"s|{uuid.uuid4().hex}"  # '|' in a saga id
    saga_store.put_if_absent("inventory", item, {"available": 5})
    record = step_key(saga_id, "reserve_inventory", "action")
    assert saga_store.transact([
        Update("inventory", item, add={"available": -2}),
        Put(PROCESSED, record, {"status": "done"}, if_absent=True)])
    where = layout.saga.steps["reserve_inventory"]
    assert where == layout.table_databases()["inventory"]
    assert _raw(where, PROCESSED, record) == {"status": "done"}
    assert saga_store.get(PROCESSED, record) == {"status": "done"}
    # A payment step's record goes to the payments database, not the saga's home.
    payment = step_key(saga_id, "payment", "action")
    assert saga_store.put_if_absent(PROCESSED, payment, {"status": "committed"})
    assert _raw(layout.table_databases()["payments"], PROCESSED, payment) is not None
    assert _raw(layout.saga.home, PROCESSED, payment) is None


def test_a_transaction_spanning_databases_is_refused_whole(
        saga_store: FirestoreDatabases) -> None:
    order, item = f"o-{uuid.uuid4().hex}", f"i-{uuid.uuid4().hex}"
    with pytest.raises(PermanentError, match=r"cannot span Firestore databases: "
                                             r"inventory \(.*\), orders \(.*\)"):
        saga_store.transact([Put("orders", order, {"status": "pending"}),
                             Put("inventory", item, {"available": 1})])
    assert saga_store.get("orders", order) is None
    assert saga_store.get("inventory", item) is None


def test_a_client_is_needed_for_every_database_named() -> None:
    with pytest.raises(ValueError, match=r"no Firestore client for database\(s\) \['b'\]"):
        FirestoreDatabases({}, "b", {}, {})


@pytest.mark.parametrize(("value", "problem"), [
    ("[1]", "SWITCHYARD_TABLE_DATABASES must be a JSON object of strings"),
    ("{nope", "SWITCHYARD_TABLE_DATABASES is not JSON"),
])
def test_malformed_database_settings_are_named(value: str, problem: str) -> None:
    with pytest.raises(RuntimeError, match=problem):
        Settings.from_env({"SWITCHYARD_PROJECT": "p", "SWITCHYARD_TABLE_DATABASES": value})


def test_database_settings_parse() -> None:
    settings = Settings.from_env({
        "SWITCHYARD_PROJECT": "p", "SWITCHYARD_DATABASE": "home",
        "SWITCHYARD_TABLE_DATABASES": '{"orders":"a"}',
        "SWITCHYARD_STEP_DATABASES": '{"ship":"a"}'})
    assert (settings.database, dict(settings.table_databases),
            dict(settings.step_databases)) == ("home", {"orders": "a"}, {"ship": "a"})


@pytest.mark.parametrize(("key", "step"), [
    (step_key("o-1", "ship", "action"), "ship"),
    (step_key("a|b", "reserve_inventory", "compensate"), "reserve_inventory"),
    ("orders|orders|evt-1", None),
    ("step|", None),
])
def test_the_step_is_read_back_from_its_key(key: str, step: str | None) -> None:
    from handlers.core.engine import step_of_key

    assert step_of_key(key) == step
