"""The handler races (`tests/contract/races.py`) on the Firestore emulator.

Firestore's store re-reads and checks every condition inside a transaction, and the
emulator serialises contending transactions as Firestore does, so the races meet the
real conditional-write path. Only the emulators are started (not the functions and
workflows of the `gcp` fixture): the races need a store, nothing else. Ids are unique
per run, so one emulator serves every scenario.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.races import SCENARIOS
from tests.gcp.conftest import PROJECT, Processes, start_emulators

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def firestore_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base: Path = tmp_path_factory.mktemp("races-gcp")
    procs = Processes(base)
    try:
        _, firestore_host = start_emulators(procs)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)
            patch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
            from google.cloud import firestore

            from adapters.gcp.firestore_store import FirestoreStore

            yield FirestoreStore(firestore.Client(project=PROJECT))
    finally:
        procs.stop_all()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_race_on_firestore(scenario: str, firestore_store: Any) -> None:
    SCENARIOS[scenario](firestore_store)
