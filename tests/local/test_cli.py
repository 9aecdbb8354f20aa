"""The `switchyard` command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.local.runtime import Runtime, RuntimeSettings
from cli.main import main
from tests.factories import order_created, restock, workflow_triggered
from tests.local.test_http import serving

ROOT = Path(__file__).resolve().parents[2]


def test_demo_shows_the_five_outcomes() -> None:
    result = subprocess.run([sys.executable, "-m", "cli", "demo"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for line in ("[ok] order 1001 completed", "[ok] order 1002 cancelled: payment declined",
                 "[ok] order 1003 cancelled out of stock, payment refunded",
                 "[ok] duplicate delivery had no effect",
                 "[ok] malformed event dead-lettered with its reason"):
        assert line in out
    assert "Order Created                  #1001    -> orders        -> duplicate" in out
    assert "data.customer_id is required" in out
    assert result.stderr == ""


def _seeded_db(tmp_path: Path) -> Path:
    db = tmp_path / "cli.db"
    rt = Runtime(db, settings=RuntimeSettings(retry_scale=0.001, max_deliveries=2))
    rt.ingest([restock("A", 5), order_created("o1", [("A", 1, 3.0)]),
               workflow_triggered("ghost")])
    rt.run_until_idle()
    rt.close()
    return db


def test_orders_and_dlq_commands_read_the_database(tmp_path, capsys) -> None:
    db = _seeded_db(tmp_path)
    assert main(["orders", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "o1" in out and "completed" in out
    assert main(["dlq", "list", "--db", str(db), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["consumer"] == "orders" and "ghost" in entry["reason"]
    assert main(["dlq", "redrive", "--db", str(db)]) == 0
    assert "redriven 1 entry" in capsys.readouterr().out
    assert main(["dlq", "redrive", "--db", str(db)]) == 0
    assert "redriven 0 entries" in capsys.readouterr().out


@pytest.fixture()
def api(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[str]:
    """A running server (runtime, workers and API), started after the output capture and
    so stopped before it ends: its workers, still retrying what the test sent, never log
    to a capture pytest has closed."""
    with serving(tmp_path) as (url, _):
        yield url


def test_send_posts_to_a_running_server(api: str, tmp_path, capsys) -> None:
    code = main(["send", "--url", api, "--type", "com.switchyard.inventory.updated",
                 "--data", '{"item_id": "Q", "quantity": 4, "action": "restock"}'])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 1
    entries = tmp_path / "entries.json"
    entries.write_text(json.dumps({"Entries": [{"Source": "workflow",
                                                "DetailType": "Workflow Triggered",
                                                "Detail": json.dumps({"workflow_id": "w",
                                                                      "order_id": "x"})}]}))
    assert main(["send", "--url", api, "--file", str(entries)]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"specversion": "1.0"}')
    assert main(["send", "--url", api, "--file", str(bad)]) == 1
    assert "missing required attribute 'id'" in capsys.readouterr().err


def test_send_explains_when_no_server_runs(capsys) -> None:
    code = main(["send", "--url", "http://127.0.0.1:9", "--type",
                 "com.switchyard.inventory.updated", "--data", "{}"])
    assert code == 1
    assert "is `switchyard serve` running?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_exits_cleanly(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0


def test_serve_settings_carry_the_decline_limit(monkeypatch, tmp_path) -> None:
    from cli.main import _runtime, build_parser

    monkeypatch.setenv("SWITCHYARD_PAYMENT_DECLINE_ABOVE", "50.00")
    args = build_parser().parse_args(["serve", "--db", str(tmp_path / "x.db")])
    runtime = _runtime(args)
    try:
        assert runtime.settings.decline_above_cents == 5000
        args = build_parser().parse_args(["serve", "--db", str(tmp_path / "x.db"),
                                          "--decline-above", "10"])
        assert _runtime(args).settings.decline_above_cents == 1000
    finally:
        runtime.close()


def test_trace_prints_an_orders_full_path(tmp_path, capsys) -> None:
    db = tmp_path / "trace.db"
    rt = Runtime(db, settings=RuntimeSettings(retry_scale=0.001))
    rt.ingest([restock("A", 1)])
    rt.ingest([order_created("o1", [("A", 2, 5.0)])])  # out of stock: refund, cancel
    rt.run_until_idle()
    rt.close()
    assert main(["trace", "o1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    steps = [line.split()[1] for line in out.splitlines()[3:]]
    for expected in ("com.switchyard.order.created", "saga.create_order.action",
                     "saga.payment.action", "saga.reserve_inventory.action",
                     "saga.payment.compensate", "saga.cancel_order.action", "saga.finished",
                     "com.switchyard.notification.sent"):
        assert expected in steps, (expected, out)
    assert steps.index("saga.payment.action") < steps.index("saga.payment.compensate")
    assert main(["trace", "nope", "--db", str(db)]) == 1
