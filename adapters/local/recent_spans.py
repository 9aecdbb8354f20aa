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
from collections.abc import Iterable, Mapping
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from handlers.core import tracing

DEFAULT_LIMIT: Final = 10_000
#: The attributes that say how a span's work ended (a delivery's, a saga step's).
_OUTCOMES: Final = (tracing.OUTCOME, tracing.STEP_OUTCOME)


class Kept:
    """What is kept of a finished span: what the console shows, not the SDK's whole
    object (its resource, scope, events, links), so 10,000 stay about 10 MB."""

    __slots__ = ("attributes", "end", "kind", "name", "parent_id", "span_id", "start",
                 "status", "trace_id")

    def __init__(self, span: ReadableSpan) -> None:
        context = span.context
        self.trace_id = context.trace_id if context is not None else 0
        self.span_id = context.span_id if context is not None else 0
        self.parent_id = span.parent.span_id if span.parent is not None else None
        self.name = span.name
        self.kind = span.kind.name.lower()
        self.start = span.start_time or 0
        self.end = span.end_time or self.start
        self.status = span.status.status_code.name.lower()
        # The SDK's own mapping, not a copy: an ended span's attributes no longer change.
        self.attributes: Mapping[str, Any] = span.attributes or {}


class RecentSpans(SpanProcessor):
    """The last `limit` spans to end, by trace id."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"keep at least one span, not {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._order: deque[Kept] = deque()  # oldest first, as they ended
        self._by_trace: dict[int, list[Kept]] = {}  # each in end order too

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        kept = Kept(span)
        with self._lock:
            self._order.append(kept)
            self._by_trace.setdefault(kept.trace_id, []).append(kept)
            if len(self._order) > self.limit:
                # Both are in end order: the oldest span is the first of its trace's.
                oldest = self._order.popleft()
                same_trace = self._by_trace[oldest.trace_id]
                del same_trace[0]
                if not same_trace:
                    del self._by_trace[oldest.trace_id]

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._order)

    def spans(self, trace_ids: Iterable[int | str]) -> list[Kept]:
        """The kept spans of these traces (ids as integers or 32 hex digits), by start."""
        wanted = {found for found in map(_trace_id, trace_ids) if found is not None}
        with self._lock:
            found = [span for t in wanted for span in self._by_trace.get(t, ())]
        return sorted(found, key=lambda s: s.start)

    def tree(self, trace_ids: Iterable[int | str]) -> list[dict[str, Any]]:
        """The kept spans of these traces as a tree, flattened: each parent before its
        children (siblings by start), with its depth. A span whose parent is not kept
        here (it ended in another process, or was dropped) is a root."""
        return tree(self.spans(trace_ids))


def tree(spans: list[Kept]) -> list[dict[str, Any]]:
    ordered = sorted(spans, key=lambda s: s.start)
    ids = {s.span_id for s in ordered}
    children: dict[int | None, list[Kept]] = {}
    for span in ordered:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    out: list[dict[str, Any]] = []
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        out.append(describe(span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return out


def describe(span: Kept, depth: int = 0) -> dict[str, Any]:
    """A span as the console's JSON: ids in hex, times in seconds and milliseconds."""
    attributes = span.attributes
    return {
        "trace_id": f"{span.trace_id:032x}",
        "span_id": f"{span.span_id:016x}",
        "parent_id": None if span.parent_id is None else f"{span.parent_id:016x}",
        "depth": depth,
        "name": span.name,
        "kind": span.kind,
        "start": span.start / 1e9,
        "duration_ms": round((span.end - span.start) / 1e6, 3),
        "outcome": next((attributes[k] for k in _OUTCOMES if k in attributes), None),
        "status": span.status,
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
