"""One contract for the Store port, run against every implementation.

The engine's exactly-once guarantee rests on these semantics (conditional puts, guarded
updates, all-or-nothing transactions), so every backend's store must pass all of them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.local.database import Database
from adapters.local.sqlite_store import SQLiteStore
from adapters.memory import MemoryStore
from handlers.core.errors import TransientError
from handlers.core.ports import Put, Store, Update

#: Retries a caller makes on TransientError before the test calls it a livelock.
_CALLER_RETRIES = 50

StoreFactory = Callable[[Path], Store]
FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(Database(tmp / "store.db")),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield FACTORIES[request.param](tmp_path)


def test_get_of_a_missing_item_is_none(store: Store) -> None:
    assert store.get("orders", "nope") is None


def test_put_if_absent_writes_once(store: Store) -> None:
    assert store.put_if_absent("orders", "o1", {"status": "pending", "n": 1}) is True
    assert store.put_if_absent("orders", "o1", {"status": "other", "n": 2}) is False
    assert store.get("orders", "o1") == {"status": "pending", "n": 1}


def test_tables_are_separate_namespaces(store: Store) -> None:
    store.put_if_absent("orders", "k", {"a": 1})
    assert store.put_if_absent("inventory", "k", {"b": 2}) is True
    assert store.get("orders", "k") == {"a": 1} and store.get("inventory", "k") == {"b": 2}


def test_unconditional_put_overwrites(store: Store) -> None:
    store.put_if_absent("orders", "o1", {"v": 1})
    assert store.transact([Put("orders", "o1", {"v": 2}, if_absent=False)]) is True
    assert store.get("orders", "o1") == {"v": 2}


def test_values_round_trip_with_their_types(store: Store) -> None:
    item = {"int": 12345678901234, "float": 2.5, "neg": -3, "bool": True, "none": None,
            "text": "ünïcode ✓", "list": [1, "two", {"three": 3}], "map": {"a": {"b": [None]}},
            "empty_list": [], "empty_map": {}}
    store.put_if_absent("orders", "types", item)
    assert store.get("orders", "types") == item


def test_update_adds_to_missing_fields_and_creates_the_item(store: Store) -> None:
    assert store.transact([Update("inventory", "A", set={"item_id": "A"},
                                  add={"available": 5})]) is True
    assert store.transact([Update("inventory", "A", add={"available": 2})]) is True
    assert store.get("inventory", "A") == {"item_id": "A", "available": 7}


def test_update_with_must_exist_refuses_a_missing_item(store: Store) -> None:
    assert store.transact([Update("inventory", "ghost", add={"available": 1},
                                  must_exist=True)]) is False
    assert store.get("inventory", "ghost") is None


def test_expect_guards_on_equality_and_absence(store: Store) -> None:
    store.put_if_absent("orders", "o1", {"status": "pending"})
    assert store.transact([Update("orders", "o1", set={"status": "completed"},
                                  expect={"status": "cancelled"})]) is False
    assert store.transact([Update("orders", "o1", set={"reason": "x"},
                                  expect={"reason": None})]) is True
    assert store.transact([Update("orders", "o1", set={"status": "completed"},
                                  expect={"status": "pending"})]) is True
    assert store.get("orders", "o1") == {"status": "completed", "reason": "x"}


def test_require_min_keeps_stock_from_going_negative(store: Store) -> None:
    store.transact([Update("inventory", "A", add={"available": 3})])
    assert store.transact([Update("inventory", "A", add={"available": -4},
                                  require_min={"available": 4})]) is False
    assert store.transact([Update("inventory", "A", add={"available": -3},
                                  require_min={"available": 3})]) is True
    assert store.get("inventory", "A")["available"] == 0


def test_transaction_is_all_or_nothing(store: Store) -> None:
    store.transact([Update("inventory", "A", add={"available": 5}),
                    Update("inventory", "B", add={"available": 1})])
    ok = store.transact([
        Update("inventory", "A", add={"available": -2}, require_min={"available": 2}),
        Update("inventory", "B", add={"available": -2}, require_min={"available": 2}),
        Put("processed", "rec", {"status": "committed"}),
    ])
    assert ok is False
    assert store.get("inventory", "A")["available"] == 5
    assert store.get("inventory", "B")["available"] == 1
    assert store.get("processed", "rec") is None


def test_transaction_applies_every_op(store: Store) -> None:
    assert store.transact([
        Put("orders", "o1", {"status": "pending"}),
        Update("inventory", "A", add={"available": 4}),
        Put("processed", "rec", {"status": "committed"}),
    ]) is True
    assert store.get("orders", "o1") == {"status": "pending"}
    assert store.get("inventory", "A") == {"available": 4}
    assert store.get("processed", "rec") == {"status": "committed"}


def test_a_duplicate_record_fails_the_whole_transaction(store: Store) -> None:
    store.put_if_absent("processed", "rec", {"status": "done"})
    assert store.transact([Update("inventory", "A", add={"available": 1}),
                           Put("processed", "rec", {"status": "committed"})]) is False
    assert store.get("inventory", "A") is None


def test_concurrent_put_if_absent_has_exactly_one_winner(store: Store) -> None:
    wins: list[bool] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        result = store.put_if_absent("processed", "same", {"by": n})
        with lock:
            wins.append(result)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_concurrent_guarded_decrements_never_overdraw(store: Store) -> None:
    """12 buyers, 5 units: exactly 5 succeed and stock ends at 0, never below.

    A store may surface contention as `TransientError` (Firestore does, once its own
    bounded retries are spent); the caller then retries, as every runtime does by
    redelivering. What may never happen is an overdraw, a lost unit, or a caller that
    cannot get an answer within a bounded number of retries.
    """
    store.transact([Update("inventory", "A", add={"available": 5})])
    results: list[bool] = []
    contended: list[int] = []
    lock = threading.Lock()

    # No barrier to line the threads up: moto's DynamoDB applies conditional updates from
    # threads that arrive at the same instant without isolation (6 of 5 units sold), a
    # stand-in artefact that says nothing about DynamoDB itself.
    def take() -> None:
        for attempt in range(_CALLER_RETRIES):
            try:
                ok = store.transact([Update("inventory", "A", add={"available": -1},
                                            require_min={"available": 1})])
            except TransientError:
                time.sleep(random.uniform(0, 0.05 * min(attempt + 1, 8)))
                continue
            with lock:
                results.append(ok)
                contended.append(attempt)
            return

    threads = [threading.Thread(target=take) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12, (f"{12 - len(results)} callers still contended after "
                                f"{_CALLER_RETRIES} retries")
    assert results.count(True) == 5
    assert store.get("inventory", "A")["available"] == 0
