"""The console's HTTP surface over real sockets: page and assets, the JSON API, the
live stream with Last-Event-ID resume, and its guards (JSON-only POSTs, same origin,
bearer token)."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.local.console import app as console_app
from adapters.local.http_server import Access, make_server
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.app import APP
from tests.console.support import order, put_events, stock, wait_for


class Server:
    def __init__(self, runtime: Runtime, port: int) -> None:
        self.runtime, self.port = runtime, port
        self.url = f"http://127.0.0.1:{port}"

    def call(self, path: str, body: Any = None, method: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        request = urllib.request.Request(self.url + path, data, hdrs,
                                         method=method or ("POST" if data else "GET"))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def stream(self, last_id: int | None = None, headers: dict[str, str] | None = None,
               until: str = "caught-up") -> tuple[int, list[tuple[str, str | None, str]]]:
        """Read the event stream until the `until` event; (status, [(event, id, data)])."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        hdrs = dict(headers or {})
        if last_id is not None:
            hdrs["Last-Event-ID"] = str(last_id)
        conn.request("GET", "/api/stream", headers=hdrs)
        response = conn.getresponse()
        out: list[tuple[str, str | None, str]] = []
        if response.status != 200:
            conn.close()
            return response.status, out
        assert response.getheader("Content-Type").startswith("text/event-stream")
        event, ident, data = "message", None, ""
        while True:
            line = response.fp.readline().decode().rstrip("\n")
            if line == "":
                out.append((event, ident, data))
                if event == until:
                    break
                event, ident, data = "message", None, ""
            elif line.startswith(":") or line.startswith("retry:"):
                continue
            else:
                key, _, value = line.partition(": ")
                if key == "event":
                    event = value
                elif key == "id":
                    ident = value
                elif key == "data":
                    data += value
        conn.close()
        return 200, out


@pytest.fixture()
def server(tmp_path, monkeypatch) -> Iterator[Server]:
    monkeypatch.delenv("SWITCHYARD_TOKEN", raising=False)
    yield from _serve(tmp_path)


def _serve(tmp_path, access: Access | None = None) -> Iterator[Server]:
    runtime = Runtime(tmp_path / "console.db", settings=RuntimeSettings(
        retry_scale=0.001, poll_interval=0.01))
    runtime.start(workers=2)
    server = make_server(runtime, "127.0.0.1", 0, access=access)
    thread = threading.Thread(target=_run, args=(server,), daemon=True)
    thread.start()
    yield Server(runtime, server.effective_port)
    server.close()
    runtime.close()


def _settle(server: Server) -> None:
    wait_for(lambda: server.runtime.counts()["queued"] == 0
             and server.runtime.counts()["sagas_active"] == 0, 30, "the runtime idle")


def test_the_page_and_its_assets_are_served_with_a_strict_policy(server: Server) -> None:
    status, page = server.call("/")
    assert status == 200 and "<title>Switchyard console</title>" in page
    for asset in ("/console/console.js", "/console/console.css"):
        request = urllib.request.urlopen(server.url + asset, timeout=10)
        assert request.status == 200 and request.read()
        assert "script-src 'self'" in request.headers["Content-Security-Policy"]
        assert request.headers["X-Content-Type-Options"] == "nosniff"
    assert server.call("/console/../runtime.py")[0] == 404
    assert server.call("/console/app.py")[0] == 404
    assert server.call("/", {"x": 1})[0] == 405
    # The ingress keeps its routes.
    assert server.call("/health")[1]["status"] == "ok"


def test_topology_is_the_app_description(server: Server) -> None:
    status, app = server.call("/api/app")
    assert status == 200
    assert [c["name"] for c in app["consumers"]] == [c.name for c in APP.consumers]
    orders = next(c for c in app["consumers"] if c["name"] == "orders")
    assert orders["dlq"] == "orders-dlq" and orders["starts_saga"] is True
    created = next(t for t in app["types"] if t["type"] == "com.switchyard.order.created")
    assert set(created["consumers"]) == {"orders", "order-analytics"}
    assert "file-processor" in created["emitted_by"]
    steps = [s["name"] for s in app["saga"]["steps"]]
    assert steps == [s.name for s in APP.saga.steps]
    assert any(s["compensate"] for s in app["saga"]["steps"])
    assert app["schedules"][0]["cron"] == "0 3 * * *"


