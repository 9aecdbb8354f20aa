"""The spans `switchyard serve` keeps for its console: bounded (oldest dropped first),
found by trace id, safe to fill from many threads, and read back as a tree."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from adapters import telemetry
from adapters.local.recent_spans import RecentSpans
from handlers.core import tracing


@pytest.fixture()
def kept() -> Iterator[tuple[RecentSpans, TracerProvider]]:
    store = RecentSpans(limit=5)
    provider = TracerProvider()
    provider.add_span_processor(store)
    yield store, provider
    provider.shutdown()


def _root(provider: TracerProvider, name: str) -> int:
    """End a root span (a trace of its own); its trace id."""
    with provider.get_tracer("t").start_as_current_span(name) as span:
        return int(span.get_span_context().trace_id)


def test_the_oldest_spans_are_dropped_past_the_bound(
        kept: tuple[RecentSpans, TracerProvider]) -> None:
    store, provider = kept
    traces = [_root(provider, f"span {n}") for n in range(8)]
    assert len(store) == 5
    assert store.spans(traces[:3]) == []  # the three oldest are gone, index included
    assert [s.name for s in store.spans(traces)] == [f"span {n}" for n in range(3, 8)]
    assert [s.name for s in store.spans([f"{traces[6]:032x}"])] == ["span 6"]  # hex ids too


def test_a_trace_is_found_whole_and_alone(kept: tuple[RecentSpans, TracerProvider]) -> None:
    store, provider = kept
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        with tracer.start_as_current_span("child"):
            pass
    other = _root(provider, "unrelated")
    trace_id = root.get_span_context().trace_id
    assert sorted(s.name for s in store.spans([trace_id])) == ["child", "root"]
    assert [s.name for s in store.spans([other])] == ["unrelated"]
    assert store.spans([12345, "not-a-trace-id", "f" * 31]) == []


def test_a_trace_partly_dropped_keeps_its_newest_spans(
        kept: tuple[RecentSpans, TracerProvider]) -> None:
    store, provider = kept
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("long") as long:
        for n in range(6):  # six children end before their parent: the first two go
            with tracer.start_as_current_span(f"step {n}"):
                pass
    names = [s.name for s in store.spans([long.get_span_context().trace_id])]
    assert names == ["long", "step 2", "step 3", "step 4", "step 5"]


def test_spans_ended_by_many_threads_are_all_counted_within_the_bound() -> None:
    store = RecentSpans(limit=1000)
    provider = TracerProvider()
    provider.add_span_processor(store)
    trace_ids: list[list[int]] = [[] for _ in range(8)]

    def end_spans(mine: list[int]) -> None:
        for n in range(400):
            mine.append(_root(provider, f"span {n}"))

    threads = [threading.Thread(target=end_spans, args=(mine,)) for mine in trace_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [t for mine in trace_ids for t in mine]
    assert len(store) == 1000
    assert len(store.spans(everything)) == 1000  # the index agrees with the queue
    provider.shutdown()


def test_the_tree_puts_children_under_parents_in_start_order(
        kept: tuple[RecentSpans, TracerProvider]) -> None:
    store, provider = kept
    tracer = provider.get_tracer("t")
    # The first span's parent ended in another process: it is a root here.
    remote = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span("ingress", context=set_span_in_context(
            NonRecordingSpan(remote))):
        with tracer.start_as_current_span("first", attributes={tracing.OUTCOME: "retry"}):
            with tracer.start_as_current_span("inner",
                                              attributes={tracing.STEP_OUTCOME: "failed"}):
                pass
        with tracer.start_as_current_span("second"):
            pass
    tree = store.tree([0xABC])
    assert [(row["name"], row["depth"]) for row in tree] == [
        ("ingress", 0), ("first", 1), ("inner", 2), ("second", 1)]
    ingress, first, inner, second = tree
    assert ingress["parent_id"] == f"{0xDEF:016x}" and ingress["trace_id"] == f"{0xABC:032x}"
    assert first["parent_id"] == second["parent_id"] == ingress["span_id"]
    assert inner["parent_id"] == first["span_id"]
    assert (first["outcome"], inner["outcome"], second["outcome"]) == ("retry", "failed", None)
    assert first["kind"] == "internal" and first["duration_ms"] >= 0
    assert first["attributes"] == {tracing.OUTCOME: "retry"}


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RecentSpans(limit=0)


def test_with_tracing_off_nothing_is_kept() -> None:
    assert telemetry.install_from_env({}, keep_spans=100) is False
    assert telemetry.recent_spans() is None
