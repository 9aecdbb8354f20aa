"""The most recent finished spans, kept in memory so the local console can show an order's.

A span processor beside the exporters `adapters.telemetry` configures: each span that ends
is kept, up to a bound (the oldest dropped first), indexed by trace id, so the spans of
one trace are found without scanning the rest. Thread-safe: the runtime's workers end
spans concurrently while the console reads. Only `adapters.telemetry` imports this module,
and only once tracing is on: with tracing off nothing is kept and nothing of OpenTelemetry
is imported.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from handlers.core import tracing

DEFAULT_LIMIT: Final = 10_000
#: The attributes that say how a span's work ended (a delivery's, a saga step's).
_OUTCOMES: Final = (tracing.OUTCOME, tracing.STEP_OUTCOME)


class RecentSpans(SpanProcessor):
    """The last `limit` spans to end, by trace id."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"keep at least one span, not {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._order: deque[ReadableSpan] = deque()  # oldest first, as they ended
        self._by_trace: dict[int, deque[ReadableSpan]] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        trace_id = span.context.trace_id
        with self._lock:
            self._order.append(span)
            self._by_trace.setdefault(trace_id, deque()).append(span)
            if len(self._order) > self.limit:
                # Both queues are in end order: the oldest span is the first of its trace's.
                oldest = self._order.popleft()
                old_trace = oldest.context.trace_id
                kept = self._by_trace[old_trace]
                kept.popleft()
                if not kept:
                    del self._by_trace[old_trace]

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._order)

    def spans(self, trace_ids: Iterable[int | str]) -> list[ReadableSpan]:
        """The kept spans of these traces (ids as integers or 32 hex digits), by start."""
        wanted = {found for found in map(_trace_id, trace_ids) if found is not None}
        with self._lock:
            found = [span for t in wanted for span in self._by_trace.get(t, ())]
        return sorted(found, key=lambda s: s.start_time or 0)

    def tree(self, trace_ids: Iterable[int | str]) -> list[dict[str, Any]]:
        """The kept spans of these traces as a tree, flattened: each parent before its
        children (siblings by start), with its depth. A span whose parent is not kept
        here (it ended in another process, or was dropped) is a root."""
        return tree(self.spans(trace_ids))


def tree(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    ordered = sorted(spans, key=lambda s: s.start_time or 0)
    ids = {s.context.span_id for s in ordered if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in ordered:
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    out: list[dict[str, Any]] = []
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        out.append(describe(span, depth))
        if span.context is not None:
            stack.extend((child, depth + 1)
                         for child in reversed(children.get(span.context.span_id, [])))
    return out


def describe(span: ReadableSpan, depth: int = 0) -> dict[str, Any]:
    """A span as the console's JSON: ids in hex, times in seconds and milliseconds."""
    attributes = dict(span.attributes or {})
    start, end = span.start_time or 0, span.end_time or span.start_time or 0
    outcome = next((attributes[k] for k in _OUTCOMES if k in attributes), None)
    return {
        "trace_id": f"{span.context.trace_id:032x}" if span.context else None,
        "span_id": f"{span.context.span_id:016x}" if span.context else None,
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "depth": depth,
        "name": span.name,
        "kind": span.kind.name.lower(),
        "start": start / 1e9,
        "duration_ms": round((end - start) / 1e6, 3),
        "outcome": outcome,
        "status": span.status.status_code.name.lower(),
        "attributes": {k: v if isinstance(v, str | bool | int | float) else str(v)
                       for k, v in attributes.items()},
    }


def _trace_id(value: int | str) -> int | None:
    if isinstance(value, int):
        return value
    try:
        return int(value, 16) if len(value) == 32 else None
    except ValueError:
        return None
