"""`switchyard serve --reload`: restart the runtime when the app's source changes.

A supervisor process owns the listening socket and runs `switchyard serve` (without
`--reload`) as a child that inherits it. It polls the modification times of the app's
source (every `.py` under `handlers/`, and the module named by SWITCHYARD_APP when set);
on a change it stops the child with SIGTERM and starts a new one on the same socket, so
the new child imports the changed code in a fresh interpreter (no half-reloaded modules).

Why nothing is lost or done twice:
- SIGTERM makes the child stop the way Ctrl-C does: the HTTP server answers the requests
  in progress, then the workers stop claiming and finish their current unit. A delivery's
  effects commit with its ack in one transaction, and a saga step with the saga's new
  state, so a unit is either wholly done or not done at all; what was not claimed stays
  queued in SQLite for the next child.
- A child that does not stop in time is killed; its claimed deliveries become visible
  again after the visibility timeout and are redelivered, and the consumers' idempotency
  records make that redelivery a no-op if the first attempt had committed.
- Everything answered 202 was committed before the answer. Between two children the
  socket stays open in the supervisor: new connections wait in the kernel's accept backlog
  instead of being refused, so the HTTP listener only pauses.

Before the SIGTERM the supervisor asks the child (a byte on an inherited pipe) to end the
console's open event streams with a clean `end` event: a stream cut mid-response would be
a network error in the browser; a finished one is simply resumed with Last-Event-ID.

Each restart is recorded in the runtime's timeline (outcome `reloaded`), which is how the
console shows it. A child that exits by itself (a syntax error in a handler) is reported,
and restarted on the next change.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

#: Set by the supervisor in the child's environment: the inherited listening socket.
LISTEN_FD_ENV: Final = "SWITCHYARD_LISTEN_FD"
#: ... and the read end of a pipe: a byte on it (or its end) asks the child to close its
#: open console streams cleanly before the SIGTERM, so no browser sees a cut response.
DRAIN_FD_ENV: Final = "SWITCHYARD_DRAIN_FD"
DRAIN_SECONDS: Final = 0.6
#: How often the sources are looked at, and how long a burst of saves may last.
POLL_SECONDS: Final = 0.5
SETTLE_SECONDS: Final = 0.2
#: How long a child may take to finish its requests and in-flight work on SIGTERM.
STOP_SECONDS: Final = 30.0
RELOAD_OUTCOME: Final = "reloaded"
RELOAD_TYPE: Final = "runtime.reload"


def inherited_listener() -> socket.socket | None:
    """The listening socket a reload supervisor handed down, if any (read once).

    waitress serves pre-bound sockets given in its `sockets` setting (what its socket
    activation support is for), so the child never binds the port itself."""
    fd = os.environ.pop(LISTEN_FD_ENV, None)
    if not fd:
        return None
    return socket.socket(fileno=int(fd))


def watch_drain(callback: Callable[[], None]) -> None:
    """In a child of the supervisor: call `callback` once the supervisor asks to drain."""
    fd = os.environ.pop(DRAIN_FD_ENV, None)
    if not fd:
        return

    def wait() -> None:
        try:
            os.read(int(fd), 1)  # a byte, or b"" when the supervisor is gone
        except OSError:
            pass
        callback()

    threading.Thread(target=wait, name="switchyard-drain", daemon=True).start()


def watched_roots(app_spec: str | None = None) -> list[Path]:
    """`handlers/`, and the file (or package folder) of SWITCHYARD_APP's module."""
    import handlers

    roots = [Path(handlers.__file__).resolve().parent]
    spec_text = app_spec if app_spec is not None else os.environ.get("SWITCHYARD_APP", "")
    module = spec_text.partition(":")[0]
    if module and not module.startswith("handlers."):
        found = importlib.util.find_spec(module)
        if found is not None and found.origin:
            origin = Path(found.origin).resolve()
            roots.append(origin.parent if found.submodule_search_locations else origin)
    return roots


def snapshot(roots: Iterable[Path]) -> dict[Path, int]:
    """Modification time of every Python source under the roots."""
    out: dict[Path, int] = {}
    for root in roots:
        files = [root] if root.is_file() else root.rglob("*.py")
        for path in files:
            try:
                out[path] = path.stat().st_mtime_ns
            except OSError:  # deleted between listing and stat: the next look sees it
                continue
    return out