def test_send_orders_tables_and_the_order_trace(server: Server) -> None:
    status, samples = server.call("/api/samples")
    assert status == 200 and set(samples["samples"]) == {t.type for t in APP.catalog}
    restock = samples["samples"]["com.switchyard.inventory.updated"]["event"]
    assert server.call("/api/send", {"event": {**restock, "quantity": 5}})[0] == 202
    assert server.call("/api/send", {"event": put_events(order("C-1", "item-1", 1, 9.99))}
                       )[0] == 202
    _settle(server)
    status, page = server.call("/api/tables/orders?offset=0&limit=1")
    assert status == 200 and page["total"] == 1 and page["rows"][0]["status"] == "completed"
    status, view = server.call("/api/orders/C-1")
    assert status == 200 and view["order"]["status"] == "completed"
    assert view["saga"]["status"] == "completed"
    types = [row["type"] for row in view["trace"]]
    assert "saga.payment.action" in types and "com.switchyard.order.created" in types
    assert view["trace"] == server.runtime.trace("C-1")  # what `switchyard trace` prints
    assert server.call("/api/orders/nope")[0] == 404
    assert server.call("/api/tables/secrets")[0] == 404
    assert server.call("/api/tables/orders?offset=x")[0] == 400


def test_send_refuses_bad_input_as_every_front_door_does(server: Server) -> None:
    status, reply = server.call("/api/send", {"event": {"type": "x"}})
    assert status == 400 and any("id" in p for p in reply["problems"])
    status, reply = server.call("/api/send", {"nothing": 1})
    assert status == 400 and "send {" in reply["error"]
    bad = put_events(("inventory", "Inventory Updated", {"item_id": "a", "quantity": -1,
                                                        "action": "restock"}))
    status, reply = server.call("/api/send", {"event": bad})
    assert status == 400 and any("quantity" in p for p in reply["problems"]), reply
    assert server.runtime.counts()["events"] == 0


def test_dead_letters_redrive_and_discard_like_the_cli(server: Server) -> None:
    server.call("/api/send", {"event": put_events(stock("ghost", 2, "remove"),
                                                  stock("phantom", 1, "remove"))})
    _settle(server)
    status, dlq = server.call("/api/dlq")
    by_item = {e["event"]["data"]["item_id"]: e["dlq_id"] for e in dlq["entries"]}
    assert status == 200 and set(by_item) == {"ghost", "phantom"}
    assert "only 0 available" in dlq["entries"][0]["reason"]
    server.call("/api/send", {"event": put_events(stock("ghost", 5))})
    _settle(server)
    status, reply = server.call("/api/dlq/redrive", {"ids": [by_item["ghost"]]})
    assert status == 200 and reply["redriven"] == [by_item["ghost"]]
    _settle(server)
    assert server.runtime.available("ghost") == 3
    # Redrive is idempotent: the row is marked, a second redrive does nothing.
    assert server.call("/api/dlq/redrive", {"ids": [by_item["ghost"]]})[1] == {
        "redriven": [], "not_redriven": [by_item["ghost"]]}
    status, reply = server.call("/api/dlq/discard", {"ids": [by_item["phantom"]]})
    assert status == 200 and reply["discarded"] == [by_item["phantom"]]
    [record] = server.runtime.discarded()
    assert record["dlq_id"] == by_item["phantom"] and record["discarded_by"].startswith(
        "console (")
    status, dlq = server.call("/api/dlq")
    assert dlq["entries"] == [] and dlq["discarded"] == 1
    for bad in ({"ids": []}, {"ids": ["1"]}, {"ids": [True]}, []):
        assert server.call("/api/dlq/discard", bad)[0] == 400


