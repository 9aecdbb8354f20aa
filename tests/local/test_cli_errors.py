"""The `switchyard` command line under careless input: one line, an exit code, no traceback.

Each row of `CASES` is a mistake a user makes (argv, environment, what exists before):
the command must exit with the documented code (2 usage, 1 failure) and say what is
wrong in one line on stderr, with no "Traceback" and no database or folder created by a
command that only looks. Rows run `main()` in-process (fast); the closed-pipe and signal
cases need a real child process and run one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.local.runtime import Runtime, RuntimeSettings
from cli.main import EXIT_BROKEN_PIPE, main
from tests.factories import order_created, restock, workflow_triggered
from tests.serve_process import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    name: str
    #: `{db}`, `{tmp}`, `{missing}` and `{port}` are filled in per test.
    argv: list[str]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    #: "seeded": `{db}` holds a few orders and dead letters; "file": `{tmp}/file` exists.
    setup: str = ""


CASES = [
    Case("send bad --data", ["send", "--type", "com.switchyard.inventory.updated",
                             "--data", "{bad"], 2, "--data is not valid JSON"),
    Case("send missing --file", ["send", "--file", "{tmp}/missing.json"], 2,
         "cannot read --file"),
    Case("send --file and --type", ["send", "--file", "{tmp}/file", "--type", "x"], 2,
         "not both", setup="file"),
    Case("send with no event", ["send"], 2, "give --file, or --type with --data"),
    Case("send nobody listening", ["send", "--url", "http://127.0.0.1:{port}", "--type",
                                   "com.switchyard.inventory.updated", "--data", "{}"], 1,
         "is `switchyard serve` running?"),
    Case("send bad --url", ["send", "--url", "localhost:8080", "--type", "t"], 2,
         "is not an http(s) URL"),
    Case("serve --decline-above abc", ["serve", "--decline-above", "abc"], 2,
         "'abc' is not an amount"),
    Case("serve --decline-above 3 decimals", ["serve", "--decline-above", "10.005"], 2,
         "at most two decimals"),
    Case("decline env", ["serve"], 2,
         "--decline-above: 'lots' is not an amount, e.g. 1000.00 (check "
         "SWITCHYARD_PAYMENT_DECLINE_ABOVE)",
         env={"SWITCHYARD_PAYMENT_DECLINE_ABOVE": "lots"}),
    Case("serve --workers 0", ["serve", "--workers", "0"], 2,
         "error: argument --workers: must be at least 1, got 0"),
    Case("serve --workers x", ["serve", "--workers", "x"], 2, "'x' is not a whole number"),
    Case("serve --processes -1", ["serve", "--processes", "-1"], 2,
         "error: argument --processes: must be at least 0, got -1"),
    Case("serve --max-deliveries 0", ["serve", "--max-deliveries", "0"], 2,
         "argument --max-deliveries: must be at least 1"),
    Case("serve --visibility-timeout 0", ["serve", "--visibility-timeout", "0"], 2,
         "must be > 0 seconds"),
    Case("serve --schedule-every nan", ["serve", "--schedule-every", "nan"], 2,
         "argument --schedule-every: must be > 0 seconds"),
    Case("serve --uploads is a file", ["serve", "--uploads", "{tmp}/file"], 2,
         "exists and is not a folder", setup="file"),
    Case("serve --uploads under a file", ["serve", "--uploads", "{tmp}/file/up"], 2,
         "is not a writable folder", setup="file"),
    Case("SWITCHYARD_LOG=VERBOSE", ["orders", "--db", "{db}"], 2,
         "SWITCHYARD_LOG: 'VERBOSE' is not a log level", env={"SWITCHYARD_LOG": "VERBOSE"},
         setup="seeded"),
    Case("SWITCHYARD_LOG_FORMAT=xml", ["orders", "--db", "{db}"], 2,
         "SWITCHYARD_LOG_FORMAT: 'xml' is not a log format",
         env={"SWITCHYARD_LOG_FORMAT": "xml"}, setup="seeded"),
    Case("empty SWITCHYARD_DB", ["orders"], 2,
         "argument --db: must not be empty (check SWITCHYARD_DB)",
         env={"SWITCHYARD_DB": " "}),
    Case("orders, no database", ["orders", "--db", "{missing}"], 1, "no database at"),
    Case("trace, no database", ["trace", "o1", "--db", "{missing}"], 1,
         "switchyard serve --db"),
    Case("dlq list, no database", ["dlq", "list", "--db", "{missing}"], 1, "no database at"),
    Case("dlq show, no database", ["dlq", "show", "x", "--db", "{missing}"], 1,
         "no database at"),
    Case("status, no database", ["status", "--db", "{missing}"], 1, "no database at"),
    Case("replay, no database", ["replay", "--from", "1h", "--db", "{missing}"], 1,
         "no database at"),
    Case("redrive, no database", ["dlq", "redrive", "--db", "{missing}"], 1,
         "no database at"),
    Case("not a database", ["orders", "--db", "{tmp}/file"], 1,
         "is not a switchyard database", setup="file"),
    Case("dlq show unknown id", ["dlq", "show", "nope", "--db", "{db}"], 1,
         "no dead letter with event id 'nope'", setup="seeded"),
    Case("dlq discard without ids", ["dlq", "discard", "--db", "{db}"], 2,
         "name the event ids", setup="seeded"),
    Case("dlq discard unknown id", ["dlq", "discard", "nope", "--db", "{db}"], 1,
         "no dead letter with event id 'nope'", setup="seeded"),
    Case("dlq purge without filter", ["dlq", "purge", "--db", "{db}"], 2,
         "add --all to confirm", setup="seeded"),
    Case("dlq purge with ids", ["dlq", "purge", "x", "--db", "{db}"], 2,
         "purge takes filters", setup="seeded"),
    Case("--all outside purge", ["dlq", "list", "--all", "--db", "{db}"], 2,
         "--all only applies", setup="seeded"),
    Case("dlq bad action", ["dlq", "drop", "--db", "{db}"], 2, "invalid choice: 'drop'"),
    Case("dlq unknown consumer", ["dlq", "list", "--consumer", "nobody", "--db", "{db}"], 2,
         "unknown consumer 'nobody'", setup="seeded"),
    Case("replay bad time", ["replay", "--from", "yesterday", "--db", "{db}"], 2,
         "not a time: 'yesterday'", setup="seeded"),
    Case("replay --wait -1", ["replay", "--from", "1h", "--wait", "-1"], 2,
         "argument --wait: must be >= 0 seconds"),
    Case("unknown command", ["launch"], 2, "invalid choice: 'launch'"),
    Case("no command", [], 2, "the following arguments are required: COMMAND"),
    Case("unknown option", ["orders", "--colour"], 2, "unrecognized arguments: --colour"),
    Case("stack outputs missing", ["status", "--stack", "prod", "--outputs",
                                   "{tmp}/none.json"], 2, "none.json"),
]


@pytest.fixture(autouse=True)
def _fresh_log_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier in-process main() left its handler on the `switchyard` logger: the log
    lines of a runtime seeded here would land in the stderr these tests read."""
    monkeypatch.setattr(logging.getLogger("switchyard"), "handlers", [])


