"""The console in a real headless Chromium against a real `switchyard serve`: send an
order from the form, watch it complete, open its waterfall, dead-letter an event, redrive
it after a fix, discard another; a page of 10,000 timeline rows stays a few dozen nodes;
with tracing on, an order's spans show as a tree under its waterfall."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.support import start_server
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TOKEN = "browser-test-token"


@pytest.fixture()
def served(tmp_path: Path, monkeypatch) -> Iterator[ServeProcess]:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)  # tracing off
    server = start_server(tmp_path, token=TOKEN)  # the page must work with a token
    # The server asks for it: an API call without it is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/api/dlq", timeout=5)
    assert refused.value.code == 401
    yield server
    server.stop()


def _send(page: Any, type_: str, edit: dict[str, Any]) -> None:
    page.click("button[data-tab=send]")
    page.select_option("#send-type", type_)
    event = json.loads(page.input_value("#send-body"))
    event["data"].update(edit)
    page.fill("#send-body", json.dumps(event))
    page.click("#send-submit")
    page.wait_for_selector(f"#send-result.o-ok:has-text('{event['id']}')")


def _dlq_rows(page: Any) -> Any:
    page.click("button[data-tab=dlq]")
    return page.locator("#dlq-table tr[data-dlq-row]")


def test_order_waterfall_and_dead_letters_from_the_console(page: Any, served: ServeProcess
                                                          ) -> None:
    sizes: dict[str, int] = {}
    page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body()))
            if "/api/" not in r.url else None)
    page.goto(f"{served.url}/#token={TOKEN}")
    page.wait_for_selector("#live.on")
    assert "token" not in page.url  # taken into sessionStorage, out of the address bar

    _send(page, "com.switchyard.inventory.updated", {"item_id": "lamp", "quantity": 4})
    _send(page, "com.switchyard.order.created", {
        "order_id": "W-1", "customer_id": "ada", "total": 39.98,
        "items": [{"item_id": "lamp", "quantity": 2, "price": 19.99}]})

    page.click("button[data-tab=timeline]")
    page.fill("#f-order", "W-1")
    page.wait_for_selector("#t-rows .row:has-text('saga.finished') .o-completed")
    page.click("#t-rows .row[data-order='W-1'] >> nth=0")  # timeline -> order view
    page.wait_for_selector("#order-state.completed")
    steps = page.locator("#waterfall .lbl").all_inner_texts()
    assert any("saga.payment.action" in s for s in steps), steps
    assert any("order.created" in s for s in steps), steps
    assert "OTEL_TRACES_EXPORTER=console" in page.inner_text("#spans-off")  # tracing off
    page.click("button[data-tab=orders]")
    page.wait_for_selector("#orders-table tr[data-order='W-1'] .o-completed")

    # A removal of stock that is not there is dead-lettered with its reason ...
    _send(page, "com.switchyard.inventory.updated",
          {"item_id": "ghost", "quantity": 3, "action": "remove"})
    rows = _dlq_rows(page)
    rows.first.wait_for()
    assert "only 0 available" in rows.first.inner_text()
    # ... redriven from the console after a restock fixes it ...
    _send(page, "com.switchyard.inventory.updated", {"item_id": "ghost", "quantity": 3})
    rows = _dlq_rows(page)
    page.check("#dlq-table input[type=checkbox] >> nth=0")
    page.click("#dlq-redrive")
    page.wait_for_selector("#dlq-result:has-text('redriven: ')")
    page.wait_for_selector("#dlq-table td:has-text('no dead letters')")
    assert served.get("/inventory/ghost")["available"] == 0  # restocked 3, removed 3

    # ... and another one discarded, with a durable record of who and when.
    _send(page, "com.switchyard.inventory.updated",
          {"item_id": "void", "quantity": 1, "action": "remove"})
    rows = _dlq_rows(page)
    rows.first.wait_for()
    page.check("#dlq-table input[type=checkbox] >> nth=0")
    page.click("#dlq-discard")
    page.wait_for_selector("#dlq-table td:has-text('1 discarded so far')")
    conn = sqlite3.connect(f"file:{served.db}?mode=ro", uri=True)
    try:
        record = conn.execute("SELECT event_type, discarded_by FROM dlq_discarded").fetchall()
    finally:
        conn.close()
    assert len(record) == 1 and record[0][1].startswith("console (")

    page.click("button[data-tab=topology]")
    page.wait_for_selector("#topo svg g.consumer")
    page.click("button[data-tab=health]")
    page.wait_for_selector("#health-view .card")
    page.click("button[data-tab=tables]")
    page.select_option("#table-name", "payments")
    page.wait_for_selector("#table-grid td:has-text('W-1')")
    assert page.errors == []
    weight = sum(sizes.values())
    print(f"\nconsole page weight: {weight} bytes for / and its assets: {sizes}")
    assert weight < 64 * 1024, sizes


def test_an_orders_spans_show_as_a_tree_when_tracing_is_on(page: Any, tmp_path: Path,
                                                           monkeypatch) -> None:
    from tests.console.support import order, put_events, stock

    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # spans to the server's log
    server = ServeProcess(tmp_path / "traced.db", tmp_path / "traced.log", workers=2,
                          token=TOKEN)
    server.start()
    try:
        server.post(put_events(stock("lamp", 3)))
        server.wait_quiet(60)
        server.post(put_events(order("S-1", "lamp", 1, 9.0)))
        server.wait_quiet(60)
        page.goto(f"{server.url}/#token={TOKEN}")
        page.click("button[data-tab=orders]")
        page.click("#orders-table tr[data-order='S-1']")
        page.wait_for_selector("#spans .sn[data-depth='2']")
        names = page.locator("#spans .sn").all_inner_texts()
        assert names[0] == "send com.switchyard.order.created", names
        assert "process orders" in names and "saga create_order" in names, names
        step = page.locator("#spans .sn:text-is('saga create_order')")
        assert step.get_attribute("data-depth") == "2"
        assert step.evaluate("e => getComputedStyle(e).paddingLeft") == "28px"  # indented
        assert page.locator("#spans .o-ok").count() >= 4  # outcomes shown
        assert page.locator("#spans-off").count() == 0
        assert page.errors == []  # no CSP violation, no script error
    finally:
        server.stop()


def test_ten_thousand_rows_render_as_a_window(page: Any, served: ServeProcess) -> None:
    # Timeline rows written straight into the database: the page only displays them.
    conn = sqlite3.connect(served.db, timeout=30)
    now = time.time()
    with conn:
        conn.executemany(
            "INSERT INTO timeline (at, event_id, event_type, consumer, attempt, outcome, "
            "detail, duration_ms, subject) VALUES (?, ?, ?, ?, 1, ?, ?, 0.5, ?)",
            [(now + n / 1000, f"e{n}", "com.switchyard.inventory.updated", "inventory",
              "processed" if n % 10 else "retry", f"row #{n}.", f"item-{n % 50}")
             for n in range(10_000)])
    conn.close()
    started = time.monotonic()
    page.goto(f"{served.url}/#token={TOKEN}")
    page.wait_for_selector("#t-count:has-text('10000 of 10000 rows')")
    loaded = time.monotonic() - started
    assert page.locator("#t-rows .row").count() < 80  # the DOM keeps only visible rows
    page.eval_on_selector("#t-scroll", "el => { el.scrollTop = el.scrollHeight; }")
    page.wait_for_selector("#t-rows .row:has-text('row #0.')")  # the oldest, at the bottom
    page.select_option("#f-outcome", "retry")
    page.wait_for_selector("#t-count:has-text('1000 of 10000 rows')")
    assert page.errors == []
    print(f"\n10,000 timeline rows streamed and rendered in {loaded:.2f}s")
    assert loaded < 20


def test_the_console_shows_a_reload_and_keeps_working(page: Any, tmp_path: Path,
                                                      monkeypatch) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.console.support import wait_for
    from tests.serve_process import ROOT, free_port

    module = tmp_path / "console_reload_app.py"
    module.write_text("from handlers.app import APP  # noqa: F401\n")
    port, log = free_port(), tmp_path / "reload.log"
    env = {**os.environ, "SWITCHYARD_APP": "console_reload_app:APP",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env.pop("SWITCHYARD_TOKEN", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--reload",
                                 "--db", str(tmp_path / "r.db"), "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        page.goto(wait_for(lambda: _answers(url) and url + "/", 30, "the server"))
        page.wait_for_selector("#live.on")
        module.write_text("from handlers.app import APP  # noqa: F401\n# changed\n")
        page.wait_for_selector("#banner:has-text('Runtime reloaded')", timeout=60_000)
        assert "console_reload_app.py changed" in page.inner_text("#banner")
        _send(page, "com.switchyard.inventory.updated", {"item_id": "after", "quantity": 2})
        page.click("button[data-tab=timeline]")
        page.fill("#f-order", "after")
        page.wait_for_selector("#t-rows .row:has-text('processed')")
        assert page.errors == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/health", timeout=2):
            return True
    except OSError:
        return False
