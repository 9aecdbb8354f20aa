"""The Store contract on the Firestore emulator, side by side with the in-memory fake.

The same assertions run against both, so Firestore means by every condition what every
other backend means (they share `apply_op`), and the Firestore-only parts (create()
conflicts, transaction contention, TTL field typing, document ids) are real.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from adapters.gcp.firestore_store import TTL_FIELD, doc_id
from adapters.memory import MemoryStore
from handlers.core.errors import TransientError
from handlers.core.ports import Put, Update
from tests.gcp.conftest import GcpEmulated


@pytest.fixture(params=["memory", "firestore"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        request.getfixturevalue("gcp")
        yield request.getfixturevalue("store")


def key() -> str:
    return f"k/{uuid.uuid4().hex}"  # '/' on purpose: Firestore ids cannot contain it


def test_get_put_if_absent_and_values_come_back_typed(any_store: Any) -> None:
    k = key()
    item = {"n": 3, "f": 1.5, "s": "x", "none": None, "list": [1, {"a": True}],
            "map": {"b": [2.25]}}
    assert any_store.get("things", k) is None
    assert any_store.put_if_absent("things", k, item) is True
    assert any_store.put_if_absent("things", k, {"other": 1}) is False
    got = any_store.get("things", k)
    assert got == item and type(got["n"]) is int and type(got["f"]) is float


def test_update_conditions(any_store: Any) -> None:
    k = key()
    assert any_store.transact([Update("stock", k, add={"n": 1}, must_exist=True)]) is False
    assert any_store.transact([Update("stock", k, set={"s": "a"}, add={"n": 5})]) is True
    assert any_store.transact([Update("stock", k, expect={"s": "b"}, set={"s": "c"})]) is False
    assert any_store.transact([Update("stock", k, require_min={"n": 6}, add={"n": -6})]) is False
    assert any_store.transact([Update("stock", k, require_min={"n": 5}, add={"n": -5},
                                      expect={"s": "a", "gone": None})]) is True
    assert any_store.get("stock", k) == {"s": "a", "n": 0}


def test_transactions_are_all_or_nothing(any_store: Any) -> None:
    a, b = key(), key()
    any_store.put_if_absent("stock", a, {"n": 1})
    ok = any_store.transact([Update("stock", a, add={"n": -1}, require_min={"n": 1}),
                             Update("stock", b, add={"n": -1}, require_min={"n": 1})])
    assert ok is False
    assert any_store.get("stock", a) == {"n": 1} and any_store.get("stock", b) is None
    assert any_store.transact([Update("stock", a, add={"n": 2}),
                               Put("log", b, {"by": a}), Update("stock", a, add={"n": 3})])
    assert any_store.get("stock", a) == {"n": 6} and any_store.get("log", b) == {"by": a}


def test_concurrent_creates_have_exactly_one_winner(any_store: Any) -> None:
    k = key()
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create(n: int) -> None:
        barrier.wait()
        results.append(any_store.put_if_absent("races", k, {"winner": n}))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_concurrent_reservations_never_oversell(any_store: Any) -> None:
    k = key()
    any_store.put_if_absent("stock", k, {"available": 2})
    won: list[bool] = []

    def reserve() -> None:
        # Like the engine and the platform: re-run on a failed condition, retry on
        # contention (a TransientError once Firestore's own retries are spent).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = any_store.get("stock", k)["available"]
            if current < 1:
                won.append(False)
                return
            try:
                if any_store.transact([Update("stock", k, add={"available": -1},
                                              require_min={"available": 1})]):
                    won.append(True)
                    return
            except TransientError:
                time.sleep(random.random() / 20)
        won.append(False)

    # Four buyers for two units (more threads only make the emulator's pessimistic
    # locks time out, which proves nothing more).
    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert won.count(True) == 2 and any_store.get("stock", k)["available"] == 0


def test_ttl_field_is_a_timestamp_in_firestore_and_epoch_seconds_to_callers(
        gcp: GcpEmulated, store: Any) -> None:
    from google.cloud import firestore

    k = key()
    store.put_if_absent("processed", k, {"status": "done", TTL_FIELD: 1_900_000_000})
    assert store.get("processed", k)[TTL_FIELD] == 1_900_000_000
    raw = firestore.Client(project="switchyard-emulated").collection("processed").document(
        doc_id(k)).get().to_dict()
    assert isinstance(raw[TTL_FIELD], datetime)  # what a TTL policy can act on


@pytest.mark.parametrize(("key_", "expected"), [
    ("a/b", "a%2Fb"), ("orders|src|id", "orders|src|id"), (".", "~."), ("..", "~.."),
    ("__x__", "~__x__"), ("step|order-1|payment|action", "step|order-1|payment|action")])
def test_document_ids(key_: str, expected: str) -> None:
    assert doc_id(key_) == expected
