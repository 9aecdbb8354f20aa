"""Log lines are JSON and carry the trace, event and consumer of the work they describe."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.core.engine import handle
from handlers.core.events import Event, ensure_traceparent
from handlers.core.observability import (
    ContextFilter,
    JsonFormatter,
    StderrHandler,
    configure_logging,
    held_lines,
    log_context,
    log_fields,
    trace_id_of,
)


def _capture() -> tuple[io.StringIO, logging.Handler]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("switchyard")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return buffer, handler


def test_engine_log_lines_carry_trace_event_type_and_consumer() -> None:
    buffer, handler = _capture()
    try:
        event = ensure_traceparent(Event.new("elsewhere", "com.example.unknown", {"x": 1}))
        handle(APP, "orders", event, memory_ports())
    finally:
        logging.getLogger("switchyard").removeHandler(handler)
    (line,) = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert line["message"] == "ignored event" and line["level"] == "WARNING"
    assert line["trace_id"] == trace_id_of(event.traceparent)
    assert (line["event_id"], line["event_type"], line["consumer"]) == \
        (event.id, "com.example.unknown", "orders")


def test_context_nests_and_explicit_extras_win() -> None:
    buffer, handler = _capture()
    log = logging.getLogger("switchyard.test")
    try:
        with log_context(trace_id="t1", consumer="a"), log_context(consumer="b"):
            log.info("inner", extra={"trace_id": "explicit"})
        log.info("outside")
    finally:
        logging.getLogger("switchyard").removeHandler(handler)
    inner, outside = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert (inner["trace_id"], inner["consumer"]) == ("explicit", "b")
    assert "trace_id" not in outside and "consumer" not in outside


def test_trace_id_of_rejects_malformed_traceparents() -> None:
    assert trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == \
        "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of("garbage") is None and trace_id_of(None) is None


def test_log_fields_writes_the_line_logging_with_extra_writes() -> None:
    buffer, handler = _capture()
    logger = logging.getLogger("switchyard.test")
    fields = {"consumer": "inventory", "attempt": 2, "duration_ms": 0.25, "detail": "é"}
    try:
        with log_context(trace_id="t1", consumer="ignored: the field wins"):
            log_fields(logger, logging.INFO, fields, "delivery %s", "ok")
            logger.info("delivery %s", "ok", extra=fields)
        with pytest.raises(KeyError):  # a field may not overwrite a record's attribute
            log_fields(logger, logging.INFO, {"lineno": 1}, "clash")
        log_fields(logger, logging.DEBUG, fields, "below the level: not logged")
    finally:
        logging.getLogger("switchyard").removeHandler(handler)
    ours, standard = [json.loads(text) for text in buffer.getvalue().splitlines()]
    del ours["time"], standard["time"]
    assert list(ours.items()) == list(standard.items())
    assert ours["consumer"] == "inventory" and ours["trace_id"] == "t1"


@pytest.fixture()
def configured() -> Iterator[io.StringIO]:
    """`configure_logging` as the CLI calls it, onto a stderr the test reads."""
    logger = logging.getLogger("switchyard")
    saved = logger.handlers[:], logger.level, logger.propagate
    stderr = io.StringIO()
    configure_logging("INFO", json_lines=True)
    logger.handlers[0].setStream(stderr)  # type: ignore[attr-defined]
    yield stderr
    logger.handlers[0].setStream(None)  # type: ignore[attr-defined]
    logger.handlers[:], logger.level, logger.propagate = saved


class _Opaque:
    def __str__(self) -> str:  # what the JSON encoder's `default=str` writes
        return "opaque"


class _PassAll(logging.Filter):
    """A filter of the logger's own: every record then goes through `logging`."""


def test_a_line_rendered_directly_is_the_line_logging_writes(configured: io.StringIO,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setattr("time.time", lambda: 1_765_000_000.1234)
    # Only the handler `configure_logging` set (not the test harness's log capture).
    ours = logging.getLogger("switchyard")
    monkeypatch.setattr(ours, "handlers", [h for h in ours.handlers
                                           if isinstance(h, StderrHandler)])
    logger = logging.getLogger("switchyard.test")
    records: list[str] = []
    make_record = logging.Logger.makeRecord
    monkeypatch.setattr(logging.Logger, "makeRecord", lambda self, *a, **k: (
        records.append(a[4]), make_record(self, *a, **k))[1])
    cases = [
        ({"consumer": "inventory", "attempt": 2, "duration_ms": 0.25, "detail": "é"}, ()),
        ({}, ("x",)),
        ({"n": [1, {"a": None}], "when": _Opaque()}, ()),
    ]
    lines = []
    for fields, args in cases:
        # Context fields the record lacks are added; fields win; standard names and the
        # record's own methods never become fields.
        with log_context(trace_id="t1", consumer="the field wins", name="std", getMessage=1):
            for through_logging in (False, True):
                if through_logging:
                    logger.addFilter(_PassAll())
                try:
                    log_fields(logger, logging.WARNING, fields, "line %s" if args else "line",
                               *args)
                finally:
                    logger.filters.clear()
        assert records == ["line %s" if args else "line"]  # only the one through logging
        records.clear()
        direct, standard = configured.getvalue().splitlines()[-2:]
        assert direct == standard  # the same text, byte for byte
        lines.append(json.loads(direct))
    assert lines[0]["consumer"] == "inventory" and lines[0]["trace_id"] == "t1"
    assert "name" not in lines[0] and "getMessage" not in lines[0]
    assert lines[1]["message"] == "line x" and lines[1]["time"] == "2025-12-06T05:46:40.123Z"
    with pytest.raises(KeyError):  # a field may not overwrite a record's attribute
        log_fields(logger, logging.INFO, {"lineno": 1}, "clash")


def test_held_lines_are_written_together_in_order(configured: io.StringIO) -> None:
    logger = logging.getLogger("switchyard.test")
    with held_lines():
        log_fields(logger, logging.INFO, {"n": 1}, "first")
        logger.info("second")
        with held_lines():  # nested: joins the outer block
            log_fields(logger, logging.INFO, {"n": 3}, "third")
        assert configured.getvalue() == ""
    assert [json.loads(line)["message"] for line in configured.getvalue().splitlines()] == [
        "first", "second", "third"]
    log_fields(logger, logging.INFO, {}, "after")
    assert configured.getvalue().splitlines()[-1].endswith('"message": "after"}')
