"""The Store port on DynamoDB: conditional puts and updates, transactions for several ops.

Every condition of `ports.Put`/`ports.Update` is expressed natively (condition and update
expressions), so DynamoDB checks it atomically; it must mean exactly what `apply_op` means
for the other stores, which the shared contract tests check. Vendor errors are translated
here: a failed condition is `False`, throttling and conflicts are `TransientError`.
Numbers cross the boundary as `Decimal` (DynamoDB's only number type) and come back as
`int` or `float`, so handlers never see a `Decimal`. DynamoDB normalises numbers (20.0 is
read back as 20), so an integral float is stored as `{"__float__": "20.0"}`: the stored
effects of a handler then re-publish byte-identical events after a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from handlers.core.errors import TransientError
from handlers.core.ports import Item, Op, Put, Update

#: Every table's partition key attribute (the store's item key). Defined here rather than
#: in `topology`, which the Lambda entry need not import (its dataclasses cost a cold start).
KEY_ATTRIBUTE: Final = "pk"
_FLOAT: Final = "__float__"
#: DynamoDB's TransactWriteItems limit.
MAX_TRANSACT_ITEMS: Final = 100
_TRANSIENT_CODES: Final = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
    "TransactionConflictException",
})
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def to_dynamo(value: Any) -> Any:
    """A handler value as DynamoDB stores it: floats as Decimal (exactly as printed)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, Decimal)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
        if value.is_integer():
            return {_FLOAT: repr(value)}
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def from_dynamo(value: Any) -> Any:
    """Back to plain Python: an integral Decimal written as such becomes an int."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        if len(value) == 1 and isinstance(value.get(_FLOAT), str):
            return float(value[_FLOAT])
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {from_dynamo(v) for v in value}
    if hasattr(value, "value") and type(value).__name__ == "Binary":
        return bytes(value.value)
    return value


class _Expression:
    """Accumulates placeholder names/values so user field names never clash with DynamoDB
    reserved words (`status`, `reason`, ...)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = to_dynamo(value)
        return placeholder


def _put_request(table: str, op: Put) -> dict[str, Any]:
    request: dict[str, Any] = {"TableName": table,
                               "Item": {**to_dynamo(dict(op.item)), KEY_ATTRIBUTE: op.key}}
    if op.if_absent:
        request["ConditionExpression"] = "attribute_not_exists(#k)"
        request["ExpressionAttributeNames"] = {"#k": KEY_ATTRIBUTE}
    return request


def _update_request(table: str, op: Update) -> dict[str, Any]:
    expr = _Expression()
    conditions: list[str] = []
    if op.must_exist:
        conditions.append(f"attribute_exists({expr.name(KEY_ATTRIBUTE)})")
    for attribute, expected in op.expect.items():
        n = expr.name(attribute)
        if expected is None:  # apply_op: absent or null
            conditions.append(f"(attribute_not_exists({n}) OR attribute_type({n}, "
                              f"{expr.value('NULL')}))")
        else:
            conditions.append(f"{n} = {expr.value(expected)}")
    for attribute, minimum in op.require_min.items():
        n = expr.name(attribute)
        check = f"{n} >= {expr.value(minimum)}"
        # apply_op counts a missing field as 0.
        conditions.append(f"(attribute_not_exists({n}) OR {check})" if minimum <= 0 else check)
    sets = [f"{expr.name(k)} = {expr.value(v)}" for k, v in op.set.items()]
    adds = [f"{expr.name(k)} {expr.value(v)}" for k, v in op.add.items()]
    clauses = []
    if sets:
        clauses.append("SET " + ", ".join(sets))
    if adds:
        clauses.append("ADD " + ", ".join(adds))
    if not clauses:  # a pure condition check still has to write something to be atomic
        clauses.append(f"SET {expr.name(KEY_ATTRIBUTE)} = {expr.value(op.key)}")
    request: dict[str, Any] = {
        "TableName": table, "Key": {KEY_ATTRIBUTE: op.key},
        "UpdateExpression": " ".join(clauses), "ExpressionAttributeNames": expr.names,
    }
    if expr.values:
        request["ExpressionAttributeValues"] = expr.values
    if conditions:
        request["ConditionExpression"] = " AND ".join(conditions)
    return request