def test_state_changes_need_json_post_from_the_same_origin(server: Server) -> None:
    form = b"ids=1"
    status, reply = server.call("/api/dlq/redrive", form,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "application/json" in reply["error"]
    status, reply = server.call("/api/dlq/redrive", {"ids": [1]},
                                headers={"Origin": "http://evil.example"})
    assert status == 403 and "evil.example" in reply["error"]
    own = f"http://127.0.0.1:{server.port}"
    assert server.call("/api/dlq/redrive", {"ids": [1]}, headers={"Origin": own})[0] == 200
    assert server.call("/api/dlq/redrive")[0] == 405  # GET
    assert server.call("/api/dlq/redrive", b"{nope")[0] == 400


def test_the_stream_resumes_after_last_event_id(server: Server) -> None:
    server.call("/api/send", {"event": put_events(stock("s1", 1), stock("s2", 1))})
    _settle(server)
    status, messages = server.stream()
    assert status == 200
    assert messages[0][0] == "columns"
    columns = json.loads(messages[0][2])
    rows = [row for event, _, data in messages if event == "rows" for row in json.loads(data)]
    seqs = [row[columns.index("seq")] for row in rows]
    assert seqs == sorted(seqs) and len(seqs) == len(server.runtime.timeline())
    last_id = int([ident for event, ident, _ in messages if event == "rows"][-1])
    assert last_id == seqs[-1]
    server.call("/api/send", {"event": put_events(stock("s3", 1))})
    _settle(server)
    _, resumed = server.stream(last_id=last_id)
    more = [row for event, _, data in resumed if event == "rows" for row in json.loads(data)]
    assert more and all(row[0] > last_id for row in more)
    assert {row[columns.index("subject")] for row in more} == {"s3"}
    assert server.stream(headers={"Last-Event-ID": "abc"})[0] == 400


def test_the_stream_sends_a_large_backlog_in_batches(server: Server, monkeypatch) -> None:
    monkeypatch.setattr(console_app, "STREAM_BATCH", 7)
    server.call("/api/send", {"event": put_events(*[stock(f"b{n}", 1) for n in range(10)])})
    _settle(server)
    _, messages = server.stream()
    batches = [json.loads(data) for event, _, data in messages if event == "rows"]
    assert len(batches) >= 2 and all(len(b) <= 7 for b in batches)
    assert sum(len(b) for b in batches) == len(server.runtime.timeline())


@pytest.fixture()
def token_server(tmp_path, monkeypatch) -> Iterator[Server]:
    monkeypatch.delenv("SWITCHYARD_TOKEN", raising=False)
    yield from _serve(tmp_path, Access(token="s3cret-token"))


def test_a_token_guards_the_api_but_not_the_empty_page(token_server: Server) -> None:
    assert token_server.call("/")[0] == 200  # no data in it: the token is in the fragment
    assert token_server.call("/console/console.js")[0] == 200
    status, reply = token_server.call("/api/dlq")
    assert status == 401 and "Bearer" in reply["error"]
    assert token_server.call("/api/dlq", headers={"Authorization": "Bearer nope"})[0] == 401
    ok = {"Authorization": "Bearer s3cret-token"}
    assert token_server.call("/api/dlq", headers=ok)[0] == 200
    assert token_server.stream()[0] == 401
    assert token_server.stream(headers=ok)[0] == 200
    assert token_server.call("/api/dlq/redrive", {"ids": [1]})[0] == 401


def _run(server) -> None:  # type: ignore[no-untyped-def]
    try:
        server.run()
    except OSError:  # close() from the test's thread pulls the socket out from under select
        pass


def test_the_console_url_carries_the_token_in_its_fragment() -> None:
    from cli.console import console_url

    assert console_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/"
    assert console_url("::1", 9000, "t0k") == "http://[::1]:9000/#token=t0k"


def test_serve_offers_reload(capsys) -> None:
    from cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0 and "--reload" in capsys.readouterr().out
