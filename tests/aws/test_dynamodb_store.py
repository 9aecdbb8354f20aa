"""The DynamoDB store on moto: the shared Store contract, plus what is DynamoDB's own.

The contract's tests (`tests/contract/test_store_contract.py`) are imported and run here
against `DynamoDBStore`, so DynamoDB's native conditions are held to exactly the semantics
the memory and SQLite stores have. Then: Decimal never leaks, integral floats survive
DynamoDB's number normalisation, and vendor errors are translated at the boundary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

import tests.contract.test_store_contract as contract
from adapters.aws.dynamodb_store import DynamoDBStore, from_dynamo, to_dynamo
from adapters.aws.topology import TableSpec
from handlers.core.errors import TransientError
from handlers.core.ports import Op, Put, Update

TABLES = ("orders", "inventory", "payments", "processed")

# Every contract test, collected here under the same name, with the fixture below.
for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


class _AtomicWrites:
    """The client with each write call applied whole before the next: what DynamoDB
    guarantees for a conditional write or a transaction. moto, called from several threads
    at the same instant, interleaves them (about 1 run in 20 sold 6 of 5 units), which is a
    stand-in artefact and not a test of our conditions; the callers still interleave
    between calls, which is where our retries and conditions matter."""

    _WRITES = frozenset({"put_item", "update_item", "delete_item", "transact_write_items"})

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._WRITES:
            return attribute

        def write(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)
        return write


@pytest.fixture
def store(aws: None) -> Iterator[DynamoDBStore]:
    client = boto3.resource("dynamodb").meta.client
    for table in TABLES:
        client.create_table(**TableSpec(table).create_table_kwargs(f"t-{table}"))
    yield DynamoDBStore(_AtomicWrites(client), lambda logical: f"t-{logical}")


def test_the_whole_contract_is_collected() -> None:
    names = [n for n in dir(contract) if n.startswith("test_")]
    assert len(names) >= 10 and all(n in globals() for n in names)


def test_numbers_come_back_as_int_or_float_never_decimal(store: DynamoDBStore) -> None:
    item = {"whole": 20.0, "half": 10.5, "n": 7, "nested": {"total": 20.0, "xs": [1.0, 2, 2.25]}}
    store.put_if_absent("orders", "nums", item)
    got = store.get("orders", "nums")
    assert got == item
    assert repr(got) == repr(item)  # 20.0 stays a float, 7 an int

    def walk(value: Any) -> None:
        assert not isinstance(value, Decimal)
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        if isinstance(value, list):
            for v in value:
                walk(v)
    walk(got)


def test_the_key_attribute_is_not_part_of_the_item(store: DynamoDBStore) -> None:
    store.put_if_absent("orders", "k1", {"a": 1})
    assert store.get("orders", "k1") == {"a": 1}


def test_reserved_words_are_safe_field_names(store: DynamoDBStore) -> None:
    store.put_if_absent("orders", "o", {"status": "pending", "name": "x"})
    assert store.transact([Update("orders", "o", set={"status": "done", "size": 3},
                                  expect={"status": "pending"})])
    assert store.get("orders", "o") == {"status": "done", "name": "x", "size": 3}


def test_conditional_failure_is_false_and_writes_nothing(store: DynamoDBStore) -> None:
    store.put_if_absent("inventory", "A", {"available": 1})
    ops: list[Op] = [
        Update("inventory", "A", add={"available": -2}, require_min={"available": 2}),
        Put("processed", "rec", {"status": "committed"})]
    assert store.transact(ops) is False  # TransactionCanceled(ConditionalCheckFailed)
    assert store.get("processed", "rec") is None
    assert store.get("inventory", "A") == {"available": 1}


def test_two_ops_on_one_item_are_refused_clearly(store: DynamoDBStore) -> None:
    with pytest.raises(ValueError, match="one operation per item"):
        store.transact([Update("inventory", "A", add={"available": 1}),
                        Update("inventory", "A", add={"available": 1})])


def test_codec_round_trip() -> None:
    value = {"a": [1, 2.5, 3.0, {"b": None, "c": True}], "s": "x"}
    assert from_dynamo(to_dynamo(value)) == value
    with pytest.raises(ValueError):
        to_dynamo(float("nan"))


class _Failing:
    """A client whose every call fails with one error code."""

    def __init__(self, code: str, reasons: list[str] | None = None) -> None:
        self.code, self.reasons = code, reasons

    def _fail(self, **_: Any) -> Any:
        response: dict[str, Any] = {"Error": {"Code": self.code, "Message": "boom"}}
        if self.reasons is not None:
            response["CancellationReasons"] = [{"Code": r} for r in self.reasons]
        raise ClientError(response, "Op")

    get_item = put_item = update_item = transact_write_items = _fail


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException",
                                  "ThrottlingException", "InternalServerError"])
def test_throttling_and_outages_are_transient(code: str) -> None:
    store = DynamoDBStore(_Failing(code), str)
    with pytest.raises(TransientError):
        store.get("orders", "x")
    with pytest.raises(TransientError):
        store.put_if_absent("orders", "x", {})


def test_a_cancelled_transaction_is_false_only_for_a_failed_condition() -> None:
    ops = [Put("orders", "a", {}), Put("orders", "b", {})]
    failed = DynamoDBStore(_Failing("TransactionCanceledException",
                                    ["None", "ConditionalCheckFailed"]), str)
    assert failed.transact(ops) is False
    conflict = DynamoDBStore(_Failing("TransactionCanceledException",
                                      ["None", "TransactionConflict"]), str)
    with pytest.raises(TransientError):
        conflict.transact(ops)


def test_other_errors_are_not_swallowed() -> None:
    store = DynamoDBStore(_Failing("ValidationException"), str)
    with pytest.raises(ClientError):
        store.put_if_absent("orders", "x", {})
