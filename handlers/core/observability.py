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
import math
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final

from handlers.core import fastjson

_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar(
    "switchyard_log_context", default=MappingProxyType({}))
#: Attributes every LogRecord has; anything else on a record is a structured field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


class log_context:  # noqa: N801 - used as a function: `with log_context(...)`
    """Add fields to every log record emitted inside the block (nested blocks merge).

    A context manager class rather than a generator: one is opened per delivery and per
    saga step, and the generator machinery was most of its cost."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        fields = {k: v for k, v in self._fields.items() if v is not None}
        outer = _CONTEXT.get()
        self._token = _CONTEXT.set({**outer, **fields} if outer else fields)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        _CONTEXT.reset(self._token)


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record (explicit extras win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


#: One encoder for every JSON line (`json.dumps` with options builds a new one per call).
_encode_line: Final = fastjson.encoder(json.JSONEncoder(default=str, ensure_ascii=False))


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The time up to the second, for the second last formatted (a busy process logs
        # many lines within one second): only the milliseconds are formatted per line.
        # One tuple, replaced whole: threads format lines at once (`log_fields`).
        self._second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        # The same text as `datetime.fromtimestamp(created, UTC).isoformat(timespec=
        # "milliseconds")` (whose microseconds are rounded, then truncated to ms).
        fraction, whole = math.modf(created)
        micros, second = round(fraction * 1_000_000), int(whole)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:
            second, micros = second - 1, micros + 1_000_000
        last, prefix = self._second
        if second != last:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            self._second = (second, prefix)
        return f"{prefix}{micros // 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        return self.render(record.created, record.levelname, record.name,
                           record.getMessage(), _fields(record),
                           self.formatException(record.exc_info) if record.exc_info else None)

    def render(self, created: float, level: str, logger: str, message: str,
               fields: Mapping[str, Any], exception: str | None = None) -> str:
        """The line of a record with these attributes and structured fields."""
        line = {"time": self._time(created), "level": level, "logger": logger,
                "message": message, **fields}
        if exception:
            line["exception"] = exception
        return _encode_line(line)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def log_fields(logger: logging.Logger, level: int, fields: Mapping[str, Any], message: str,
               *args: Any) -> None:
    """`logger.log(level, message, *args, extra=fields)` without finding the caller's file
    and line, which neither line format shows: for lines logged once per delivery or step.

    Where `configure_logging` set the logger up as it leaves it (JSON lines on stderr,
    nothing else to pass by), the line is rendered directly, without a `LogRecord`:
    byte for byte what the record would have been formatted as (`_direct`)."""
    if not logger.isEnabledFor(level):
        return
    handler = _direct(logger, level)
    if handler is not None and _STANDARD.isdisjoint(fields):
        context = _CONTEXT.get()
        if context:
            # What `ContextFilter` adds: the context's fields the record lacks.
            fields = {**fields, **{k: v for k, v in context.items() if k not in fields
                                   and k not in _STANDARD and not hasattr(_Record, k)}}
        text = message % args if args else message
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        handler.write_line(formatter.render(time.time(), logging.getLevelName(level),
                                            logger.name, text, fields))
        return
    record = logger.makeRecord(logger.name, level, "(unknown file)", 0, message, args, None)
    attributes = vars(record)
    if "message" in fields or "asctime" in fields or \
            not attributes.keys().isdisjoint(fields):
        # A field would overwrite an attribute: `makeRecord` refuses it (KeyError).
        logger.handle(logger.makeRecord(logger.name, level, "(unknown file)", 0,
                                        message, args, None, extra=fields))
        return
    attributes.update(fields)  # what `makeRecord(extra=fields)` does, in one step
    logger.handle(record)


_Record: Final = logging.LogRecord


def _direct(logger: logging.Logger, level: int) -> StderrHandler | None:
    """The one handler a record of `logger` at `level` reaches, when only a
    `ContextFilter` and a `JsonFormatter` onto stderr stand between it and its line: the
    logger has no filter of its own, and the loggers it propagates to (up to the first
    that does not propagate) have that handler and no other."""
    if logger.filters:
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if type(found) is not StderrHandler or type(found.formatter) is not JsonFormatter \
            or level < found.level or len(found.filters) != 1 \
            or type(found.filters[0]) is not ContextFilter:
        return None
    return found


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


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on `sys.stderr` as it is when a record is written, not as it was
    when the handler was made (unless `setStream` gives it a stream of its own).

    Whoever swaps `sys.stderr` later and closes the old one (a test's output capture, an
    embedding program) leaves no handler writing to a closed file: a worker thread that
    logs after that still reaches the stderr of the moment.
    """

    def __init__(self) -> None:
        super().__init__()
        self._own: Any = None  # the base class set it to sys.stderr: follow that instead

    @property
    def stream(self) -> Any:
        own = self._own
        return sys.stderr if own is None else own

    @stream.setter
    def stream(self, value: Any) -> None:
        self._own = value

    def emit(self, record: logging.LogRecord) -> None:
        held: dict[StderrHandler, list[str]] | None = getattr(_HELD, "lines", None)
        if held is None:
            super().emit(record)
            return
        try:
            held.setdefault(self, []).append(self.format(record))
        except Exception:  # noqa: BLE001 - as `StreamHandler.emit` does
            self.handleError(record)

    def write_line(self, line: str) -> None:
        """A formatted line, as `emit` writes a record's (held too, inside `held_lines`)."""
        held: dict[StderrHandler, list[str]] | None = getattr(_HELD, "lines", None)
        if held is not None:
            held.setdefault(self, []).append(line)
            return
        self.acquire()
        try:
            stream = self.stream
            stream.write(line + self.terminator)
            stream.flush()
        except Exception:  # noqa: BLE001 - as `StreamHandler.emit` does
            self.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            self.release()

    def write_held(self, lines: list[str]) -> None:
        """Lines formatted while held, in one write and one flush."""
        self.acquire()
        try:
            stream = self.stream
            stream.write(self.terminator.join(lines) + self.terminator)
            stream.flush()
        except Exception:  # noqa: BLE001 - as `StreamHandler.emit` does
            self.handleError(logging.makeLogRecord({"msg": "held log lines"}))
        finally:
            self.release()


_HELD = threading.local()


class held_lines:  # noqa: N801 - used as a function: `with held_lines():`
    """Inside the block, this thread's records for a `StderrHandler` are formatted as
    they are logged and written together when it ends: one write (and one flush) for a
    run of lines, such as the log lines of a batch of deliveries after its commit.
    Other handlers, and other threads, write as usual; nested blocks join the outer."""

    __slots__ = ("_outer",)

    def __enter__(self) -> None:
        self._outer = getattr(_HELD, "lines", None) is not None
        if not self._outer:
            _HELD.lines = {}

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._outer:
            return
        held: dict[StderrHandler, list[str]] = _HELD.lines
        _HELD.lines = None
        for handler, lines in held.items():
            handler.write_held(lines)


def configure_logging(level: str | int = "INFO", json_lines: bool = True) -> None:
    """Route the `switchyard` loggers to stderr, as JSON lines by default."""
    handler = StderrHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logger = logging.getLogger("switchyard")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
