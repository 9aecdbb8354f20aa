"""Profile a real `switchyard serve` under figure 4's workload with py-spy.

    .venv/bin/python -m bench.profile_local [--workload soak|restocks] [--events 2000]
                                            [--gil] [--out serve-profile.txt]

Starts the server as `make bench` does (4 workers, a worker process, a temporary
database), attaches `py-spy record` to it (every thread of the server process; `--gil`:
only samples holding the GIL, i.e. the Python CPU that threads cannot share), posts
the workload in batches of 100 from two clients, waits until the server is quiet, and
prints the throughput, the server's CPU seconds, the samples per thread and the
functions with the most samples (inclusive).
The raw collapsed stacks are kept in `--out` (flamegraph.pl or speedscope read them).
py-spy is not a dependency: `pip install py-spy` into the venv (it needs ptrace rights
on the child, which a normal user has on its own processes).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import _post_all, _restocks, _server, _stream, cpu_seconds


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(found, os.X_OK):
        raise SystemExit("bench.profile_local: py-spy is not installed; "
                         f"`{sys.executable} -m pip install py-spy` and run again")
    return found


def summary(collapsed: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[frames[0]] += n
        for name in {f.rsplit(":", 1)[0] for f in frames[1:]}:
            inclusive[name] += n
    lines = [f"{total} samples"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in threads.most_common()]
    lines.append("inclusive:")
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile_local",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=("soak", "restocks"), default="soak")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--gil", action="store_true",
                        help="only samples holding the GIL (Python CPU)")
    parser.add_argument("--out", type=Path, default=Path("serve-profile.txt"))
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    spy_bin = _py_spy()
    events = _restocks(args.events) if args.workload == "restocks" else _stream(args.events,
                                                                                 10)
    batches = [events[i:i + 100] for i in range(0, len(events), 100)]
    with tempfile.TemporaryDirectory(prefix="switchyard-profile-") as tmp:
        server = _server(Path(tmp), "profile")
        server.start()
        try:
            assert server.proc is not None
            pid = server.proc.pid
            spy = subprocess.Popen(
                [spy_bin, "record", "--pid", str(pid), "--threads", "--rate", "200",
                 "--format", "raw", "-o", str(args.out), *(["--gil"] if args.gil else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
            cpu0, started = cpu_seconds(pid), time.perf_counter()
            _post_all(server, batches, 2)
            server.wait_quiet(timeout=600, poll=0.02)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu0
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        finally:
            server.stop()
    print(f"{len(events)} events ({args.workload}) in {elapsed:.1f}s: "
          f"{len(events) / elapsed:.0f} ev/s; server CPU {cpu:.1f}s "
          f"({cpu / elapsed:.0%} of one core), {cpu / len(events) * 1e3:.2f} ms per event")
    print(summary(args.out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
