"""Tracing off costs a Cloud Function nothing of ours: with no OTEL_* variable, importing
the entry, building its runtime and handling a push loads neither the OpenTelemetry SDK nor
an exporter (the Pub/Sub client itself imports the OpenTelemetry API, so that one is there
either way); with OTEL_TRACES_EXPORTER=console the delivery's span is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.serve_process import ROOT

_SCRIPT = """
import dataclasses, json, sys
from adapters.gcp import entry, pubsub_binding
from adapters.memory import (FixedClock, MemoryNotifier, MemoryPublisher, MemorySagaStarter,
                             MemoryStore)
from handlers.core import tracing
from handlers.core.ports import Ports
from handlers.payments import SimulatedPaymentGateway
from tests.factories import restock

rt = entry.runtime()  # the composition root, as on a cold start (clients connect lazily)
store, clock = MemoryStore(), FixedClock()
rt = dataclasses.replace(rt, ports=Ports(
    store=store, publisher=MemoryPublisher(), notifier=MemoryNotifier(),
    sagas=MemorySagaStarter(), clock=clock,
    payments=SimulatedPaymentGateway(store, clock, 100000)))
envelope = pubsub_binding.push_envelope(pubsub_binding.to_message(restock("cold", 2)),
                                        attempt=1)
answer = entry.process_push(rt, {"content-type": "application/json"},
                            json.dumps(envelope).encode())
tracing.flush()
print(json.dumps({"answer": list(answer), "stock": store.get("inventory", "cold"),
                  "traced": tracing.enabled(),
                  "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def _run(**otel: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(SWITCHYARD_CONSUMER="inventory", SWITCHYARD_LOG="WARNING",
               GOOGLE_CLOUD_PROJECT="tracing-off", PUBSUB_EMULATOR_HOST="127.0.0.1:9",
               FIRESTORE_EMULATOR_HOST="127.0.0.1:9", **otel)
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout


def test_untraced_function_loads_no_sdk_or_exporter() -> None:
    result, printed = _run()
    assert result["answer"] == ["", 204] and result["stock"]["available"] == 2
    assert result["traced"] is False
    assert [m for m in result["otel"] if m.startswith(("opentelemetry.sdk",
                                                       "opentelemetry.exporter"))] == []
    assert '"context"' not in printed


def test_console_traced_function_prints_the_delivery_span() -> None:
    result, printed = _run(OTEL_TRACES_EXPORTER="console")
    assert result["answer"] == ["", 204] and result["traced"] is True
    assert '"name": "process inventory"' in printed
    assert '"switchyard.delivery.attempt": 1' in printed
    assert '"messaging.system": "gcp_pubsub"' in printed
