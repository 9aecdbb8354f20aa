"""Kill a real `switchyard serve` with SIGKILL mid-flight, restart it, check invariants."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.factories import order_data

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ITEMS = {"A": 40, "B": 25, "C": 10}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, db: Path, port: int, log: Path) -> None:
        self.db, self.port, self.log = db, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "serve", "--db", str(self.db),
                 "--port", str(self.port), "--workers", "4", "--visibility-timeout", "1"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/health")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server did not start; log:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def post(self, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + "/events", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())


def _pending(db: Path) -> int:
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT (SELECT COUNT(*) FROM queue) + (SELECT COUNT(*) FROM"
                                " sagas WHERE status IN ('running', 'compensating'))")
                   .fetchone()[0])
    finally:
        conn.close()


def _entries(source: str, detail_type: str, detail: dict) -> dict:
    return {"Entries": [{"Source": source, "DetailType": detail_type,
                         "Detail": json.dumps(detail)}]}


def test_sigkill_mid_flight_loses_nothing_and_keeps_stock_consistent(tmp_path) -> None:
    server = Server(tmp_path / "crash.db", _free_port(), tmp_path / "server.log")
    server.start()
    rng = random.Random(7)
    accepted: dict[str, dict] = {}
    in_flight: list[int] = []
    accepted_ids: list[str] = []
    try:
        for item, qty in ITEMS.items():
            assert server.post(_entries("inventory", "Inventory Updated",
                                        {"item_id": item, "quantity": qty,
                                         "action": "restock"}))[0] == 202
        orders = []
        for n in range(80):
            items = [(i, rng.randint(1, 4), rng.choice([5.0, 20.0, 400.0]))
                     for i in rng.sample(sorted(ITEMS), rng.randint(1, 2))]
            orders.append(order_data(f"k{n}", items))
        killer = threading.Timer(0.0, lambda: None)

        def send(order: dict) -> None:
            # A client that retries until it gets a 202, across the crash.
            while True:
                try:
                    status, reply = server.post(_entries("orders", "Order Created", order))
                    assert status == 202
                    accepted[order["order_id"]] = order
                    accepted_ids.extend(reply["ids"])
                    return
                except (OSError, urllib.error.URLError):
                    time.sleep(0.05)

        for n, order in enumerate(orders):
            send(order)
            if n == 40:
                server.kill()  # events queued, sagas mid-way, workers mid-transaction
                in_flight.append(_pending(tmp_path / "crash.db"))
                killer = threading.Timer(0.3, server.start)
                killer.start()
        killer.join()
        assert len(accepted) == 80
        assert in_flight[0] > 0, "the kill found no work in flight: the test proved nothing"

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            health = server.get("/health")
            if health["queued"] == 0 and health["sagas_active"] == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not quiet: {health}")

        completed: dict[str, int] = {item: 0 for item in ITEMS}
        statuses = {}
        for order_id, order in accepted.items():
            got = server.get(f"/orders/{order_id}")
            statuses[order_id] = got["status"]
            assert got["status"] in ("completed", "cancelled"), got
            if got["status"] == "completed":
                for item in order["items"]:
                    completed[item["item_id"]] += item["quantity"]
            else:
                assert got["reason"] in ("payment_declined", "out_of_stock"), got
        for item, stocked in ITEMS.items():
            available = server.get(f"/inventory/{item}")["available"]
            assert available == stocked - completed[item] >= 0, (item, available)
        assert server.get("/dlq")["entries"] == []
        assert set(statuses.values()) == {"completed", "cancelled"}
    finally:
        server.stop()

    # Every accepted event was handled to the end by its consumer (record status "done"),
    # and money moved exactly once per order: checked in the database itself.
    import sqlite3
    conn = sqlite3.connect(tmp_path / "crash.db")
    records = {key: json.loads(doc)["status"] for key, doc in
               conn.execute("SELECT key, doc FROM items WHERE tbl = 'processed'")}
    for event_id in accepted_ids:
        assert records.get(f"orders|orders|{event_id}") == "done", event_id
    payments = [json.loads(r[0]) for r in
                conn.execute("SELECT doc FROM items WHERE tbl = 'payments'")]
    charges = {p["order_id"]: p for p in payments if p["kind"] == "charge"}
    refunds = {p["charge_id"] for p in payments if p["kind"] == "refund"}
    for order_id, status in statuses.items():
        charge = charges.get(order_id)
        if status == "completed":
            assert charge["status"] == "charged" and charge["charge_id"] not in refunds
        elif charge is not None and charge["status"] == "charged":
            assert charge["charge_id"] in refunds, order_id
    assert "Traceback" not in (tmp_path / "server.log").read_text()
