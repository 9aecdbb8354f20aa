"""What `switchyard serve` logs: one INFO line per delivery outcome and per saga step,
with its fields, in JSON lines and in the text format (`key=value` after the message)."""

from __future__ import annotations

import io
import json
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.catalog import INVENTORY_UPDATED
from handlers.core.events import Event
from handlers.core.observability import configure_logging, parse_format, parse_level
from tests.factories import order_created, restock


@pytest.fixture()
def captured() -> Iterator[io.StringIO]:
    logger = logging.getLogger("switchyard")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield io.StringIO()
    logger.handlers[:], logger.level, logger.propagate = saved  # as other tests expect


def _run_an_order(db: Path) -> None:
    runtime = Runtime(db, settings=RuntimeSettings(retry_scale=0.001, max_deliveries=2))
    try:
        runtime.ingest([restock("A", 5), order_created("o1", [("A", 1, 3.0)]),
                        Event.new("inventory", INVENTORY_UPDATED,
                                  {"item_id": "Z", "quantity": 1, "action": "remove"})])
        runtime.run_until_idle()
    finally:
        runtime.close()


def _configure(stream: io.StringIO, fmt: str) -> None:
    configure_logging("INFO", json_lines=parse_format(fmt))
    handler = logging.getLogger("switchyard").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def test_json_lines_carry_every_delivery_outcome_and_saga_step(
        tmp_path: Path, captured: io.StringIO) -> None:
    _configure(captured, "json")
    _run_an_order(tmp_path / "log.db")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    deliveries = [x for x in lines if x["message"].startswith("delivery ")]
    steps = [x for x in lines if x["message"] == "saga step"]
    for line in deliveries:
        assert {"consumer", "event_type", "event_id", "attempt", "outcome",
                "duration_ms"} <= set(line), line
        assert line["message"] == f"delivery {line['outcome']}"
    outcomes = {x["outcome"] for x in deliveries}
    assert {"ok", "dead-lettered"} <= outcomes, outcomes
    dead = next(x for x in deliveries if x["outcome"] == "dead-lettered")
    assert "only 0 available" in dead["reason"] and dead["level"] == "ERROR"
    assert {x["level"] for x in deliveries if x["outcome"] == "ok"} == {"INFO"}
    assert steps and all({"saga_id", "step", "phase", "outcome", "attempt"} <= set(x)
                         for x in steps)
    assert {x["step"] for x in steps} >= {"payment", "reserve_inventory"}
    assert any(x["message"] == "saga finished" and x["outcome"] == "completed"
               for x in lines)


def test_the_text_format_shows_the_same_fields(tmp_path: Path,
                                              captured: io.StringIO) -> None:
    _configure(captured, "text")
    _run_an_order(tmp_path / "log.db")
    lines = captured.getvalue().splitlines()
    dead = next(line for line in lines if "delivery dead-lettered" in line)
    fields: dict[str, Any] = dict(part.split("=", 1) for part in shlex.split(
        dead.split(": delivery dead-lettered ", 1)[1]))
    assert fields["consumer"] == "inventory" and fields["event_type"] == INVENTORY_UPDATED
    assert fields["outcome"] == "dead-lettered" and fields["attempt"] == "1"
    assert "only 0 available" in fields["reason"]
    assert " ERROR switchyard.local: delivery dead-lettered consumer=inventory " in dead
    assert any("saga step" in line and "step=payment" in line for line in lines)


@pytest.mark.parametrize(("text", "level"), [("debug", logging.DEBUG), (" INFO", 20),
                                             ("Warning", logging.WARNING)])
def test_log_levels_parse_in_any_case(text: str, level: int) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize("text", ["VERBOSE", "", "10", "trace"])
def test_unknown_log_levels_are_refused_naming_the_choices(text: str) -> None:
    with pytest.raises(ValueError, match="use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        parse_level(text)
