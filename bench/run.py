"""`make bench`: every figure against a baseline measured in the same run, as one table.

    .venv/bin/python -m bench.run [--quick] [--json bench/results/latest.json]

Figures (medians of repeated runs; ratio = figure / baseline, or figure / target where
the target is absolute):

1. Program evaluation under Pulumi mocks per cloud, each in a fresh interpreter: the
   total, the floor (a child importing only the Pulumi and provider modules the program's
   run loaded) and the project's own share (total - floor) vs bare `import pulumi`; peak
   RSS; and which other-cloud SDK got imported.
2. Cold import of the Lambda entry (+ boto3, which its first invocation imports) from the
   extracted zip with the Lambda runtime's Python when it is here (`make .venv-lambda`)
   vs bare `import boto3`; of the GCP entry (+ the SDKs it runs on) vs bare
   `functions_framework`, `google.cloud.pubsub_v1`, `google.cloud.firestore`.
3. Size of the Lambda zip and of the Cloud Functions source zip.
4. Local runtime through a real `switchyard serve` over HTTP: events/s accepted and fully
   processed, vs raw SQLite inserts of the same rows with the same durability
   (WAL, synchronous=FULL, one commit per batch); p50/p99 accept -> handled at half the
   soak-mix capacity the same run measured.
5. CPU per event of the handler path through each cloud adapter (see
   `bench/handler_path.py`) vs the engine alone.

Results are also written as JSON (default `bench/results/latest.json`); `switchyard cost`
reads the per-event CPU and store operations from it. Exit status is 0 even when a target
is missed: a benchmark reports, it does not gate.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"


@dataclass
class Figure:
    number: int
    name: str
    value: float
    unit: str
    baseline: float | None  # measured in the same run; None when the target is absolute
    baseline_name: str
    target: str  # human form, e.g. "< 3x" or "< 200 KB"
    passed: bool | None  # None: no target
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


# --- helpers -------------------------------------------------------------------------------

_CHILD_PRELUDE = """
import json, resource, sys, time
_t0 = time.perf_counter()
"""
_CHILD_REPORT = """
_wall = time.perf_counter() - _t0
print(json.dumps({"wall": _wall, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "modules": sorted(m for m in sys.modules),
                  "resources": globals().get("_resources")}))
