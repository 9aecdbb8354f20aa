"""Log lines are JSON and carry the trace, event and consumer of the work they describe."""

from __future__ import annotations

import io
import json
import logging

import pytest

from adapters.memory import memory_ports
from handlers.app import APP
from handlers.core.engine import handle
from handlers.core.events import Event, ensure_traceparent
from handlers.core.observability import (
    ContextFilter,
    JsonFormatter,
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
