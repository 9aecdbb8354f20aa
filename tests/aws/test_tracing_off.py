"""Tracing off costs the Lambda nothing: with no OTEL_* variable, importing the entry,
building its runtime and handling an SQS delivery never imports OpenTelemetry; with
OTEL_TRACES_EXPORTER=console the same run prints the delivery's span (README "Tracing")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.serve_process import ROOT

_SCRIPT = """
import json, sys
from adapters.aws import lambda_entry
from adapters.aws.runtime import runtime
from adapters.memory import (FixedClock, MemoryNotifier, MemoryPublisher, MemorySagaStarter,
                             MemoryStore)
from handlers.core.eventbridge_binding import to_put_events_entry
from handlers.core.ports import Ports
from handlers.payments import SimulatedPaymentGateway
from tests.factories import restock

rt = runtime()  # the composition root, as on a cold start
store, clock = MemoryStore(), FixedClock()
rt.__dict__["ports"] = Ports(store=store, publisher=MemoryPublisher(), notifier=MemoryNotifier(),
                             sagas=MemorySagaStarter(), clock=clock,
                             payments=SimulatedPaymentGateway(store, clock, 100000))
entry = to_put_events_entry(restock("cold", 2), rt.app.catalog)
body = {"version": "0", "id": "eb-1", "detail-type": entry["DetailType"],
        "source": entry["Source"], "account": "1", "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": json.loads(entry["Detail"])}
answer = lambda_entry.sqs_handler({"Records": [{
    "messageId": "m1", "body": json.dumps(body),
    "attributes": {"ApproximateReceiveCount": "1"}}]})
print(json.dumps({"answer": answer, "stock": store.get("inventory", "cold"),
                  "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def _run(**otel: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(SWITCHYARD_CONSUMER="inventory", SWITCHYARD_LOG="WARNING",
               AWS_DEFAULT_REGION="us-east-1", **otel)
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last), done.stdout


def test_untraced_lambda_imports_no_opentelemetry() -> None:
    result, _ = _run()
    assert result["answer"] == {"batchItemFailures": []}
    assert result["stock"]["available"] == 2
    assert result["otel"] == []


def test_console_traced_lambda_prints_the_delivery_span() -> None:
    result, printed = _run(OTEL_TRACES_EXPORTER="console")
    assert result["answer"] == {"batchItemFailures": []}
    assert "opentelemetry.sdk.trace" in result["otel"]
    assert '"name": "process inventory"' in printed
    assert '"switchyard.delivery.outcome": "ok"' in printed
    assert '"messaging.system": "aws_sqs"' in printed
