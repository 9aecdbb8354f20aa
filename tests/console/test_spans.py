"""An order's OpenTelemetry spans in the console's order view: `switchyard serve` with
OTEL_TRACES_EXPORTER=console keeps its latest spans, and `/api/orders/<id>` answers the
ones of that order's trace as a tree; with tracing off it says how to turn it on
(README "Tracing")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.local.console.app import SPANS_OFF
from handlers.catalog import NOTIFICATION_SENT, ORDER_CREATED
from handlers.saga import ORDER_SAGA
from tests.console.support import order, post, put_events, stock
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.slow


@pytest.fixture()
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeProcess]:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("SWITCHYARD_TOKEN", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # spans to the server's log
    monkeypatch.setenv("SWITCHYARD_LOG", "WARNING")
    server = ServeProcess(tmp_path / "traced.db", tmp_path / "traced.log", workers=2)
    server.start()
    yield server
    server.stop()


def _check_tree(tree: list[dict[str, Any]]) -> None:
    """Each span is under its parent (the nearest span one level up before it), and
    siblings are in start order."""
    path: list[dict[str, Any]] = []
    for span in tree:
        del path[span["depth"]:]
        if path:
            assert span["parent_id"] == path[-1]["span_id"], (span, path[-1])
        path.append(span)
    for parent in {s["parent_id"] for s in tree}:
        starts = [s["start"] for s in tree if s["parent_id"] == parent]
        assert starts == sorted(starts)


def test_the_order_view_has_the_spans_of_its_one_trace(traced: ServeProcess) -> None:
    post(traced.url, put_events(stock("lamp", 5)))
    traced.wait_quiet(30)
    post(traced.url, put_events(order("T-1", "lamp", 2, 19.99)))
    post(traced.url, put_events(order("T-2", "lamp", 1, 2500.00)))  # declined
    traced.wait_quiet(60)

    view = traced.get("/api/orders/T-1")
    assert view["order"]["status"] == "completed" and view["trace"]  # as before
    spans = view["spans"]
    assert spans["recording"] is True and spans["limit"] == 10_000
    [trace_id] = spans["trace_ids"]  # one trace from ingress to the notification
    assert {row["trace_id"] for row in view["trace"]} == {trace_id}
    tree = spans["tree"]
    assert {s["trace_id"] for s in tree} == {trace_id}
    _check_tree(tree)
    root = tree[0]
    assert (root["name"], root["kind"], root["depth"]) == (f"send {ORDER_CREATED}",
                                                           "producer", 0)
    assert root["attributes"]["messaging.operation.name"] == "ingress http"
    names = [s["name"] for s in tree]
    steps = [f"saga {s.name}" for s in ORDER_SAGA.all_steps()]
    assert [n for n in names if n in steps] == steps  # every step, in order
    assert {"process orders", "process notifications", f"send {NOTIFICATION_SENT}"} \
        <= set(names)
    by_name = {s["name"]: s for s in tree}
    assert by_name["process orders"]["outcome"] == "ok"
    assert by_name["process orders"]["attributes"]["switchyard.delivery.attempt"] == 1
    assert all(by_name[step]["outcome"] == "ok" for step in steps)
    assert all(s["duration_ms"] >= 0 for s in tree)

    # Another order's view holds its own trace only: the failed payment and the cancel.
    other = traced.get("/api/orders/T-2")["spans"]
    [other_trace] = other["trace_ids"]
    assert other_trace != trace_id
    assert {s["trace_id"] for s in other["tree"]} == {other_trace}
    failed = {s["name"]: s["outcome"] for s in other["tree"] if s["name"].startswith("saga ")}
    assert failed["saga payment"] == "failed" and failed["saga cancel_order"] == "ok"
    assert spans["kept"] == other["kept"] >= len(tree) + len(other["tree"])


def test_without_tracing_the_order_view_says_how_to_turn_it_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("SWITCHYARD_TOKEN", raising=False)
    server = ServeProcess(tmp_path / "plain.db", tmp_path / "plain.log", workers=2)
    server.start()
    try:
        post(server.url, put_events(stock("lamp", 5), order("P-1", "lamp", 1, 5.0)))
        server.wait_quiet(60)
        view = server.get("/api/orders/P-1")
    finally:
        server.stop()
    assert view["order"]["order_id"] == "P-1" and view["trace"]
    assert view["spans"] == {"recording": False, "note": SPANS_OFF}
    assert "OTEL_TRACES_EXPORTER=" in SPANS_OFF and "\n" not in SPANS_OFF
