"""Spans in memory for the tracing tests: an OpenTelemetry SDK provider with the SDK's own
in-memory exporter, installed as the process's tracer, and the checks the tests share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.telemetry import OtelTracer
from handlers.core import tracing


@contextmanager
def recording(messaging_system: str = "switchyard") -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(OtelTracer(provider), messaging_system)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def of_event(spans: Iterable[ReadableSpan], name: str, event_id: str) -> list[ReadableSpan]:
    """The spans called `name` about the event `event_id`, in the order they started."""
    return sorted((s for s in spans if s.name == name and attr(s, tracing.EVENT_ID) == event_id),
                  key=lambda s: s.start_time or 0)


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def the(spans: Sequence[ReadableSpan], what: str) -> ReadableSpan:
    assert len(spans) == 1, f"expected one {what} span, got {[s.name for s in spans]}"
    return spans[0]


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return (child.parent is not None and child.context is not None
            and parent.context is not None
            and child.context.trace_id == parent.context.trace_id
            and child.parent.span_id == parent.context.span_id)


def tree(spans: Iterable[ReadableSpan]) -> str:
    """The spans as an indented tree (parents first, siblings by start time)."""
    spans = sorted(spans, key=lambda s: s.start_time or 0)
    ids = {s.context.span_id for s in spans if s.context}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            keys = (tracing.ATTEMPT, tracing.OUTCOME, tracing.STATUS, tracing.STEP_OUTCOME)
            extra = " ".join(f"{k.rsplit('.', 1)[-1]}={attr(span, k)}" for k in keys
                             if attr(span, k) is not None)
            lines.append(f"{'  ' * depth}{span.name} [{span.kind.name.lower()}] {extra}".rstrip())
            walk(span.context.span_id if span.context else None, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