def _error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        return response.get("Error", {}).get("Code")
    return None


class DynamoDBStore:
    """`Store` over one DynamoDB table per logical table (keyed by `pk`)."""

    def __init__(self, client: Any, table_name: Callable[[str], str]) -> None:
        """`client` is a boto3 DynamoDB *resource's* `meta.client`-compatible client whose
        serializer handles Python values (boto3's `resource("dynamodb").meta.client`).
        `table_name` maps a logical table to its physical name."""
        self._client = client
        self._table = table_name

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        try:
            found = self._client.get_item(TableName=self._table(table),
                                          Key={KEY_ATTRIBUTE: key}, ConsistentRead=True)
        except Exception as error:
            raise self._translate(error) from error
        item = found.get("Item")
        if item is None:
            return None
        item = dict(item)
        item.pop(KEY_ATTRIBUTE, None)
        return from_dynamo(item)

    def put_if_absent(self, table: str, key: str, item: Item) -> bool:
        return self.transact([Put(table, key, item, if_absent=True)])

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item, page by page, consistently (audits; never on a per-event path)."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": self._table(table), "ConsistentRead": True}
        while True:
            try:
                page = self._client.scan(**request)
            except Exception as error:
                raise self._translate(error) from error
            for item in page.get("Items", []):
                item = dict(item)
                item.pop(KEY_ATTRIBUTE, None)
                items.append(from_dynamo(item))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transact(self, ops: Sequence[Op]) -> bool:
        if not ops:
            return True
        requests = [self._request(op) for op in ops]
        try:
            if len(requests) == 1:
                kind, request = requests[0]
                (self._client.put_item if kind == "Put" else self._client.update_item)(**request)
                return True
            self._check_transaction(ops)
            self._client.transact_write_items(
                TransactItems=[{kind: request} for kind, request in requests])
            return True
        except Exception as error:
            code = _error_code(error)
            if code == _CONDITION_FAILED:
                return False
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in
                           getattr(error, "response", {}).get("CancellationReasons", [])]
                if _CONDITION_FAILED.removesuffix("Exception") in reasons and \
                        not set(reasons) & {"TransactionConflict", "ThrottlingError"}:
                    return False
                raise TransientError(f"transaction cancelled: {reasons or error}") from error
            raise self._translate(error) from error

    def _request(self, op: Op) -> tuple[str, dict[str, Any]]:
        table = self._table(op.table)
        if isinstance(op, Put):
            return "Put", _put_request(table, op)
        return "Update", _update_request(table, op)

    @staticmethod
    def _check_transaction(ops: Sequence[Op]) -> None:
        if len(ops) > MAX_TRANSACT_ITEMS:
            raise ValueError(f"{len(ops)} writes in one transaction; DynamoDB takes at most "
                             f"{MAX_TRANSACT_ITEMS}")
        keys = [(op.table, op.key) for op in ops]
        repeated = sorted({f"{t}/{k}" for t, k in keys if keys.count((t, k)) > 1})
        if repeated:
            # DynamoDB refuses two operations on one item in a transaction: say so plainly.
            raise ValueError(f"one transaction writes {', '.join(repeated)} more than once; "
                             "DynamoDB allows one operation per item")

    @staticmethod
    def _translate(error: Exception) -> Exception:
        code = _error_code(error)
        if code in _TRANSIENT_CODES or code is None and _is_connection_error(error):
            return TransientError(f"DynamoDB {code or type(error).__name__}: {error}")
        return error


def _is_connection_error(error: Exception) -> bool:
    return type(error).__name__ in {"EndpointConnectionError", "ConnectTimeoutError",
                                    "ReadTimeoutError", "ConnectionClosedError"}
