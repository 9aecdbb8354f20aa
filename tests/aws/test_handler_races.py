"""The handler races (`tests/contract/races.py`) on DynamoDB (moto).

DynamoDB has no transaction spanning the handler's writes and its effects: the record is
written with the writes (TransactWriteItems, `attribute_not_exists` on the record), the
effects follow, so the store's native conditions alone must keep every race right.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from adapters.aws.dynamodb_store import DynamoDBStore
from adapters.aws.topology import TableSpec
from handlers.app import APP
from tests.aws.test_dynamodb_store import _AtomicWrites
from tests.contract.races import SCENARIOS


@pytest.fixture
def dynamodb_store(aws: None) -> Iterator[DynamoDBStore]:
    client = boto3.resource("dynamodb").meta.client
    for table in sorted({*APP.tables, "processed"}):
        client.create_table(**TableSpec(table).create_table_kwargs(f"t-{table}"))
    # Each write call applied whole, as DynamoDB does (see test_dynamodb_store); the
    # racers still interleave between their reads and their conditional writes.
    yield DynamoDBStore(_AtomicWrites(client), lambda logical: f"t-{logical}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_race_on_dynamodb(scenario: str, dynamodb_store: DynamoDBStore) -> None:
    SCENARIOS[scenario](dynamodb_store)
