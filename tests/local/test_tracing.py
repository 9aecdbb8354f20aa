"""`switchyard serve` and `switchyard send` with OTEL_TRACES_EXPORTER=console: the spans of
one order, printed by two processes, make one trace (README "Tracing")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from handlers.catalog import INVENTORY_UPDATED, ORDER_CREATED
from handlers.saga import ORDER_SAGA
from tests.factories import order_data
from tests.serve_process import ROOT, ServeProcess


def _json_values(text: str) -> list[Any]:
    """Every JSON object in `text` (the console exporter prints indented objects)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) >= 0:
        try:
            value, at = decoder.raw_decode(text, at)
            found.append(value)
        except ValueError:
            at += 1
    return found


def _spans(text: str) -> list[dict[str, Any]]:
    return [v for v in _json_values(text) if isinstance(v, dict) and "context" in v]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, "SWITCHYARD_LOG": "WARNING", **extra}


def _send(server: ServeProcess, type_: str, data: Any, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "send", "--url", server.url, "--type", type_,
         "--data", json.dumps(data)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_console_exporter_prints_one_trace_per_order(tmp_path: Path) -> None:
    env = _env(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="switchyard-test")
    server = ServeProcess(tmp_path / "traced.db", tmp_path / "unused.log", workers=2)
    out = tmp_path / "serve.out"
    with open(out, "wb") as stdout, open(tmp_path / "serve.err", "wb") as stderr:
        server.proc = subprocess.Popen([sys.executable, "-m", "cli", *server.args], cwd=ROOT,
                                       stdout=stdout, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    server.get("/health")
                    break
                except OSError:
                    assert time.monotonic() < deadline and server.proc.poll() is None, \
                        (tmp_path / "serve.err").read_text()
                    time.sleep(0.05)
            _send(server, INVENTORY_UPDATED, {"item_id": "K", "quantity": 3,
                                              "action": "restock"}, env)
            printed = _send(server, ORDER_CREATED, order_data("console", [("K", 1, 5.0)]), env)
            server.wait_quiet(60)
        finally:
            server.stop()
    client = [s for s in _spans(printed) if s["name"] == f"send {ORDER_CREATED}"]
    assert len(client) == 1, printed
    assert client[0]["attributes"]["messaging.operation.name"] == "ingress send"
    assert client[0]["resource"]["attributes"]["service.name"] == "switchyard-test"
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in _spans(out.read_text()):
        by_trace[span["context"]["trace_id"]].append(span)
    trace = by_trace[client[0]["context"]["trace_id"]]
    names = {s["name"] for s in trace}
    steps = {f"saga {s.name}" for s in ORDER_SAGA.all_steps()} | {"saga complete_order"}
    assert {f"send {ORDER_CREATED}", "process orders", "process notifications"} | steps \
        <= names, sorted(names)
    ingress = next(s for s in trace if s["name"] == f"send {ORDER_CREATED}")
    assert ingress["parent_id"] == client[0]["context"]["span_id"]  # the CLI's span
    assert ingress["attributes"]["messaging.operation.name"] == "ingress http"


def test_without_otel_variables_the_cli_prints_no_spans_and_imports_nothing() -> None:
    """Untraced: no span on stdout, and the CLI's process never loads OpenTelemetry
    (checked in a child that runs the demo's orders through the runtime in-process)."""
    script = (
        "import sys, json\n"
        "from cli.main import main\n"
        "code = main(['demo'])\n"
        "print(json.dumps({'code': code, 'otel': sorted(m for m in sys.modules "
        "if m.startswith('opentelemetry'))}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    answer = _json_values(done.stdout)[-1]
    assert answer == {"code": 0, "otel": []}, done.stderr[-2000:]
    assert _spans(done.stdout) == []