"""


def child(code: str, timeout: float = 300, cwd: Path = ROOT,
          python: str = sys.executable) -> dict[str, Any]:
    """Run `code` in a fresh interpreter (`python`, this one by default) in `cwd` (the repo
    root by default); its wall (from the first statement after the prelude, so interpreter
    start-up is excluded) and peak RSS. Nothing it imports is cached as bytecode by it."""
    done = subprocess.run([python, "-c", _CHILD_PRELUDE + code + _CHILD_REPORT],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child failed:\n{code}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def medians(code: str, repeats: int) -> dict[str, Any]:
    runs = [child(code) for _ in range(repeats)]
    return {"wall": statistics.median(r["wall"] for r in runs),
            "rss_kb": statistics.median(r["rss_kb"] for r in runs),
            "modules": runs[-1]["modules"]}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- figure 1: program evaluation ----------------------------------------------------------


def _floor_code(modules: list[str], cloud: str) -> str:
    """A child importing exactly the Pulumi and provider modules that the program's own
    run loaded (what any program using those resources pays), and nothing of ours."""
    used = [m for m in modules if m.split(".")[0] in ("pulumi", f"pulumi_{cloud}")]
    return ("import importlib\n"
            f"for name in {used!r}:\n"
            "    importlib.import_module(name)\n")


#: The project's packages a program run imports, compiled before figure 1 like the
#: provider's modules are (pip compiles those at install): the figure is the program's
#: steady state, not a first run on a checkout without `__pycache__`.
OWN_PACKAGES = ("infra", "adapters", "handlers")

#: One resource type per cloud that takes no required inputs: figure 1's registration
#: floor registers as many of them as the program does, through the same mocks.
_BARE_RESOURCE = {"aws": "pulumi_aws.sqs.Queue", "gcp": "pulumi_gcp.pubsub.Topic"}


def _registration_code(floor_code: str, cloud: str, count: int) -> str:
    """The floor, then `count` resources with no inputs registered under the program's
    own mocks (`infra.synth`): what the SDK alone costs per resource, before any input."""
    module, kind = _BARE_RESOURCE[cloud].rsplit(".", 1)
    return (floor_code + f"import {module}\n"
            "from infra.synth import run_program\n"
            f"def _bare():\n    for i in range({count}):\n        {module}.{kind}(f'r{{i}}')\n"
            f"run_program({{'cloud': '{cloud}'}}, 'dev-{cloud}', program=_bare)\n")


def figure_program(repeats: int) -> list[Figure]:
    say("1. program evaluation under mocks ...")
    import compileall

    for package in OWN_PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)
    figures = []
    for cloud, other in (("aws", "gcp"), ("gcp", "aws")):
        program = ("from infra.synth import run_program\n"
                   f"rec = run_program({{'cloud': '{cloud}'}}, 'dev-{cloud}')\n"
                   "assert rec.resources\n"
                   "_resources = len(rec.resources)\n")
        first = child(program)
        floor_code = _floor_code(first["modules"], cloud)
        count = int(first["resources"])
        registering = _registration_code(floor_code, cloud, count)
        # Interleaved, so drift in the machine's load hits the four alike.
        totals, floors, bares, regs, rss = [], [], [], [], []
        for _ in range(repeats):
            run = child(program)
            totals.append(run["wall"])
            rss.append(run["rss_kb"])
            floors.append(child(floor_code)["wall"])
            bares.append(child("import pulumi\n")["wall"])
            regs.append(child(registering)["wall"])
        total, floor, bare, reg = (statistics.median(x) for x in (totals, floors, bares, regs))
        own = max(total - floor, 0.0)
        sdk_share = max(reg - floor, 0.0)
        leaked = [m for m in first["modules"]
                  if m.split(".")[0] in (f"pulumi_{other}", f"infra.{other}")
                  or m.startswith(f"infra.{other}")]
        absent = not leaked
        sdk = f"pulumi_{other} {'absent' if absent else 'IMPORTED: ' + ', '.join(leaked[:3])}"
        used = sum(1 for m in first["modules"] if m.startswith(f"pulumi_{cloud}."))
        figures += [
            Figure(1, f"program eval {cloud}: total (wall)", total * 1000, "ms", bare * 1000,
                   "import pulumi", "(reported)", None, sdk),
            Figure(1, f"program eval {cloud}: floor (pulumi + provider modules used)",
                   floor * 1000, "ms", bare * 1000, "import pulumi", "(reported)", None,
                   f"{used} pulumi_{cloud} modules, as the program's run loaded them"),
            Figure(1, f"program eval {cloud}: own share (total - floor)", own * 1000, "ms",
                   bare * 1000, "import pulumi", "<= 1.0x, other SDK absent",
                   own <= bare and absent,
                   "our modules from their bytecode, as the provider's are"),
            Figure(1, f"program eval {cloud}: SDK registering {count} bare resources",
                   sdk_share * 1000, "ms", bare * 1000, "import pulumi", "(reported)", None,
                   f"{count} x {_BARE_RESOURCE[cloud]} with no inputs through the same mocks, "
                   "above the floor: the part of the own share that is the SDK's per "
                   "resource; the rest is ours (inputs, outputs, our modules) "
                   f"{max(own - sdk_share, 0.0) * 1000:.0f} ms = "
                   f"{max(own - sdk_share, 0.0) / bare:.2f}x"),
            Figure(1, f"program eval {cloud} (peak RSS)", statistics.median(rss) / 1024, "MB",
                   None, "", "(reported)", None),
        ]
    return figures


# --- figure 2: cold imports ------------------------------------------------------------------

GCP_SDKS = "import functions_framework, google.cloud.pubsub_v1, google.cloud.firestore\n"
#: A venv of the Lambda runtime's Python with boto3 (`make .venv-lambda` makes it when the
#: machine has that Python): the interpreter figure 2 imports the Lambda zip with.
LAMBDA_VENV = ROOT / ".venv-lambda"


# The extracted Lambda zip comes first on the path and the checkout is taken off it, so
# the entry is imported exactly as deployed: the zip's sources, and its bytecode when the
# interpreter is the runtime's version (a pyc of another version is ignored and the
# sources are compiled at import, as Lambda would).
_FROM_ZIP = ("import sys, os\n"
             "sys.path[:] = [os.getcwd()] + [p for p in sys.path[1:] if p != {root!r}]\n"
             "sys.meta_path[:] = [f for f in sys.meta_path\n"
             "                    if '_EditableFinder' not in getattr(f, '__name__', '')]\n")


def lambda_python() -> tuple[str, str | None]:
    """(interpreter for the Lambda cold import, None) when one of the runtime's version
    with boto3 is here, else (this interpreter, why the figure is not the runtime's)."""
    from infra.aws.packaging import RUNTIME_VERSION, bytecode_interpreter

    for candidate in (str(LAMBDA_VENV / "bin" / "python"), bytecode_interpreter()):
        if candidate and Path(candidate).exists() and subprocess.run(
                [candidate, "-c", "import boto3"], capture_output=True,
                check=False).returncode == 0:
            return candidate, None
    runtime = "{}.{}".format(*RUNTIME_VERSION)
    return sys.executable, (f"measured with Python {platform.python_version()} and its own "
                            f"bytecode in the zip: no Python {runtime} with boto3 here "
                            "(`make .venv-lambda`); the deployed zip ships "
                            f"{runtime} bytecode only when built where {runtime} is")


def figure_imports(repeats: int) -> list[Figure]:
    say("2. cold imports ...")
    import zipfile

    from infra.aws.packaging import build_zip

    python, caveat = lambda_python()
    pairs = 3 * repeats  # an import is short: more samples for the same minute
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    figures = []
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-zip-") as tmp:
        # The zip as `pulumi up` builds it here, with bytecode for `python`'s version.
        with zipfile.ZipFile(io.BytesIO(build_zip(bytecode=python))) as archive:
            archive.extractall(tmp)
            pycs = sum(1 for n in archive.namelist() if n.endswith(".pyc"))
        prefix = _FROM_ZIP.format(root=str(ROOT))
        cases = [
            ("Lambda entry + boto3 (from the zip)",
             prefix + "import adapters.aws.lambda_entry\nimport boto3\n"
             "assert adapters.aws.lambda_entry.__file__.startswith(os.getcwd())\n",
             prefix + "import boto3\n", "import boto3", Path(tmp), python, "<= 1.10x", 1.10,
             f"Python {version}, {pycs} pycs in the zip" + (f"; {caveat}" if caveat else "")),
            ("GCP entry + its SDKs", GCP_SDKS + "import adapters.gcp.entry\n", GCP_SDKS,
             "functions_framework, pubsub_v1, firestore", ROOT, sys.executable, "<= 1.2x", 1.2,
             "sources compiled at import (Cloud Functions builds the source itself)"),
        ]
        for name, code, base, base_name, cwd, interpreter, target, limit, note in cases:
            # A warm-up pair first (the files' first read from disk is not an import's
            # cost), then pairs alternating which goes first, so drift in the machine's
            # load and the order hit both alike; judged on the median of each pair's ratio,
            # which a noisy neighbour moves less than a ratio of two medians.
            child(code, cwd=cwd, python=interpreter)
            child(base, cwd=cwd, python=interpreter)
            ours, bare = [], []
            for n in range(pairs):
                first, second = (code, base) if n % 2 == 0 else (base, code)
                a = child(first, cwd=cwd, python=interpreter)["wall"]
                b = child(second, cwd=cwd, python=interpreter)["wall"]
                ours.append(a if n % 2 == 0 else b)
                bare.append(b if n % 2 == 0 else a)
            value, baseline = statistics.median(ours), statistics.median(bare)
            paired = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
            figures.append(Figure(2, f"cold import: {name}", value * 1000, "ms",
                                  baseline * 1000, base_name, f"{target} (paired)",
                                  paired <= limit,
                                  f"{note}; paired ratio {paired:.2f}x over {pairs} pairs"))
    return figures


# --- figure 3: archive sizes ----------------------------------------------------------------


def figure_sizes() -> list[Figure]:
    say("3. archive sizes ...")
    from adapters.gcp import source_archive
    from infra.aws.packaging import build_zip

    lambda_kb = len(build_zip()) / 1024
    gcp_kb = len(source_archive.build()) / 1024
    return [
        Figure(3, "Lambda zip", lambda_kb, "KB", None, "", "< 512 KB", lambda_kb < 512,
               "sources plus their bytecode when the runtime's Python is here"),
        Figure(3, "Cloud Functions source zip", gcp_kb, "KB", None, "", "(reported)", None,
               "dependencies install from its requirements.txt"),
    ]


# --- figure 4: local runtime -----------------------------------------------------------------


def _stream(n: int, seed: int) -> list[Any]:
    from bench.soak import ITEMS, build_workload

    workload = build_workload(n, 100, random.Random(seed))
    # No duplicates or poison here: this measures the happy path's throughput.
    events = [e for batch in workload.batches for e in batch
              if e.id not in workload.poison]
    seen, unique = set(), []
    for e in events:
        if (e.source, e.id) not in seen:
            seen.add((e.source, e.id))
            unique.append(e)
    assert ITEMS
    return unique


def _post_all(server: Any, batches: list[list[Any]], clients: int) -> None:
    from handlers.core.http_binding import to_batch

    errors: list[BaseException] = []

    def work(share: list[list[Any]]) -> None:
        conn = server.connection()
        try:
            for batch in share:
                headers, body = to_batch(batch)
                conn.request("POST", "/events", body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 202:
                    raise RuntimeError(f"POST /events answered {response.status}")
        except BaseException as exc:  # noqa: BLE001 - reported after join
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(batches[i::clients],))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


#: `switchyard serve --processes` for figure 4: worker processes running the handlers.
SERVE_PROCESSES = 1


def _server(tmp: Path, name: str) -> Any:
    from tests.serve_process import ServeProcess

    return ServeProcess(tmp / f"{name}.db", tmp / f"{name}.log", workers=4,
                        visibility_timeout=30.0,
                        extra_args=("--processes", str(SERVE_PROCESSES)))


def _restocks(n: int) -> list[Any]:
    from handlers.catalog import INVENTORY_UPDATED
    from handlers.core.events import Event

    return [Event.new("inventory", INVENTORY_UPDATED,
                      {"item_id": f"item-{i % 50}", "quantity": 1, "action": "restock"})
            for i in range(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) and the processes it
    started (its worker processes, while they run) have used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in _children(pid):
        try:
            used += cpu_seconds(child)
        except OSError:  # it ended meanwhile
            pass
    return used


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return found


def _throughput_once(n: int, seed: int, batch: int, clients: int,
                     restocks_only: bool = False,
                     cpu: list[float] | None = None) -> tuple[float, float]:
    """(events/s accepted and fully processed, events/s accepted) for one fresh server;
    the server's CPU seconds per event are appended to `cpu` when it is given."""
    events = _restocks(n) if restocks_only else _stream(n, seed)
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        server = _server(Path(tmp), "throughput")
        server.start()
        try:
            pid = server.proc.pid
            used = cpu_seconds(pid)
            started = time.perf_counter()
            _post_all(server, batches, clients)
            accepted = time.perf_counter() - started
            server.wait_quiet(timeout=600, poll=0.02)
            elapsed = time.perf_counter() - started
            if cpu is not None:
                cpu.append((cpu_seconds(pid) - used) / len(events))
        finally:
            server.stop()
    return len(events) / elapsed, len(events) / accepted


def _sqlite_once(n: int, seed: int, batch: int) -> float:
    """The rows `ingest` writes (event + one queue row per consumer), same pragmas, same
    durability (synchronous=FULL, WAL), one transaction per batch, no HTTP, no handling."""
    from adapters.local.database import SCHEMA
    from handlers.app import APP
    from handlers.core import jsonformat

    events = _stream(n, seed)
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    bodies = [[(e, jsonformat.dumps(e), [c.name for c in APP.routes(e.type)]) for e in b]
              for b in batches]
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        started = time.perf_counter()
        for rows in bodies:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            for event, body, consumers in rows:
                seq = conn.execute(
                    "INSERT INTO events (id, source, type, body, accepted_at, origin) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (event.id, event.source, event.type, body, now, "http")).lastrowid
                conn.executemany(
                    "INSERT INTO queue (consumer, event_seq, body, visible_at, enqueued_at) "
                    "VALUES (?, ?, ?, ?, ?)", [(c, seq, body, now, now) for c in consumers])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return len(events) / elapsed


def _latency(rate: float, seconds: float, seed: int) -> tuple[float, float, int]:
    """Paced posts at `rate` events/s in batches of 5; accept -> first handled, in ms."""
    events = _stream(int(rate * seconds), seed)
    per_post = 5
    batches = [events[i:i + per_post] for i in range(0, len(events), per_post)]
    interval = per_post / rate
    from handlers.core.http_binding import to_batch

    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        server = _server(Path(tmp), "latency")
        server.start()
        try:
            conn = server.connection()
            start = time.perf_counter()
            for n, batch in enumerate(batches):
                due = start + n * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                headers, body = to_batch(batch)
                conn.request("POST", "/events", body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 202:
                    raise RuntimeError(f"POST /events answered {response.status}")
            conn.close()
            achieved = len(events) / (time.perf_counter() - start)
            server.wait_quiet(timeout=600, poll=0.05)
        finally:
            server.stop()
        db = sqlite3.connect(Path(tmp) / "latency.db")
        rows = db.execute(
            "SELECT (MIN(t.at) - e.accepted_at) * 1000 FROM events e JOIN timeline t "
            "ON t.event_id = e.id AND t.consumer IS NOT NULL AND t.outcome = 'processed' "
            "WHERE e.origin = 'http' GROUP BY e.seq").fetchall()
        db.close()
    latencies = sorted(r[0] for r in rows)
    if not latencies:
        raise RuntimeError("no handled events recorded")
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50, p99, int(achieved)


#: Figure 4's targets (2-core machine): events/s end to end (soak mix, restocks only),
#: events/s accepted, and p99 accept -> handled in ms at half the measured soak capacity.
LOCAL_SOAK_TARGET = 1000
LOCAL_RESTOCKS_TARGET = 4000
LOCAL_ACCEPT_TARGET = 8000
LOCAL_P99_TARGET_MS = 50.0
#: The latency run offers this share of the soak-mix capacity the same run measured:
#: latency under load, not the length of a backlog over capacity.
LATENCY_LOAD = 0.5


def figure_local(repeats: int, events: int) -> list[Figure]:
    from bench.engine_limit import cpu_per_event, runtime_cpu_per_event

    say("4. local runtime over HTTP ...")
    batch, clients = 100, 2
    soak_cpu: list[float] = []
    runs = [_throughput_once(events, 10 + r, batch, clients, cpu=soak_cpu)
            for r in range(repeats)]
    raw = [_sqlite_once(events, 10 + r, batch) for r in range(repeats)]
    e2e_m, raw_m = statistics.median(r[0] for r in runs), statistics.median(raw)
    accept_m = statistics.median(r[1] for r in runs)
    restock_cpu: list[float] = []
    simple = statistics.median(_throughput_once(events // 2, 0, batch, clients, True,
                                                cpu=restock_cpu)[0]
                               for _ in range(repeats))
    # The ceiling: the engine and handlers alone on the same events, one thread.
    engine_soak, soak_counts = cpu_per_event(_stream(events, 10), repeats)
    engine_restocks, _ = cpu_per_event(_restocks(events // 2), repeats)
    server_soak, server_restocks = statistics.median(soak_cpu), statistics.median(restock_cpu)
    # The runtime's own durable work per event, one thread, no HTTP: fewer events (its
    # figure is per event, and the soak mix's retries make each run last).
    alone = min(events, 2000)
    runtime_soak = runtime_cpu_per_event(_stream(alone, 10), max(1, repeats - 1))
    runtime_restocks = runtime_cpu_per_event(_restocks(alone), max(1, repeats - 1))
    offered = max(10.0, e2e_m * LATENCY_LOAD)
    p50s, p99s, rates = [], [], []
    for r in range(repeats):
        p50, p99, achieved = _latency(offered, 6 if repeats > 1 else 4, 30 + r)
        p50s.append(p50)
        p99s.append(p99)
        rates.append(achieved)
    p99 = statistics.median(p99s)
    load = (f"at {offered:.0f} ev/s offered ({LATENCY_LOAD:.0%} of the soak-mix capacity "
            f"measured above), {statistics.median(rates)} ev/s achieved")
    raw_name = "raw SQLite inserts, same rows + durability"
    engine_name = "engine + handlers alone, one thread"
    return [
        Figure(4, "local end to end, soak mix (events/s)", e2e_m, "ev/s", 1 / engine_soak,
               engine_name, f">= {LOCAL_SOAK_TARGET:,} ev/s", e2e_m >= LOCAL_SOAK_TARGET,
               f"batches of {batch}, {clients} HTTP clients, serve --workers 4 --processes "
               f"{SERVE_PROCESSES}, soak mix (orders with sagas, restocks, triggers, "
               f"notifications); the server (its worker process included) used "
               f"{server_soak * 1e3:.2f} ms of CPU per event, so even both cores kept busy "
               f"with no overhead would do {2 / server_soak:,.0f} ev/s"),
        Figure(4, "local accepted over HTTP (events/s)", accept_m, "ev/s", raw_m, raw_name,
               f">= {LOCAL_ACCEPT_TARGET:,} ev/s", accept_m >= LOCAL_ACCEPT_TARGET,
               "202 answered (committed with synchronous=FULL) while workers process"),
        Figure(4, "local end to end, restocks only (events/s)", simple, "ev/s",
               1 / engine_restocks, engine_name, f">= {LOCAL_RESTOCKS_TARGET:,} ev/s",
               simple >= LOCAL_RESTOCKS_TARGET,
               "one delivery per event, no saga: the runtime without the order flow's "
               f"fan-out; the server (worker process included) used "
               f"{server_restocks * 1e3:.2f} ms of CPU per event "
               f"(both cores busy, no overhead: {2 / server_restocks:,.0f} ev/s)"),
        Figure(4, "engine + handlers alone, soak mix (events/s, one thread)",
               1 / engine_soak, "ev/s", None, "", "(reported: the ceiling per core)", None,
               f"{engine_soak * 1e3:.2f} ms of CPU per event; the same events through the "
               f"engine with in-memory ports (items kept as JSON text): "
               f"{soak_counts['deliveries']} deliveries and {soak_counts['sagas']} sagas "
               f"for {soak_counts['events']} events"),
        Figure(4, "engine + handlers alone, restocks (events/s, one thread)",
               1 / engine_restocks, "ev/s", None, "", "(reported: the ceiling per core)", None,
               f"{engine_restocks * 1e3:.3f} ms of CPU per event"),
        Figure(4, "local runtime alone, soak mix (events/s, one thread, no HTTP)",
               1 / runtime_soak, "ev/s", 1 / engine_soak, engine_name,
               "(reported: this runtime's ceiling per core)", None,
               f"{runtime_soak * 1e3:.2f} ms of CPU per event: ingest (fsynced), SQLite "
               f"queues, timeline and log lines around the engine; both cores at this rate, "
               f"perfectly parallel and with nothing else running: "
               f"{2 / runtime_soak:,.0f} ev/s"),
        Figure(4, "local runtime alone, restocks (events/s, one thread, no HTTP)",
               1 / runtime_restocks, "ev/s", 1 / engine_restocks, engine_name,
               "(reported: this runtime's ceiling per core)", None,
               f"{runtime_restocks * 1e3:.3f} ms of CPU per event; both cores at this rate: "
               f"{2 / runtime_restocks:,.0f} ev/s"),
        Figure(4, "local p50 accept -> handled", statistics.median(p50s), "ms", None, "",
               "(reported)", None, load),
        Figure(4, "local p99 accept -> handled", p99, "ms", None, "",
               f"< {LOCAL_P99_TARGET_MS:.0f} ms", p99 < LOCAL_P99_TARGET_MS, load),
    ]


# --- figure 5: per-event CPU -----------------------------------------------------------------


def figure_cpu(repeats: int) -> tuple[list[Figure], dict[str, dict[str, float]]]:
    say("5. per-event CPU of the handler path ...")
    from bench.handler_path import measure

    # 3x `repeats` rounds (15 in `make bench`), as figure 2 takes 3x its pairs: one
    # round's ratio spreads widely on a shared machine (quartiles 1.27x-1.43x over 40
    # rounds of the same code); medians of 5 of those rounds, drawn at random, spread
    # with a standard deviation of 0.07-0.08x, medians of 15 with 0.02-0.03x. (What the
    # rounds cannot take out is the load changing between runs: eight runs of 15 rounds
    # each, back to back on one tree, still read from 1.28x to 1.44x.)
    results = measure(events_per_run=600, repeats=3 * repeats)
    base = results["engine only"]["cpu_us"]
    limits = {"aws": 1.25, "gcp": 1.5}
    # The result is read on the median of each round's own ratio (adapter and engine
    # measured back to back), which load drift moves less than the ratio of the medians.
    figures = [
        Figure(5, f"per-event CPU, {cloud} adapter", results[cloud]["cpu_us"], "us", base,
               "engine + handler alone", f"<= {limits[cloud]:.2f}x (paired)",
               results[cloud]["ratio"] <= limits[cloud],
               f"paired ratio {results[cloud]['ratio']:.2f}x (median of the rounds' "
               f"ratios); store ops/event: {results[cloud]['reads']:.2f} reads, "
               f"{results[cloud]['writes']:.2f} writes")
        for cloud in ("aws", "gcp")
    ]
    return figures, results


# --- output -----------------------------------------------------------------------------------


def table(figures: list[Figure]) -> str:
    rows = [("#", "figure", "value", "baseline", "ratio", "target", "result")]
    for f in figures:
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        base = f"{f.baseline:.1f} {f.unit} ({f.baseline_name})" if f.baseline else "-"
        result = "-" if f.passed is None else ("PASS" if f.passed else "MISS")
        rows.append((str(f.number), f.name, f"{f.value:.1f} {f.unit}", base, ratio, f.target,
                     result))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {f.number} {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + ["", "notes:", *notes])


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and events (a smoke run, not figures to quote)")
    parser.add_argument("--json", type=Path, default=RESULTS,
                        help=f"write the results here (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    local_repeats = 1 if args.quick else 3
    started = time.perf_counter()
    info = machine()
    say(f"bench on {info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}")
    steps: list[Callable[[], list[Figure]]] = [
        lambda: figure_program(repeats),
        lambda: figure_imports(repeats + 2),
        figure_sizes,
        lambda: figure_local(local_repeats, 2000 if args.quick else 6000),
    ]
    figures: list[Figure] = []
    for step in steps:
        figures.extend(step())
    cpu_figures, per_event = figure_cpu(repeats)
    figures.extend(cpu_figures)
    elapsed = time.perf_counter() - started
    print(table(figures))
    print(f"\n{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}; "
          f"bench took {elapsed:.0f} s")
    document = {
        "machine": info,
        "took_s": round(elapsed, 1),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
        "per_event": {cloud: per_event[cloud] for cloud in ("aws", "gcp")},
        "per_event_baseline": per_event["engine only"],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
