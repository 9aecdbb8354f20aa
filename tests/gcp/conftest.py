"""Google's emulators and real functions-framework servers, started once per session.

`gcp` (session fixture) brings up, on 127.0.0.1 and free ports:

- the Pub/Sub and Firestore emulators shipped with gcloud (missing gcloud or Java is a
  test failure naming what to install, never a skip);
- the functions' source zip, built as the stack builds it and extracted; one
  functions-framework server per consumer plus the saga step server, each importing
  only the extracted archive;
- a fault proxy in front of the saga step server (pass-through unless a test asks it to
  fail a step), and workflows-emulator (its own venv) serving the workflow compiled from
  the saga against that proxy; the orders function starts executions on it;
- the bus, notification and dead-letter topics and subscriptions, created from
  `adapters.gcp.topology`, the generator the stack uses.

Every process is stopped by PID (its process group) at the end of the session.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.gcp import settings as env
from adapters.gcp import source_archive
from adapters.gcp.topology import (
    CONSUMER_ENTRY,
    SAGA_ENTRY,
    Topology,
    data_layout,
    dead_letter_subscription_request,
    subscription_path,
    subscription_request,
    topic_path,
    topology,
)
from adapters.gcp.workflows import saga_yaml
from handlers.app import APP
from tests.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "switchyard-emulated"
REGION = "us-central1"
PREFIX = "sy-test"
MAX_DELIVERIES = 5
WORKFLOWS_VENV = ROOT / ".venv-workflows"
INSTALL_HINT = (
    "install the Google Cloud SDK with its emulators and a JDK (>= 11): "
    "`apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator "
    "google-cloud-cli-firestore-emulator openjdk-17-jre-headless`"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deliveries(gcp: GcpEmulated, consumer: str, event_id: str) -> list[str]:
    """The outcome ("processed", "duplicate", "ignored") of every push of `event_id` the
    consumer's function has handled so far, from its JSON log lines.

    The barrier for "nothing else happened": a test that fears a duplicate waits until the
    duplicate was handled, then asserts; a sleep would only hope it had arrived.
    """
    outcomes = []
    for line in (gcp.logs / f"function-{consumer}.log").read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue  # the server's own lines
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "delivered" and record.get("event_id") == event_id:
            outcomes.append(str(record.get("status")))
    return outcomes


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


@dataclass
class Processes:
    """Child processes, each the leader of its own group, stopped by PID."""

    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, args: list[str], *, cwd: Path | None = None,
              env_vars: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the log's descriptor; ours can close at once.
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(args, cwd=cwd, env=env_vars, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


class FaultProxy:
    """Forwards saga step calls to the step server, failing the ones a test names.

    `fail(saga_id, step, phase, status, times)` answers `status` to that call `times`
    times (None: always), then passes through. Every call is recorded with the headers
    that matter (Authorization, Idempotency-Key).
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.calls: list[dict[str, Any]] = []
        self._faults: dict[tuple[str, str, str], list[Any]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, payload = proxy.answer(dict(self.headers), body)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, saga_id: str, step: str, phase: str, status: int,
             times: int | None = None) -> None:
        with self._lock:
            self._faults[(saga_id, step, phase)] = [status, times]

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        request = json.loads(body)
        key = (request["saga_id"], request["step"], request["phase"])
        with self._lock:
            self.calls.append({"key": key, "authorization": headers.get("Authorization"),
                               "idempotency_key": headers.get("Idempotency-Key")})
            fault = self._faults.get(key)
            if fault is not None and (fault[1] is None or fault[1] > 0):
                if fault[1] is not None:
                    fault[1] -= 1
                return fault[0], json.dumps({"error": "injected fault"}).encode()
        forward = urllib.request.Request(self.target, data=body, method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(forward, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def calls_for(self, saga_id: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [c["key"] for c in self.calls if c["key"][0] == saga_id]

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class GcpEmulated:
    """Handles on everything the session started."""

    topology: Topology
    pubsub_host: str
    firestore_host: str
    functions: dict[str, str]  # consumer name (or "saga") -> URL
    proxy: FaultProxy
    workflows_url: str
    source_dir: Path
    logs: Path

    def execution_url(self) -> str:
        return (f"{self.workflows_url}/v1/projects/{PROJECT}/locations/{REGION}/workflows/"
                f"{self.topology.workflow}/executions")


def _sdk_root() -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is None or shutil.which("java") is None:
        pytest.fail(f"the GCP emulator tests need gcloud and java on PATH: {INSTALL_HINT}",
                    pytrace=False)
    out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    root = Path(out) / "platform"
    for emulator in ("pubsub-emulator", "cloud-firestore-emulator"):
        if not (root / emulator).is_dir():
            pytest.fail(f"gcloud has no {emulator} under {root}: {INSTALL_HINT}",
                        pytrace=False)
    return root


def _workflows_python() -> Path:
    python = WORKFLOWS_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail("workflows-emulator is not installed: run `make .venv-workflows/.installed`"
                    " (workflows-emulator 1.10.0 in its own venv, .venv-workflows, because it"
                    " pins an old fastapi; workflows_shim.py patches its internals)",
                    pytrace=False)
    return python


def _function_env(base: dict[str, str], top: Topology, **extra: str) -> dict[str, str]:
    return {
        **base,
        env.PROJECT: PROJECT, env.REGION: REGION, env.BUS_TOPIC: top.bus_topic,
        env.NOTIFICATIONS_TOPIC: top.notifications_topic,
        "PYTHONPATH": "", "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def _create_topology(top: Topology, functions: dict[str, str]) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topics = [top.bus_topic, top.notifications_topic,
              *(r.dead_letter_topic for r in top.routes)]
    for topic in topics:
        publisher.create_topic(request={"name": topic_path(PROJECT, topic)})
    for route in top.routes:
        subscriber.create_subscription(request=dead_letter_subscription_request(route, PROJECT))
        subscriber.create_subscription(request=subscription_request(
            route, PROJECT, top.bus_topic, push_endpoint=functions[route.consumer]))
    # Taps: pull subscriptions that let the tests see what was published.
    for topic, name in ((top.bus_topic, "tap-events"), (top.notifications_topic,
                                                        "tap-notifications")):
        subscriber.create_subscription(request={
            "name": subscription_path(PROJECT, name), "topic": topic_path(PROJECT, topic)})
    publisher.transport.close()
    subscriber.close()


@pytest.fixture(scope="session")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpEmulated]:
    platform = _sdk_root()
    workflows_python = _workflows_python()
    base = tmp_path_factory.mktemp("gcp")
    logs = base / "logs"
    logs.mkdir()
    procs = Processes(logs)
    proxy: FaultProxy | None = None
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST",
                                            "GOOGLE_CLOUD_PROJECT")}
    try:
        pubsub_port, firestore_port = free_port(), free_port()
        procs.start("pubsub-emulator", [
            str(platform / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"),
            "--host=127.0.0.1", f"--port={pubsub_port}"])
        procs.start("firestore-emulator", [
            str(platform / "cloud-firestore-emulator" / "cloud_firestore_emulator"), "start",
            "--host=127.0.0.1", f"--port={firestore_port}"])
        pubsub_host = f"127.0.0.1:{pubsub_port}"
        firestore_host = f"127.0.0.1:{firestore_port}"
        os.environ.update(PUBSUB_EMULATOR_HOST=pubsub_host, FIRESTORE_EMULATOR_HOST=firestore_host,
                          GOOGLE_CLOUD_PROJECT=PROJECT)

        # The archive the stack uploads, extracted: the servers import only this.
        source_dir = base / "source"
        with zipfile.ZipFile(source_archive.write(base / "zip")[0]) as archive:
            archive.extractall(source_dir)

        top = topology(APP, PREFIX, max_deliveries=MAX_DELIVERIES, timeout_s=30,
                       min_backoff_s=0, max_backoff_s=1)
        ports = {name: free_port() for name in [*APP.consumer_names(), "saga"]}
        functions = {name: f"http://127.0.0.1:{port}/" for name, port in ports.items()}
        workflows_port = free_port()
        workflows_url = f"http://127.0.0.1:{workflows_port}"
        proxy = FaultProxy(functions["saga"])

        server_env = _function_env(dict(os.environ), top)
        launcher = str(Path(__file__).with_name("serve_function.py"))

        def serve(name: str, target: str, **extra: str) -> None:
            procs.start(f"function-{name}", [
                sys.executable, launcher, str(source_dir), "--target", target,
                "--source", "main.py", "--host", "127.0.0.1", "--port", str(ports[name])],
                cwd=source_dir, env_vars={**server_env, **extra})

        # Each function opens the named Firestore databases the stack gives it.
        layout = data_layout(APP, PREFIX)
        for route in top.routes:
            consumer = APP.consumer(route.consumer)
            extra = {env.CONSUMER: route.consumer, env.DEAD_LETTER_TOPIC: route.dead_letter_topic,
                     **layout.consumers[route.consumer].environment()}
            if consumer.starts_saga:
                extra |= {env.WORKFLOW: top.workflow,
                          env.WORKFLOWS_EMULATOR: workflows_url}
            serve(route.consumer, CONSUMER_ENTRY, **extra)
        serve("saga", SAGA_ENTRY, **layout.saga.environment())

        workflow_file = base / "saga.yaml"
        workflow_file.write_text(saga_yaml(APP.saga, proxy.url, timeout_s=60))
        procs.start("workflows-emulator", [
            str(workflows_python), str(Path(__file__).with_name("workflows_shim.py")),
            "--source", str(workflow_file), "--env-file", "/dev/null", "--loglevel", "WARNING",
            "serve", "--port", str(workflows_port)],
            env_vars={**os.environ, "WORKFLOWS_TIME_SCALE": "0.01"})

        eventually(lambda: _http_ok(f"http://{firestore_host}/"), "the Firestore emulator", 60)
        eventually(lambda: _port_open(pubsub_port), "the Pub/Sub emulator", 60)
        for name, port in ports.items():
            eventually(lambda port=port: _port_open(port), f"function server {name}", 60)
        eventually(lambda: _http_ok(workflows_url + "/docs"), "workflows-emulator", 60)
        _create_topology(top, functions)
        yield GcpEmulated(top, pubsub_host, firestore_host, functions, proxy, workflows_url,
                          source_dir, logs)
    finally:
        if proxy is not None:
            proxy.close()
        procs.stop_all()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# --- building blocks for other suites (tests/contract) ----------------------------------


def start_emulators(procs: Processes) -> tuple[str, str]:
    """Start the Pub/Sub and Firestore emulators under `procs`; returns their hosts
    (`PUBSUB_EMULATOR_HOST`, `FIRESTORE_EMULATOR_HOST` values) once both answer. Missing
    gcloud or Java fails the test with the install hint."""
    platform = _sdk_root()
    pubsub_port, firestore_port = free_port(), free_port()
    procs.start("pubsub-emulator", [
        str(platform / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"),
        "--host=127.0.0.1", f"--port={pubsub_port}"])
    procs.start("firestore-emulator", [
        str(platform / "cloud-firestore-emulator" / "cloud_firestore_emulator"), "start",
        "--host=127.0.0.1", f"--port={firestore_port}"])
    firestore_host = f"127.0.0.1:{firestore_port}"
    eventually(lambda: _http_ok(f"http://{firestore_host}/"), "the Firestore emulator", 60)
    eventually(lambda: _port_open(pubsub_port), "the Pub/Sub emulator", 60)
    return f"127.0.0.1:{pubsub_port}", firestore_host


#: Run workflows_shim.py, and answer a failed execution with its error as Cloud Workflows
#: reports it (`error.payload` is what the workflow raised) instead of a bare 500.
_SHIM_WITH_ERRORS = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = sys.argv[1:]
import workflows_shim
from workflows_emulator import server
from workflows_emulator.utils import WorkflowError
from fastapi.responses import JSONResponse
execute = server.execute_workflow
def execute_reporting_errors(config, argument):
    try:
        return execute(config, argument)
    except WorkflowError as error:
        payload = json.loads(json.dumps(error.payload, default=str))
        return JSONResponse(status_code=500, content={"state": "FAILED", "error": {
            "payload": payload, "context": str(error)}})
server.execute_workflow = execute_reporting_errors
from workflows_emulator.cli import cli
cli()
"""


def start_workflows_emulator(procs: Processes, workflow_file: Path, name: str,
                             time_scale: float = 0.01) -> str:
    """Serve `workflow_file` on workflows-emulator (re-read on every execution, so the
    file may be rewritten between executions); returns the base URL once it answers.
    A failed execution answers 500 with `{"state": "FAILED", "error": {...}}`."""
    python = _workflows_python()
    port = free_port()
    procs.start(name, [
        str(python), "-c", _SHIM_WITH_ERRORS, str(Path(__file__).parent),
        "--source", str(workflow_file), "--env-file", "/dev/null", "--loglevel", "WARNING",
        "serve", "--port", str(port)],
        env_vars={**os.environ, "WORKFLOWS_TIME_SCALE": str(time_scale)})
    url = f"http://127.0.0.1:{port}"
    eventually(lambda: _http_ok(url + "/docs"), "workflows-emulator", 60)
    return url


# --- helpers for the scenarios -----------------------------------------------------------


@pytest.fixture(scope="session")
def store(gcp: GcpEmulated) -> Any:
    """Every table where the functions keep it (the stack's named databases), for the
    tests to look at; tables the app does not declare live in the default database."""
    from google.cloud import firestore

    from adapters.gcp.firestore_store import FirestoreDatabases, FirestoreStore
    from handlers.core.engine import PROCESSED

    layout = data_layout(APP, PREFIX)
    names = {"(default)", *layout.databases}
    stores = {db: FirestoreStore(firestore.Client(project=PROJECT, database=db))
              for db in sorted(names)}

    class EveryTable(FirestoreDatabases):
        def database_of(self, table: str, key: str) -> str:
            # A consumer's idempotency record (`<consumer>|source|id`) is in its home.
            consumer = layout.consumers.get(key.split("|", 1)[0])
            if table == PROCESSED and consumer is not None:
                return consumer.home
            return super().database_of(table, key)

    return EveryTable(stores, "(default)", layout.table_databases(), layout.saga.steps)


@pytest.fixture(scope="session")
def bus(gcp: GcpEmulated) -> Any:
    from google.cloud import pubsub_v1

    from adapters.gcp.pubsub_publisher import PubSubPublisher

    return PubSubPublisher(pubsub_v1.PublisherClient(),
                           topic_path(PROJECT, gcp.topology.bus_topic))


class Puller:
    """Pulls a subscription, keeping every message it has seen (acked on receipt)."""

    def __init__(self, subscription: str) -> None:
        from google.cloud import pubsub_v1

        self._client = pubsub_v1.SubscriberClient()
        self._path = subscription_path(PROJECT, subscription)
        self.seen: list[Any] = []

    def poll(self) -> list[Any]:
        response = self._client.pull(request={"subscription": self._path,
                                              "max_messages": 100}, timeout=5)
        if response.received_messages:
            self._client.acknowledge(request={
                "subscription": self._path,
                "ack_ids": [m.ack_id for m in response.received_messages]})
            self.seen.extend(m.message for m in response.received_messages)
        return self.seen

    def wait_for(self, match: Callable[[Any], bool], timeout: float, what: str,
                 count: int = 1) -> list[Any]:
        def found() -> list[Any] | None:
            hits = [m for m in self.poll() if match(m)]
            return hits if len(hits) >= count else None

        return list(eventually(found, what, timeout, interval=0.3))


@pytest.fixture(scope="session")
def pullers(gcp: GcpEmulated) -> dict[str, Puller]:
    """Session-wide pullers: dead letters per consumer, and taps on bus/notifications."""
    out = {f"dlq:{r.consumer}": Puller(r.dead_letter_subscription) for r in gcp.topology.routes}
    out["events"] = Puller("tap-events")
    out["notifications"] = Puller("tap-notifications")
    return out
