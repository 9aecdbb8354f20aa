"""Several operations on one item inside one transaction, on the local stores.

The engine commits a handler's writes as one transaction, and a handler may touch an item
twice (create it, then update it): the later operation must see the earlier one's result,
and the conditions are checked against it. (DynamoDB refuses two operations on one item
in a transaction outright; its store says so, see tests/aws/test_dynamodb_store.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.core.ports import Put, Store, Update
from tests.contract.test_store_contract import FACTORIES


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return FACTORIES[request.param](tmp_path)


def test_a_later_operation_sees_the_earlier_one_on_the_same_item(store: Store) -> None:
    assert store.transact([Put("inventory", "A", {"available": 1}),
                           Update("inventory", "A", add={"available": -1},
                                  require_min={"available": 1})]) is True
    assert store.get("inventory", "A") == {"available": 0}


def test_a_condition_on_a_staged_item_is_checked_against_the_staged_value(
        store: Store) -> None:
    store.transact([Put("inventory", "A", {"available": 5})])
    assert store.transact([Update("inventory", "A", add={"available": -4}),
                           Update("inventory", "A", add={"available": -2},
                                  require_min={"available": 2})]) is False
    assert store.get("inventory", "A") == {"available": 5}  # nothing of it applied
