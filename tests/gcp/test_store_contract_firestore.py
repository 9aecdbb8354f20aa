"""The shared Store contract (`tests/contract/test_store_contract.py`) on the Firestore emulator.

Every contract test is collected here under its own name and run against `FirestoreStore`,
so Firestore is held to exactly the semantics the memory, SQLite and DynamoDB stores have.
Each test gets a project of its own on the session's emulator (the emulator keeps one
database per project id), so the contract's fixed keys ("o1", "A") never meet another
test's documents and nothing needs clearing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import tests.contract.test_store_contract as contract
from adapters.gcp.firestore_store import FirestoreStore
from handlers.core.errors import TransientError
from handlers.core.ports import Update
from tests.gcp.conftest import GcpEmulated

for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


@pytest.fixture
def store(gcp: GcpEmulated) -> Iterator[FirestoreStore]:
    from google.cloud import firestore

    client = firestore.Client(project=f"contract-{uuid.uuid4().hex[:12]}")
    yield FirestoreStore(client)
    client.close()


def test_the_whole_contract_is_collected() -> None:
    names = [n for n in dir(contract) if n.startswith("test_")]
    assert len(names) >= 10 and all(n in globals() for n in names)


class _Meddler:
    """A client whose batches let a rival writer change every document just before they
    commit: real contention on the emulator, on every attempt."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch(self) -> Any:
        real, meddler = self._client.batch(), self

        class Batch:
            def create(self, ref: Any, data: Any) -> None:
                real.create(ref, data)

            def update(self, ref: Any, fields: Any, option: Any = None) -> None:
                real.update(ref, fields, option=option)

            def commit(self) -> Any:
                meddler.commits += 1
                meddler._client.collection("inventory").document("A").update(
                    {"rival": meddler.commits})
                return real.commit()

        return Batch()


def test_contention_that_never_ends_is_a_transient_error_after_bounded_retries(
        gcp: GcpEmulated) -> None:
    from google.cloud import firestore

    client = firestore.Client(project=f"contract-{uuid.uuid4().hex[:12]}")
    client.collection("inventory").document("A").set({"available": 3})
    meddler = _Meddler(client)
    sleeps: list[float] = []
    store = FirestoreStore(meddler, max_attempts=4, sleep=sleeps.append)  # type: ignore[arg-type]
    with pytest.raises(TransientError, match=r"contention: \['inventory/A'\] changed under "
                                             r"4 attempts"):
        store.transact([Update("inventory", "A", add={"available": -1},
                               require_min={"available": 1})])
    assert meddler.commits == 4 and len(sleeps) == 3
    assert all(0 <= s <= 0.5 for s in sleeps)
    # Every attempt was refused whole: the rival's writes are there, the decrement is not.
    assert store.get("inventory", "A") == {"available": 3, "rival": 4}
    client.close()
