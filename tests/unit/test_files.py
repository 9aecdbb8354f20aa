"""The file processor (handlers/files.py) on in-memory ports: what retrying cannot fix is
a `PermanentError` (the whole file) or a rejected row (one line), never a generic
exception that a backend would retry as transient."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.catalog import (
    FILE_PROCESSED,
    FILE_ROW_REJECTED,
    INVENTORY_UPDATED,
    ORDER_CREATED,
    STORAGE_OBJECT_FINALIZED,
)
from handlers.core.engine import Outcome, handle
from handlers.core.errors import BlobMissing, PermanentError
from handlers.core.events import Event
from handlers.files import MAX_FIELD_CHARS, MAX_FILE_BYTES, MAX_ROWS


class _Blobs:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise BlobMissing(f"object {bucket}/{key} does not exist") from None

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[key] = data


def _process(content: bytes, name: str = "f.csv", **extra: Any) -> Outcome:
    ports = dataclasses.replace(memory_ports(), blobs=_Blobs({name: content}))
    data = {"bucket": "uploads", "name": name, "size": len(content), **extra}
    return handle(APP, "file-processor", Event.new("storage", STORAGE_OBJECT_FINALIZED, data),
                  ports)


def _of(outcome: Outcome, type_: str) -> list[dict[str, Any]]:
    return [e.data for e in outcome.emitted if e.type == type_]


def test_field_over_the_csv_parser_limit_is_permanent_with_its_line() -> None:
    content = b"item_id,quantity\nA,1\nB,1\n\"C\",\"" + b"x" * 200_000 + b"\"\n"
    with pytest.raises(PermanentError, match=r"upload 'f.csv' line 4: not parseable as CSV "
                                             r"\(field larger than field limit \(131072\)\)"):
        _process(content)


def test_long_field_too_many_columns_and_odd_numbers_reject_only_their_rows() -> None:
    outcome = _process(
        b"item_id,quantity\n"
        b"A,1\n"
        b"B," + b"7" * 5000 + b"\n"            # int() refuses over 4300 digits
        b"C,\xc2\xb2\n"                         # '2' superscript: isdigit() but not int()
        b"D,1,extra\n"                          # more fields than columns
        b"" + b"E" * (MAX_FIELD_CHARS + 1) + b",1\n")
    rejected = {r["line"]: r for r in _of(outcome, FILE_ROW_REJECTED)}
    assert sorted(rejected) == [3, 4, 5, 6]
    assert rejected[3]["reason"] == (f"quantity is 5000 characters, over the limit of "
                                     f"{MAX_FIELD_CHARS}; quantity must be a positive "
                                     f"integer (got 5000 characters)")
    assert rejected[4]["reason"] == "quantity must be a positive integer (got '²')"
    assert rejected[5]["reason"] == "has 3 fields but the header has 2 columns"
    assert f"item_id is {MAX_FIELD_CHARS + 1} characters, over the limit of " \
           f"{MAX_FIELD_CHARS}" in rejected[6]["reason"]
    # The rejected row's copy is cut short: the reason says what is wrong with it.
    assert len(rejected[3]["row"]["quantity"]) < 200
    assert [u["item_id"] for u in _of(outcome, INVENTORY_UPDATED)] == ["A"]


def test_prices_that_would_overflow_are_rejected_rows() -> None:
    outcome = _process(b"order_id,customer_id,item_id,quantity,price\n"
                       b"o1,c1,A,1,1e999\n"
                       b"o2,c1,A,1,2.50\n")
    (bad,) = _of(outcome, FILE_ROW_REJECTED)
    assert bad["line"] == 2 and "price must be a number >= 0 and < 1E+12" in bad["reason"]
    (order,) = _of(outcome, ORDER_CREATED)
    assert order["order_id"] == "o2" and order["total"] == 2.5


def test_lines_are_counted_in_the_file_not_in_records() -> None:
    outcome = _process(b"item_id,quantity\n"
                       b"\n"
                       b"\"multi\nline\",1\n"
                       b"X,0\n")
    (bad,) = _of(outcome, FILE_ROW_REJECTED)
    assert bad["line"] == 5


def test_content_that_is_not_utf8_is_permanent_with_its_line() -> None:
    with pytest.raises(PermanentError, match=r"upload 'f.csv' line 3: not UTF-8 text "
                                             r"\(invalid start byte at byte 22\)"):
        _process(b"item_id,quantity\nA,1\nB\xff,1\n")


def test_too_many_rows_is_permanent() -> None:
    content = b"item_id,quantity\n" + b"A,1\n" * (MAX_ROWS + 1)
    with pytest.raises(PermanentError, match=f"more than {MAX_ROWS} rows"):
        _process(content)
    outcome = _process(b"item_id,quantity\n" + b"A,1\n" * MAX_ROWS)
    assert len(_of(outcome, INVENTORY_UPDATED)) == MAX_ROWS


def test_an_upload_the_bucket_refused_is_dead_lettered_with_the_problem() -> None:
    with pytest.raises(PermanentError, match="upload 'x.csv' was refused by bucket "
                                             "'uploads': it is a FIFO"):
        _process(b"", "x.csv", problem="it is a FIFO")


def test_an_object_bigger_than_announced_is_still_held_to_the_limit() -> None:
    content = b"item_id,quantity\n" + b"#" * MAX_FILE_BYTES
    ports = dataclasses.replace(memory_ports(), blobs=_Blobs({"f.csv": content}))
    event = Event.new("storage", STORAGE_OBJECT_FINALIZED,
                      {"bucket": "uploads", "name": "f.csv", "size": 10})
    with pytest.raises(PermanentError, match="over the 5242880-byte limit"):
        handle(APP, "file-processor", event, ports)


def test_a_good_file_reports_what_it_did() -> None:
    outcome = _process(b"item_id,quantity,action\nA,5,restock\nB,2,remove\n")
    (report,) = _of(outcome, FILE_PROCESSED)
    assert (report["accepted"], report["rejected"]) == (2, 0)