def changed(before: dict[Path, int], after: dict[Path, int]) -> list[Path]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def record_reload(db_path: str, detail: str) -> None:
    """One timeline row per restart (what the console's timeline and banner show)."""
    from adapters.local.database import Database

    db = Database(db_path)
    try:
        with db.write() as conn:
            conn.execute("INSERT INTO timeline (at, event_type, attempt, outcome, detail, "
                         "duration_ms) VALUES (?, ?, 0, ?, ?, 0)",
                         (time.time(), RELOAD_TYPE, RELOAD_OUTCOME, detail))
    finally:
        db.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)  # connections wait here while a child restarts
    sock.set_inheritable(True)
    return sock


def _child_argv(program: list[str]) -> list[str]:
    """`program` (the command line's own invocation, e.g. `python -m cli`) with this
    process's arguments less `--reload`."""
    argv = [a for a in sys.argv[1:] if a != "--reload"]
    if "serve" not in argv:
        raise SystemExit("switchyard serve --reload: run it as `switchyard serve --reload`")
    return [*program, *argv]


class _Supervisor:
    def __init__(self, args: argparse.Namespace, program: list[str]) -> None:
        self.program = program
        self.args = args
        self.sock = _listen(args.host, args.port)
        self.roots = watched_roots()
        self.child: subprocess.Popen[bytes] | None = None
        self.drain: int | None = None
        self.stopping = False

    def start(self) -> None:
        drain_read, self.drain = os.pipe()
        env = {**os.environ, LISTEN_FD_ENV: str(self.sock.fileno()),
               DRAIN_FD_ENV: str(drain_read)}
        try:
            self.child = subprocess.Popen(_child_argv(self.program), env=env,
                                          pass_fds=(self.sock.fileno(), drain_read))
        finally:
            os.close(drain_read)

    def stop_child(self) -> int | None:
        child, self.child = self.child, None
        drain, self.drain = self.drain, None
        if drain is not None:
            try:
                os.write(drain, b"x")  # console streams end with an `end` event
            except OSError:  # the child is gone already
                pass
            os.close(drain)
        if child is None or child.poll() is not None:
            return child.returncode if child else None
        time.sleep(DRAIN_SECONDS)
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # Its claimed deliveries reappear after the visibility timeout: redelivered,
            # and a no-op where they had committed.
            child.kill()
            return child.wait()

    def run(self) -> int:
        def _stop(signum: int, frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        port = self.sock.getsockname()[1]
        where = ", ".join(str(r) for r in self.roots)
        print(f"switchyard: --reload watching {where} (listening on port {port})", flush=True)
        seen = snapshot(self.roots)
        self.start()
        reported_exit = False
        try:
            while not self.stopping:
                time.sleep(POLL_SECONDS)
                now = snapshot(self.roots)
                paths = changed(seen, now)
                if paths:
                    time.sleep(SETTLE_SECONDS)  # an editor's burst of writes is one change
                    now = snapshot(self.roots)
                    paths = changed(seen, now) or paths
                    seen = now
                    self._restart(paths)
                    reported_exit = False
                elif self.child is not None and self.child.poll() is not None \
                        and not reported_exit:
                    print(f"switchyard: the server exited with code {self.child.returncode};"
                          " fix the code and save: it restarts on the next change",
                          file=sys.stderr, flush=True)
                    reported_exit = True
        finally:
            self.stop_child()
            self.sock.close()
        return 0

    def _restart(self, paths: list[Path]) -> None:
        names = ", ".join(_short(p) for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
        print(f"switchyard: reloading ({names} changed)", flush=True)
        code = self.stop_child()
        stopped = "" if code in (None, 0, 130) else f" (the old server exited with {code})"
        record_reload(self.args.db, f"{names} changed; restarted with the new code{stopped}")
        self.start()


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def supervise(args: argparse.Namespace, program: list[str]) -> int:
    """Run `switchyard serve` under the reloader until SIGINT/SIGTERM; each child is
    `program` (how to start the command line) with the same arguments less `--reload`."""
    try:
        supervisor = _Supervisor(args, program)
    except OSError as error:
        print(f"switchyard serve: cannot listen on {args.host}:{args.port}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 1
    return supervisor.run()