def _seed(db: Path) -> None:
    runtime = Runtime(db, settings=RuntimeSettings(retry_scale=0.001, max_deliveries=2))
    runtime.ingest([restock("A", 5), order_created("o1", [("A", 1, 3.0)]),
                    workflow_triggered("ghost")])
    runtime.run_until_idle()
    runtime.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_misuse_ends_in_one_line_and_an_exit_code(
        case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    db, missing = tmp_path / "cli.db", tmp_path / "nowhere" / "deeper" / "x.db"
    if case.setup == "seeded":
        _seed(db)
    if case.setup == "file":
        (tmp_path / "file").write_text("not a database, not a folder")
    for name in ("SWITCHYARD_LOG", "SWITCHYARD_LOG_FORMAT", "SWITCHYARD_DB",
                 "SWITCHYARD_PAYMENT_DECLINE_ABOVE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # a default database would land here, and must not
    before = sorted(p.name for p in tmp_path.iterdir())
    fill = {"{db}": str(db), "{tmp}": str(tmp_path), "{missing}": str(missing),
            "{port}": str(free_port())}
    argv = []
    for arg in case.argv:
        for mark, value in fill.items():
            arg = arg.replace(mark, value)
        argv.append(arg)

    capsys.readouterr()  # what the setup printed
    try:
        code = main(argv)
    except SystemExit as done:  # argparse's own exits
        code = int(done.code or 0)
    out, err = capsys.readouterr()

    assert code == case.code, (out, err)
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert case.says in lines[0], lines[0]
    assert not missing.parent.parent.exists(), "a read-only command created folders"
    # A reader of a WAL database may leave SQLite's -wal/-shm beside it: not a database.
    after = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm")))
    assert after == before, "something was created"


def test_a_read_only_command_leaves_an_existing_database_unchanged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    db = tmp_path / "ro.db"
    _seed(db)
    wal = tmp_path / "ro.db-wal"

    def fingerprint() -> tuple[str, int]:
        # A write goes to the WAL first and into the file at the last close's checkpoint.
        return (hashlib.sha256(db.read_bytes()).hexdigest(),
                wal.stat().st_size if wal.exists() else 0)

    before = fingerprint()
    for argv in (["orders"], ["dlq", "list"], ["dlq", "show"], ["trace", "o1"],
                 ["replay", "--from", "1h", "--dry-run"]):
        assert main([*argv, "--db", str(db)]) == 0, capsys.readouterr()
    assert main(["status", "--db", str(db)]) == 3  # the ghost trigger is dead
    assert "Traceback" not in capsys.readouterr().err
    assert fingerprint() == before
    # The check itself: a command that writes does change the fingerprint.
    assert main(["dlq", "redrive", "--db", str(db)]) == 0
    assert fingerprint() != before


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"switchyard {version('switchyard')}"


@pytest.mark.parametrize("command", ["serve", "send", "dlq", "replay", "status", "orders",
                                     "trace", "demo", "synth", "cost"])
def test_every_option_has_help_and_shows_its_default(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # type: ignore[union-attr]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "(default: " in text


def test_an_unexpected_error_is_one_line_with_a_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import cli.main as cli

    def boom(args: object) -> int:
        raise ZeroDivisionError("the unforeseen")

    monkeypatch.setattr(cli, "cmd_orders", boom)
    monkeypatch.delenv("SWITCHYARD_LOG", raising=False)
    assert cli.main(["orders", "--db", str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("switchyard orders: unexpected error: ZeroDivisionError: the "
                           "unforeseen (rerun with SWITCHYARD_LOG=DEBUG for the traceback)")
    monkeypatch.setenv("SWITCHYARD_LOG", "debug")
    assert cli.main(["orders", "--db", str(tmp_path / "x.db")]) == 1
    assert "Traceback" in capsys.readouterr().err


def _cli(*argv: str, env: dict[str, str] | None = None, **kwargs: object
         ) -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONUNBUFFERED": "0", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "cli", *argv], cwd=ROOT,
                            env=full, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    db = tmp_path / "pipe.db"
    runtime = Runtime(db, settings=RuntimeSettings(retry_scale=0.001, max_deliveries=1))
    # Enough dead letters that the JSON outgrows any pipe buffer.
    runtime.ingest([workflow_triggered(f"ghost-{n}-{'x' * 200}") for n in range(400)])
    runtime.run_until_idle(timeout=120)
    runtime.close()
    # `switchyard dlq list --json | head -c 100`: the reader leaves after 100 bytes.
    proc = _cli("dlq", "list", "--json", "--db", str(db), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    # The JSON is far over a pipe's buffer, so the write does meet the closed end.
    assert proc.returncode == EXIT_BROKEN_PIPE, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_serve_prints_a_banner_and_stops_on_sigint_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    proc = _cli("serve", "--db", str(tmp_path / "s.db"), "--port", str(port), "--workers",
                "2", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    banner = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        banner.append(line.rstrip())
        if "Ctrl-C to stop" in line:
            break
    try:
        text = "\n".join(banner)
        for expected in (f"http://127.0.0.1:{port}", str(tmp_path / "s.db"), "uploads",
                         "schedules", "workers    2", "POST /events", "Ctrl-C to stop"):
            assert expected in text, text
        # Barrier: the server answers, so the signal meets the running server, not its start.
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err, err


def test_ctrl_c_stops_serve_and_its_worker_process_without_a_traceback(tmp_path: Path
                                                                      ) -> None:
    """Ctrl-C in a terminal signals the whole process group: the server and the worker
    process it started for `--processes`."""
    port = free_port()
    proc = _cli("serve", "--db", str(tmp_path / "p.db"), "--port", str(port),
                "--processes", "1", stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        banner = ""
        while "Ctrl-C to stop" not in banner and time.monotonic() < deadline:
            banner += proc.stdout.readline().decode()
        assert "handlers ahead in 1 worker process" in banner, banner
        sent = _cli("send", "--url", url, "--type", "com.switchyard.inventory.updated",
                    "--data", json.dumps({"item_id": "A", "quantity": 3, "action": "restock"}))
        assert sent.wait(60) == 0
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{url}/inventory/A", timeout=2) as answer:
                if json.load(answer)["available"] == 3:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("the restock was not processed")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err, err
    # Nothing of the session is left running (the worker process included; an exited
    # one may wait as a zombie for whoever adopted it to reap it).
    time.sleep(0.2)
    ps = subprocess.run(["ps", "-o", "stat=,pid=,args=", "-s", str(proc.pid)],
                        capture_output=True, text=True)
    assert [line for line in ps.stdout.splitlines() if not line.startswith("Z")] == []


def test_send_to_a_port_that_answers_garbage_is_one_line(tmp_path: Path) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer_garbage() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n")
        conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    proc = _cli("send", "--url", url, "--type", "com.switchyard.inventory.updated",
                "--data", json.dumps({"item_id": "A"}), stdout=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    server.close()
    assert proc.returncode == 1, err
    assert b"Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert b"did not answer properly" in err




def test_the_banner_lists_only_endpoints_the_server_routes(tmp_path: Path) -> None:
    import io

    from adapters.local.http_server import App
    from cli.main import ENDPOINTS

    runtime = Runtime(tmp_path / "routes.db")
    app = App(runtime)
    try:
        for endpoint in ENDPOINTS:
            method, path = endpoint.split(" ", 1)
            body = b"{}" if method == "POST" else b""
            status: list[str] = []
            answer = b"".join(app(
                {"REQUEST_METHOD": method, "PATH_INFO": path.replace("{id}", "x"),
                 "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                 "wsgi.input": io.BytesIO(body)},
                lambda code, headers, *_, into=status: into.append(code)))
            # A routed path may still answer 404 for an unknown id, never "no route".
            assert not status[0].startswith("405"), (endpoint, status, answer)
            assert b"no route for" not in answer, (endpoint, status, answer)
    finally:
        runtime.close()
