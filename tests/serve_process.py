"""`switchyard serve` as a real child process on 127.0.0.1, for crash tests and the soak.

Only a separate process can be killed for real: SIGKILL gives no chance to flush, roll
back or say goodbye, which is exactly what the "nothing answered 202 is lost" promise has
to survive. The helper starts the server on a free port with a given database, waits for
`/health`, kills it with SIGKILL, restarts it on the same port and database, and talks to
it over plain HTTP (standard library only, so the soak needs nothing else installed).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pending_work(db: Path) -> int:
    """Deliveries queued plus sagas active, read from the database file itself."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    try:
        return int(conn.execute("SELECT (SELECT COUNT(*) FROM queue) + (SELECT COUNT(*) FROM"
                                " sagas WHERE status IN ('running', 'compensating'))")
                   .fetchone()[0])
    finally:
        conn.close()


class ServeProcess:
    """One `switchyard serve` child: start, SIGKILL, restart on the same port and db."""

    def __init__(self, db: Path, log: Path, port: int | None = None, workers: int = 4,
                 visibility_timeout: float = 1.0, max_deliveries: int = 5,
                 token: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.db, self.log = db, log
        # Sent as SWITCHYARD_TOKEN, as a user should (arguments show in `ps`), unless
        # extra_args give it otherwise (--token-file).
        self.token = token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["serve", "--db", str(db), "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(workers), "--visibility-timeout", str(visibility_timeout),
                     "--max-deliveries", str(max_deliveries), *extra_args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as log:
            env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_TOKEN"}
            if self.token and "--token-file" not in self.args:
                env["SWITCHYARD_TOKEN"] = self.token
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", *self.args],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env=env)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.get("/health")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server did not start; log:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed; in-flight work stays claimed."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (workers finish their current step), SIGKILL if it does not exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def auth(self) -> dict[str, str]:
        """The Authorization header the server wants (none without a token)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, timeout: float = 10.0) -> Any:
        request = urllib.request.Request(self.url + path, headers=self.auth())
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, body: Any, content_type: str = "application/json",
             timeout: float = 10.0) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/events", data,
                                         {"Content-Type": content_type, **self.auth()},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        """A keep-alive connection for clients that send many requests."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def wait_quiet(self, timeout: float, poll: float = 0.2,
                   progress: Any = None) -> dict[str, Any]:
        """Poll /health until no delivery is queued and no saga is active."""
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = self.get("/health")
            if health["queued"] == 0 and health["sagas_active"] == 0:
                return health
            if progress is not None:
                progress(health)
            time.sleep(poll)
        raise AssertionError(f"not quiet after {timeout}s: {health}")
