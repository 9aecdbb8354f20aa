"""Structured logs that carry the trace: one JSON object per line, with context fields.

The engine opens a `log_context` (trace id, event id, type, consumer, or saga id and step)
around each delivery; every record logged inside it, by any module, carries those fields,
so one order can be followed across consumers and hops by its trace id. Composition roots
(the CLI, the Lambda and Cloud Functions entries) call `configure_logging` once; the text
format (for a terminal) shows the same fields as `key=value` after the message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar(
    "switchyard_log_context", default=MappingProxyType({}))
#: Attributes every LogRecord has; anything else on a record is a structured field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log record emitted inside the block (nested blocks merge)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items()
                                                if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record (explicit extras win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`: the same fields as the JSON lines, for
    a terminal. Values with spaces, quotes or `=` are JSON-quoted so a line still splits
    into exactly its fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        parts = [f"{when} {record.levelname} {record.name}: {record.getMessage()}"]
        parts.extend(f"{key}={_text_value(value)}" for key, value in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                           ensure_ascii=False)
    if text == "" or any(c in text for c in ' ="\'\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


#: What SWITCHYARD_LOG and SWITCHYARD_LOG_FORMAT accept.
LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS: Final = ("json", "text")


def parse_level(text: str) -> int:
    """A level name (any case) -> its number; ValueError naming the choices otherwise."""
    name = text.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"{text!r} is not a log level (use one of {', '.join(LEVELS)})")
    return int(logging.getLevelName(name))


def parse_format(text: str) -> bool:
    """`json` -> True (JSON lines), `text` -> False; ValueError otherwise."""
    name = text.strip().lower()
    if name not in FORMATS:
        raise ValueError(f"{text!r} is not a log format (use one of {', '.join(FORMATS)})")
    return name == "json"


def configure_logging(level: str | int = "INFO", json_lines: bool = True) -> None:
    """Route the `switchyard` loggers to stderr, as JSON lines by default."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logger = logging.getLogger("switchyard")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
