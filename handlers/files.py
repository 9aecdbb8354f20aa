"""File processor: CSV uploads become catalog events, row by row.

Triggered by `storage.object.finalized` (whatever the cloud: adapters normalise S3 and
Cloud Storage notifications and the local uploads folder to that one type). Two kinds of
file are understood, told apart by their header row:

- inventory restocks: `item_id,quantity[,action]` -> one `Inventory Updated` per row
  (`action` is `restock` when absent, or `remove`);
- orders: `order_id,customer_id,item_id,quantity,price` -> one `Order Created` per
  order, its rows being the order's items.

Every row is validated; a valid row becomes an event whose id is derived from the file's
content hash and the row, so the same file processed twice (a redelivery, or the same
content uploaded again) produces the same ids and the consumers' idempotency makes the
second time a no-op. An invalid row becomes a `File Row Rejected` event that the
`upload-rejects` consumer parks in its dead-letter queue with the reason; the file's
report (table `files`) lists every problem. A file that cannot be read as a whole (not
UTF-8, not parseable as CSV, unknown header, too many rows or bytes) is dead-lettered
itself with the reason and the line it stopped at: a `PermanentError`, because the same
bytes fail the same way on every retry (nothing here may escape as a generic exception,
which every backend would retry as transient).

A storage event may carry `problem`: the bucket took note of the upload but refused to
store it (the local uploads folder does this for a name that is not UTF-8 or a file that
is not a regular file, or over the size limit). It is dead-lettered with that reason.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from handlers.catalog import (
    FILE_PROCESSED,
    FILE_ROW_REJECTED,
    INVENTORY_UPDATED,
    ORDER_CREATED,
)
from handlers.core.context import Context
from handlers.core.errors import PermanentError, ValidationError

UPLOADS: Final = "uploads"
FILES: Final = "files"
#: Rows per file. Every emitted event is recorded with the file's idempotency record
#: (one store item: DynamoDB caps items at 400 KB), so bigger files must be split.
MAX_ROWS: Final = 500
MAX_FILE_BYTES: Final = 5 * 1024 * 1024
#: Characters per field. Ids are at most 128 characters and numbers far less, so a longer
#: field is a mistake (a pasted blob, a missing quote swallowing lines): the row is
#: rejected. A field over the csv module's own limit (131072 characters) stops the parser,
#: and the whole file is dead-lettered instead.
MAX_FIELD_CHARS: Final = 4096
#: What a rejected row's copy keeps of each field: the reason names the problem, and every
#: emitted event is stored with the file's idempotency record, so the copy stays small.
_ROW_COPY_CHARS: Final = 100
#: Digits a quantity or price may have: `int()` refuses strings over 4300 digits with a
#: ValueError, and nothing sold needs more than this.
_NUMBER_CHARS: Final = 32
_PRICE_LIMIT: Final = Decimal("1e12")
_NAMESPACE: Final = uuid.UUID("2c3e7d0a-9f61-4f3b-8c5e-6a1d2b4e8f90")
_ID_MAX: Final = 128

RESTOCK_COLUMNS: Final = ("item_id", "quantity")
ORDER_COLUMNS: Final = ("order_id", "customer_id", "item_id", "quantity", "price")


def row_event_id(digest: str, what: str) -> str:
    """The id of the event a file's row (or order) becomes: the same for the same content."""
    return str(uuid.uuid5(_NAMESPACE, f"{digest}:{what}"))


