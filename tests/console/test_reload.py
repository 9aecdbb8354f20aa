"""`switchyard serve --reload`: a source change mid-stream restarts the runtime, and every
event is processed exactly once (none lost, none with a second effect)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters.local.reload import changed, snapshot, watched_roots
from tests.console.support import order, put_events, stock, wait_for
from tests.serve_process import ROOT, free_port

FIRST_ORDERS = 20
MAX_ORDERS = 400


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)


def _post(port: int, body: dict) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/events", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _health(port: int) -> dict | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    except OSError:
        return None
    finally:
        conn.close()


@pytest.mark.slow
def test_a_change_mid_stream_reloads_without_loss_or_double_effect(tmp_path: Path) -> None:
    # The app module the reloader watches lives in tmp: the test never touches the repo.
    app_module = tmp_path / "reload_app.py"
    app_module.write_text("from handlers.app import APP  # noqa: F401\n")
    db, log = tmp_path / "reload.db", tmp_path / "reload.log"
    port = free_port()
    env = {**os.environ, "SWITCHYARD_APP": "reload_app:APP",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--reload", "--db", str(db),
             "--port", str(port), "--workers", "2", "--visibility-timeout", "5"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _health(port), 30, "the server answering")
        assert _post(port, put_events(stock("bolt", 1000))) == 202
        statuses: list[int] = []

        def reloaded() -> bool:
            conn = _db(db)
            try:
                return bool(conn.execute("SELECT 1 FROM timeline WHERE outcome = 'reloaded'"
                                         ).fetchone())
            finally:
                conn.close()

        def producer() -> None:
            # Orders keep coming until the reload is recorded and for a while after it, so
            # the stream spans the restart however slow the machine is.
            after_reload = None
            while len(statuses) < MAX_ORDERS and after_reload != 0:
                statuses.append(_post(port, put_events(order(f"R-{len(statuses)}", "bolt",
                                                             2, 1.5))))
                if after_reload is None and len(statuses) > FIRST_ORDERS and reloaded():
                    after_reload = FIRST_ORDERS
                elif after_reload:
                    after_reload -= 1
                time.sleep(0.05)

        sender = threading.Thread(target=producer)
        sender.start()
        wait_for(lambda: len(statuses) >= FIRST_ORDERS, 60, "the first orders sent")
        # A new mtime (editors write the file anew), while orders are queued and in flight.
        app_module.write_text("from handlers.app import APP  # noqa: F401\n# edited\n")
        sender.join(180)
        sent = len(statuses)
        assert statuses == [202] * sent  # the listener paused at most: nothing refused
        assert sent < MAX_ORDERS, "the reload was never recorded"

        def quiet() -> bool:
            health = _health(port)
            return bool(health) and health["queued"] == 0 and health["sagas_active"] == 0 \
                and health["events"] > sent
        wait_for(quiet, 120, "all work done")
        conn = _db(db)
        try:
            reloads = conn.execute("SELECT detail, at FROM timeline WHERE outcome = "
                                   "'reloaded'").fetchall()
            before, after = conn.execute(
                "SELECT SUM(accepted_at < ?), SUM(accepted_at > ?) FROM events WHERE type = "
                "'com.switchyard.order.created' AND origin = 'http'",
                (reloads[0][1], reloads[0][1])).fetchone()
            statuses_by_order = dict(conn.execute(
                "SELECT key, json_extract(doc, '$.status') FROM items WHERE tbl = 'orders'"))
            payments = conn.execute("SELECT COUNT(*) FROM items WHERE tbl = 'payments'"
                                    ).fetchone()[0]
            available = conn.execute("SELECT json_extract(doc, '$.available') FROM items "
                                     "WHERE tbl = 'inventory' AND key = 'bolt'").fetchone()[0]
            processed = conn.execute(
                "SELECT event_id, COUNT(*) FROM timeline WHERE consumer = 'orders' AND "
                "event_type = 'com.switchyard.order.created' AND outcome = 'processed' "
                "GROUP BY event_id").fetchall()
            charges = conn.execute(
                "SELECT event_id, COUNT(*) FROM timeline WHERE event_type = "
                "'saga.payment.action' AND outcome = 'ok' GROUP BY event_id").fetchall()
            dead = conn.execute("SELECT COUNT(*) FROM dlq").fetchone()[0]
        finally:
            conn.close()
        assert len(reloads) == 1 and "reload_app.py changed" in reloads[0][0]
        assert before > 0 and after > 0, (before, after)  # the stream spanned the reload
        assert statuses_by_order == {f"R-{n}": "completed" for n in range(sent)}
        assert payments == sent  # one charge per order: no double effect
        assert available == 1000 - 2 * sent
        assert len(processed) == sent and {c for _, c in processed} == {1}
        assert len(charges) == sent and {c for _, c in charges} == {1}
        assert dead == 0
        assert "reloading (" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_watch_roots_and_change_detection(tmp_path: Path, monkeypatch) -> None:
    module = tmp_path / "my_app.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    roots = watched_roots("my_app:APP")
    assert roots[0].name == "handlers" and roots[1] == module.resolve()
    before = snapshot(roots)
    assert module.resolve() in before and any(p.name == "app.py" for p in before)
    os.utime(module, ns=(before[module.resolve()] + 10**9,) * 2)
    assert changed(before, snapshot(roots)) == [module.resolve()]
    assert watched_roots("handlers.app:APP") == roots[:1]  # already under handlers/


@pytest.mark.slow
def test_broken_code_waits_for_the_next_change(tmp_path: Path) -> None:
    """A change that does not import stops the server, says so, and the next change
    brings it back on the same port with nothing lost."""
    module = tmp_path / "broken_app.py"
    module.write_text("from handlers.app import APP  # noqa: F401\n")
    db, log = tmp_path / "broken.db", tmp_path / "broken.log"
    port = free_port()
    env = {**os.environ, "SWITCHYARD_APP": "broken_app:APP",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--reload", "--db", str(db),
             "--port", str(port), "--workers", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _health(port), 30, "the server answering")
        assert _post(port, put_events(stock("nut", 3))) == 202
        module.write_text("this is not python(\n")
        wait_for(lambda: "the server exited with code" in log.read_text(), 60,
                 "the broken server reported")
        module.write_text("from handlers.app import APP  # noqa: F401\n# fixed\n")
        wait_for(lambda: _health(port), 60, "the fixed server answering")
        assert _post(port, put_events(stock("nut", 2))) == 202
        wait_for(lambda: (_health(port) or {}).get("queued") == 0, 30, "work done")
        conn = _db(db)
        try:
            available = conn.execute("SELECT json_extract(doc, '$.available') FROM items "
                                     "WHERE tbl = 'inventory' AND key = 'nut'").fetchone()[0]
            reloads = conn.execute("SELECT COUNT(*) FROM timeline WHERE outcome = "
                                   "'reloaded'").fetchone()[0]
        finally:
            conn.close()
        assert available == 5 and reloads == 2
        assert "SyntaxError" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
