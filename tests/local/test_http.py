"""The local HTTP API, driven over real sockets against waitress."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.local.http_server import MAX_BODY_BYTES, make_server
from adapters.local.runtime import MAX_EVENT_BYTES, Runtime, RuntimeSettings
from handlers.core.events import Event
from handlers.core.http_binding import to_batch, to_binary, to_structured
from tests.eventually import eventually
from tests.factories import order_data


def serve_in_thread(server: Any) -> threading.Thread:
    """Run `server` in a daemon thread until its `close()`."""
    def run() -> None:
        try:
            server.run()
        except OSError:  # close() from another thread pulls the socket out from under poll
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextmanager
def serving(tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    """A runtime with workers and its HTTP API on a free port: (base URL, runtime)."""
    runtime = Runtime(tmp_path / "http.db", settings=RuntimeSettings(
        retry_scale=0.001, poll_interval=0.01))
    runtime.start(workers=2)
    server = make_server(runtime, "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.effective_port}", runtime
    finally:
        server.close()
        runtime.close()


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path) as (url, _):
        yield url


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    with serving(tmp_path) as both:
        yield both


def call(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def put_events(*entries: tuple[str, str, dict[str, Any]]) -> bytes:
    return json.dumps({"Entries": [{"Source": s, "DetailType": d, "Detail": json.dumps(x)}
                                   for s, d, x in entries]}).encode()


def order_status(api: str, order_id: str) -> str | None:
    status, body = call(f"{api}/orders/{order_id}")
    return body["status"] if status == 200 and body["status"] != "pending" else None


def test_seed_put_events_entries_drive_the_whole_flow(api: str) -> None:
    status, body = call(f"{api}/events", "POST", put_events(
        ("inventory", "Inventory Updated", {"item_id": "A", "quantity": 5, "action": "restock"})),
        {"Content-Type": "application/json"})
    assert status == 202 and body["accepted"] == 1 and len(body["ids"]) == 1
    eventually(lambda: call(f"{api}/inventory/A")[1]["available"] == 5, "the restock")
    status, _ = call(f"{api}/events", "POST", put_events(
        ("orders", "Order Created", order_data("100", [("A", 2, 10.0)]))),
        {"Content-Type": "application/json"})
    assert status == 202
    assert eventually(lambda: order_status(api, "100"), "order 100 to finish") == "completed"
    assert call(f"{api}/inventory/A") == (200, {"item_id": "A", "available": 3})
    status, order = call(f"{api}/orders/100")
    assert order["order_id"] == "100" and "reason" not in order


@pytest.mark.parametrize("encode", [to_binary, to_structured], ids=["binary", "structured"])
def test_cloudevents_modes_are_accepted(api: str, encode) -> None:  # type: ignore[no-untyped-def]
    event = Event.new("orders", "com.switchyard.order.created",
                      order_data("200", [("Z", 1, 5000.0)]))
    headers, body = encode(event)
    status, reply = call(f"{api}/events", "POST", body, headers)
    assert (status, reply["ids"]) == (202, [event.id])
    assert eventually(lambda: order_status(api, "200"), "order 200 to finish") == "cancelled"
    _, order = call(f"{api}/orders/200")
    assert order["reason"] == "payment_declined"


def test_batch_mode_returns_every_id(api: str) -> None:
    events = [Event.new("inventory", "com.switchyard.inventory.updated",
                        {"item_id": f"I{n}", "quantity": n + 1, "action": "restock"})
              for n in range(3)]
    headers, body = to_batch(events)
    status, reply = call(f"{api}/events", "POST", body, headers)
    assert status == 202 and reply["ids"] == [e.id for e in events]
    eventually(lambda: call(f"{api}/inventory/I2")[1]["available"] == 3, "the restocks")


@pytest.mark.parametrize(("headers", "body", "expected"), [
    ({"Content-Type": "application/cloudevents+json"}, b"{not json",
     ["not valid JSON"]),
    ({"Content-Type": "application/cloudevents+json"},
     json.dumps({"specversion": "0.3", "data": {}}).encode(),
     ["missing required attribute 'id'", "missing required attribute 'source'",
      "missing required attribute 'type'", "unsupported specversion '0.3'"]),
    ({"Content-Type": "application/cloudevents-batch+json"},
     json.dumps([{"specversion": "1.0", "id": "1", "source": "s", "type": "t"}, 7]).encode(),
     ["[1]"]),
    ({"Content-Type": "application/json"},
     json.dumps({"Entries": [{"Source": "orders", "DetailType": "Order Created",
                              "Detail": {"order_id": "1"}}]}).encode(),
     ["Entries[0]", "Detail must be a JSON string"]),
    ({"Content-Type": "application/json"}, b'{"not": "an event"}', ["not an event", "'Entries'"]),
    ({"Content-Type": "text/plain"}, b"hello", ["not an event", "'text/plain'"]),
])
def test_malformed_input_is_400_naming_every_problem(api: str, headers, body,  # type: ignore[no-untyped-def]
                                                    expected) -> None:
    status, reply = call(f"{api}/events", "POST", body, headers)
    assert status == 400, reply
    text = json.dumps(reply["problems"])
    for fragment in expected:
        assert fragment in text, (fragment, reply)
    assert call(f"{api}/health")[1]["events"] == 0


def test_schema_violation_is_refused_at_the_door(api: str) -> None:
    event = Event.new("inventory", "com.switchyard.inventory.updated",
                      {"item_id": "", "action": "sell"})
    status, reply = call(f"{api}/events", "POST", *reversed(to_structured(event)))
    assert status == 400, reply
    assert reply == {"error": "invalid request", "problems": [
        "event: data.quantity is required", "event: data.item_id must not be empty",
        "event: data.action must be one of 'restock', 'remove', got 'sell'"]}
    assert call(f"{api}/health")[1]["events"] == 0


def test_an_event_that_bypassed_the_door_is_dead_lettered_and_redriven(
        served: tuple[str, Runtime]) -> None:
    # Producers that put events on the bus directly skip the ingress policy: the
    # consumer dead-letters such an event with the reason, and it can be listed and
    # redriven over the API.
    api, runtime = served
    event = Event.new("inventory", "com.switchyard.inventory.updated", {"item_id": "x"})
    runtime.ingest([event], origin="bus")
    entries = eventually(lambda: call(f"{api}/dlq")[1]["entries"], "the dead letter")
    (entry,) = entries
    assert entry["consumer"] == "inventory" and entry["attempts"] == 1
    assert "data.quantity is required" in entry["reason"]
    assert entry["event"]["id"] == event.id
    assert call(f"{api}/dlq/redrive", "POST", b"", {"Content-Type": "application/json"}) == (
        200, {"redriven": 1, "dlq_ids": [entry["dlq_id"]]})
    # Not fixed, so it is dead-lettered again: a new entry, never lost.
    (again,) = eventually(lambda: call(f"{api}/dlq")[1]["entries"], "the second dead letter")
    assert again["event"]["id"] == event.id and again["dlq_id"] > entry["dlq_id"]


def test_oversized_body_is_413(api: str) -> None:
    # Announce the size and wait for the verdict, as a client using Expect would.
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"POST /events HTTP/1.1\r\nHost: {host}\r\n"
                     "Content-Type: application/cloudevents+json\r\n"
                     f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        conn.sendall(b"{" * 1024)
        reply = conn.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply


def test_oversized_event_is_413_and_one_byte_under_passes(api: str) -> None:
    big = Event.new("inventory", "com.switchyard.inventory.updated",
                    {"item_id": "A", "quantity": 1, "action": "restock",
                     "pad": "x" * MAX_EVENT_BYTES})
    status, reply = call(f"{api}/events", "POST", *reversed(to_structured(big)))
    assert status == 413 and "over the local bus limit" in reply["error"]


def test_unknown_order_is_404_and_wrong_method_is_405(api: str) -> None:
    assert call(f"{api}/orders/nope")[0] == 404
    assert call(f"{api}/events")[0] == 405
    assert call(f"{api}/nowhere")[0] == 404
    status, health = call(f"{api}/health")
    assert status == 200 and health["status"] == "ok"


def test_close_ends_the_servers_threads(tmp_path: Path) -> None:
    """`close` ends the request threads and the loop in `run`, not only the listening
    socket: a server its caller closed leaves no thread behind to answer or log later,
    even with a client's keep-alive connection and the console's event stream open."""
    runtime = Runtime(tmp_path / "close.db")
    before = set(threading.enumerate())
    server = make_server(runtime, "127.0.0.1", 0)
    serve_in_thread(server)
    port = server.effective_port
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        kept.request("GET", "/health")
        assert kept.getresponse().read()  # answered; the connection stays open
        stream.request("GET", "/api/stream")
        assert stream.getresponse().status == 200  # a stream a request thread keeps
    finally:
        server.close()
        runtime.close()
        kept.close()
        stream.close()
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:
        thread.join(30)
    assert [t.name for t in started if t.is_alive()] == []
