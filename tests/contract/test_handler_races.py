"""The handler races (`races.py`) on the local stores: in-memory and SQLite.

SQLite runs as the local runtime wires it: the handler's writes, its idempotency record
and its effects in one database transaction (`Ports.atomic`). The same scenarios run on
DynamoDB (moto) in `tests/aws` and on the Firestore emulator in `tests/gcp`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.local.database import Database
from adapters.local.sqlite_store import SQLiteStore
from adapters.memory import MemoryStore
from tests.contract.races import SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_race_on_memory(scenario: str) -> None:
    SCENARIOS[scenario](MemoryStore())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_race_on_sqlite(scenario: str, tmp_path: Path) -> None:
    db = Database(tmp_path / "races.db")
    try:
        SCENARIOS[scenario](SQLiteStore(db), db.write)
    finally:
        db.close()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_race_on_sqlite_without_a_shared_transaction(scenario: str, tmp_path: Path) -> None:
    """The store's own conditions, with the record and effects committed apart (as on
    the clouds): the conditions alone must hold the line."""
    db = Database(tmp_path / "races.db")
    run: Callable[..., None] = SCENARIOS[scenario]
    try:
        run(SQLiteStore(db))
    finally:
        db.close()