def _text(content: bytes, name: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content[:error.start].count(b"\n") + 1
        raise PermanentError(f"upload '{name}' line {line}: not UTF-8 text "
                             f"({error.reason} at byte {error.start})") from None


def _parse(text: str, name: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and every non-blank record with the line it starts on (a quoted field
    may span lines, so records and lines are not the same count). A file the csv module
    cannot parse (a field over its limit, a stray quote in strict places) is refused whole
    with the line and the parser's reason: what comes after that point cannot be trusted.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields:
                continue  # a blank line is no record (DictReader skips it too)
            if header is None:
                header = [h.strip() for h in fields]
                continue
            records.append((start, fields))
            if len(records) > MAX_ROWS:
                raise PermanentError(f"upload '{name}' has more than {MAX_ROWS} rows, over "
                                     f"the limit per file; split it")
    except csv.Error as error:
        raise PermanentError(f"upload '{name}' line {reader.line_num}: not parseable as "
                             f"CSV ({error})") from None
    return header or [], records


def _row(header: list[str], fields: list[str], problems: list[str]) -> dict[str, str]:
    """The record as a mapping by column, noting the problems no retry can fix."""
    if len(fields) > len(header):
        problems.append(f"has {len(fields)} fields but the header has {len(header)} columns")
    for column, value in zip(header, fields, strict=False):
        if len(value) > MAX_FIELD_CHARS:
            problems.append(f"{column or 'a column'} is {len(value)} characters, over the "
                            f"limit of {MAX_FIELD_CHARS}")
    return dict(zip(header, fields, strict=False))


def _row_copy(row: Mapping[str, str]) -> dict[str, str]:
    return {k: v if len(v) <= _ROW_COPY_CHARS else f"{v[:_ROW_COPY_CHARS]}... "
            f"({len(v)} characters)" for k, v in row.items()}


def _kind(header: list[str], name: str) -> str:
    columns = set(header)
    if set(ORDER_COLUMNS) <= columns:
        return "orders"
    if set(RESTOCK_COLUMNS) <= columns:
        return "restocks"
    raise ValidationError(
        f"upload '{name}' has an unknown header {header}",
        [f"restocks need columns {', '.join(RESTOCK_COLUMNS)} (and optionally action)",
         f"orders need columns {', '.join(ORDER_COLUMNS)}"])


def _id(row: Mapping[str, str], column: str, problems: list[str]) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        problems.append(f"{column} is empty")
    elif len(value) > _ID_MAX:
        problems.append(f"{column} is longer than {_ID_MAX} characters")
    return value


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _NUMBER_CHARS else f"{len(text)} characters"


def _quantity(row: Mapping[str, str], problems: list[str]) -> int:
    text = (row.get("quantity") or "").strip()
    # ASCII digits only: str.isdigit() also accepts '²', which int() then refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > _NUMBER_CHARS \
            or int(text) < 1:
        problems.append(f"quantity must be a positive integer (got {_shown(text)})")
        return 0
    return int(text)


def _price(row: Mapping[str, str], problems: list[str]) -> float:
    text = (row.get("price") or "").strip()
    try:
        price = Decimal(text) if len(text) <= _NUMBER_CHARS else Decimal("NaN")
    except InvalidOperation:
        problems.append(f"price must be a number (got {_shown(text)})")
        return 0.0
    # A finite Decimal can still overflow a float ('1e999'): bound it where money is sane.
    if not price.is_finite() or price < 0 or price >= _PRICE_LIMIT:
        problems.append(f"price must be a number >= 0 and < {_PRICE_LIMIT} "
                        f"(got {_shown(text)})")
        return 0.0
    return float(price)


def _restock(row: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    item_id = _id(row, "item_id", problems)
    quantity = _quantity(row, problems)
    action = (row.get("action") or "restock").strip() or "restock"
    if action not in ("restock", "remove"):
        problems.append(f"action must be restock or remove (got {action!r})")
    return {"item_id": item_id, "quantity": quantity, "action": action}


def on_object_finalized(ctx: Context) -> None:
    data = ctx.event.data
    bucket, name = data["bucket"], data["name"]
    if bucket not in ctx.buckets:
        return  # another bucket's upload: not ours to read
    if data.get("problem"):
        raise PermanentError(f"upload '{name}' was refused by bucket '{bucket}': "
                             f"{data['problem']}")
    if int(data["size"]) > MAX_FILE_BYTES:
        raise PermanentError(f"upload '{name}' is {data['size']} bytes, over the "
                             f"{MAX_FILE_BYTES}-byte limit of the file processor")
    content = ctx.read_blob(bucket, name)
    if len(content) > MAX_FILE_BYTES:  # grew since the event was sent
        raise PermanentError(f"upload '{name}' is {len(content)} bytes, over the "
                             f"{MAX_FILE_BYTES}-byte limit of the file processor")
    digest = hashlib.sha256(content).hexdigest()
    report_key = f"{bucket}@{digest}"
    if ctx.get(FILES, report_key) is not None:
        return  # this exact content was processed (under this name or another): no-op
    header, records = _parse(_text(content, name), name)
    kind = _kind(header, name)
    rows: list[tuple[int, dict[str, str], list[str]]] = []
    for line, fields in records:
        problems: list[str] = []
        rows.append((line, _row(header, fields, problems), problems))
    rejected: list[dict[str, Any]] = []

    def reject(line: int, reason: str, row: Mapping[str, str]) -> None:
        rejected.append({"line": line, "reason": reason})
        ctx.emit(FILE_ROW_REJECTED, {"bucket": bucket, "name": name, "line": line,
                                     "reason": reason, "row": _row_copy(row)},
                 subject=name, id=row_event_id(digest, f"rejected:{line}"))

    accepted = 0
    if kind == "restocks":
        for line, row, problems in rows:
            event_data = _restock(row, problems)
            if problems:
                reject(line, "; ".join(problems), row)
                continue
            ctx.emit(INVENTORY_UPDATED, event_data, subject=event_data["item_id"],
                     id=row_event_id(digest, f"row:{line}"))
            accepted += 1
    else:
        accepted = _orders(ctx, rows, digest, reject)
    ctx.put_if_absent(FILES, report_key, {
        "bucket": bucket, "name": name, "sha256": digest, "kind": kind,
        "rows": len(rows), "accepted": accepted, "rejected": rejected,
        "source_event_id": ctx.event.id, "processed_at": ctx.now_iso()})
    ctx.emit(FILE_PROCESSED, {"bucket": bucket, "name": name, "kind": kind,
                              "accepted": accepted, "rejected": len(rejected),
                              "problems": [f"line {r['line']}: {r['reason']}"
                                           for r in rejected]},
             subject=name, id=row_event_id(digest, f"report:{bucket}/{name}"))


def _orders(ctx: Context, rows: list[tuple[int, dict[str, str], list[str]]], digest: str,
            reject: Any) -> int:
    """Group rows by order; an order with any bad row is rejected whole (all its lines),
    since half an order must never be placed."""
    orders: dict[str, dict[str, Any]] = {}
    for line, row, problems in rows:
        order_id = _id(row, "order_id", problems)
        customer_id = _id(row, "customer_id", problems)
        item = {"item_id": _id(row, "item_id", problems),
                "quantity": _quantity(row, problems), "price": _price(row, problems)}
        order = orders.setdefault(order_id or f"(line {line})", {
            "customer_id": customer_id, "items": [], "lines": [], "problems": []})
        if customer_id != order["customer_id"]:
            problems.append(f"customer_id {customer_id!r} differs from the order's first "
                            f"line ({order['customer_id']!r})")
        order["items"].append(item)
        order["lines"].append((line, row))
        order["problems"].extend(f"line {line}: {p}" for p in problems)
    accepted = 0
    for order_id, order in orders.items():
        if order["problems"]:
            reason = f"order {order_id!r} rejected: " + "; ".join(order["problems"])
            for line, row in order["lines"]:
                reject(line, reason, row)
            continue
        total = round(sum(i["quantity"] * Decimal(str(i["price"])) for i in order["items"]), 2)
        ctx.emit(ORDER_CREATED, {"order_id": order_id, "customer_id": order["customer_id"],
                                 "items": order["items"], "total": float(total)},
                 subject=order_id, id=row_event_id(digest, f"order:{order_id}"))
        accepted += 1
    return accepted


def on_row_rejected(ctx: Context) -> None:
    """Park the row in this consumer's dead-letter queue with its reason. Redriving it
    fails again: the fix is a corrected upload (its rows get new ids)."""
    data = ctx.event.data
    raise PermanentError(f"upload {data['bucket']}/{data['name']} line {data['line']}: "
                         f"{data['reason']}")
