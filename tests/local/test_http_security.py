"""The local HTTP server under hostile input, over real sockets: bounded connections,
4xx (never 500) for malformed input, and the local security model (Host check, Origin
check, JSON-only state changes, bearer token). See README.md, "The local runtime"."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.local.http_server import MAX_HEADER_BYTES, Access, make_server
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.catalog import INVENTORY_UPDATED, ORDER_CREATED
from handlers.core.events import Event
from handlers.core.http_binding import to_binary, to_structured
from handlers.core.wire.jsontext import MAX_JSON_DEPTH
from tests.factories import order_data
from tests.serve_process import ROOT, ServeProcess

TOKEN = "t0ken-for-tests-0123456789abcdef"
STRUCTURED = "application/cloudevents+json"
GOOD = {"specversion": "1.0", "id": "sec-1", "source": "inventory", "type": INVENTORY_UPDATED,
        "datacontenttype": "application/json",
        "data": {"item_id": "SEC", "quantity": 3, "action": "restock"}}


class Server:
    """An in-process `make_server` on a free port, and a raw HTTP client for it."""

    def __init__(self, tmp: Path, token: str | None = None, **bounds: Any) -> None:
        self.runtime = Runtime(tmp / "sec.db", settings=RuntimeSettings(
            retry_scale=0.001, poll_interval=0.01))
        self.runtime.start(workers=2)
        self.server = make_server(self.runtime, "127.0.0.1", 0, access=Access(token=token),
                                  **bounds)
        self.port = int(self.server.effective_port)
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:  # close() from the test thread pulls the socket from under poll
            pass

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None, host: str | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host != "":
                conn.putheader("Host", self.host if host is None else host)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            raw = response.read()
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
            try:
                return response.status, reply_headers, json.loads(raw)
            except ValueError:
                return response.status, reply_headers, raw.decode(errors="replace")
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()
        self.thread.join(10)
        self.runtime.close()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    made = Server(tmp_path)
    yield made
    made.close()


@pytest.fixture()
def locked(tmp_path: Path) -> Iterator[Server]:
    made = Server(tmp_path, token=TOKEN)
    yield made
    made.close()


def _post_event(srv: Server, body: bytes, content_type: str = STRUCTURED,
                **headers: str) -> tuple[int, Any]:
    status, _, reply = srv.request("POST", "/events", body,
                                   {"Content-Type": content_type, **headers})
    return status, reply


def _dead_letter_one(srv: Server) -> None:
    """A removal of stock that does not exist: accepted, then dead-lettered by its
    consumer (the door refuses schema-invalid data itself)."""
    bad = Event.new("inventory", INVENTORY_UPDATED,
                    {"item_id": "x", "quantity": 5, "action": "remove"})
    headers, body = to_structured(bad)
    status, reply = _post_event(srv, body, headers["content-type"])
    assert status == 202, reply
    deadline = time.monotonic() + 15
    while not srv.runtime.dlq():
        assert time.monotonic() < deadline, "the event was never dead-lettered"
        time.sleep(0.05)


# --- bounded resources -------------------------------------------------------------------

def _health_within(url_host: str, port: int, timeout: float) -> int:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    finally:
        conn.close()


def test_110_idle_and_slowloris_sockets_do_not_lock_health_out(tmp_path: Path) -> None:
    """waitress' defaults (100 connections, 120 s idle timeout) locked every client out
    for two minutes with 100 idle sockets; a real `switchyard serve` must still answer
    while 110 idle sockets and 20 half-sent requests stay open."""
    proc = ServeProcess(tmp_path / "idle.db", tmp_path / "idle.log", workers=1)
    proc.start()
    sockets: list[socket.socket] = []
    try:
        for _ in range(110):
            sockets.append(socket.create_connection(("127.0.0.1", proc.port), timeout=10))
        for n in range(20):  # slowloris: a request line and part of the headers, or of a body
            sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
            sock.sendall(f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{proc.port}\r\n".encode()
                         if n % 2 else
                         f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{proc.port}\r\nContent-"
                         f"Type: {STRUCTURED}\r\nContent-Length: 1000\r\n\r\n{{".encode())
            sockets.append(sock)
        started = time.monotonic()
        assert _health_within("127.0.0.1", proc.port, timeout=10.0) == 200
        assert time.monotonic() - started < 10.0
        assert proc.proc is not None and proc.proc.poll() is None
    finally:
        for sock in sockets:
            sock.close()
        proc.stop()


def test_past_the_connection_limit_idle_sockets_are_closed_and_health_answers(
        tmp_path: Path) -> None:
    """With the limit itself reached by idle sockets, the idle-timeout sweep frees slots:
    /health is answered within seconds, and the server closed the idle sockets."""
    srv = Server(tmp_path, connection_limit=20, channel_timeout=2, cleanup_interval=1)
    sockets = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
               for _ in range(25)]
    try:
        assert _health_within("127.0.0.1", srv.port, timeout=10.0) == 200
        sockets[0].settimeout(10)
        assert sockets[0].recv(1) == b""  # closed by the server, not by us
    finally:
        for sock in sockets:
            sock.close()
        srv.close()


def test_huge_headers_are_431_and_huge_bodies_413(server: Server) -> None:
    status, _, _ = server.request("GET", "/health", headers={"X-Big": "h" * MAX_HEADER_BYTES})
    assert status == 431
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(f"POST /events HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: "
                     f"{STRUCTURED}\r\nContent-Length: {10**10}\r\n\r\n".encode())
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")


# --- malformed input: 4xx naming the problem, never 500 ----------------------------------

def _raw_event(**replace: str) -> bytes:
    """GOOD as JSON text with some values replaced by raw JSON text."""
    text = json.dumps(GOOD)
    for key, raw in replace.items():
        if key == "quantity":
            text = text.replace('"quantity": 3', f'"quantity": {raw}')
        else:
            text = text.replace(f'"{key}": {json.dumps(GOOD[key])}', f'"{key}": {raw}')
    assert any(raw in text for raw in replace.values())
    return text.encode()


DEEP = ("[" * 100_000 + "]" * 100_000)
MALFORMED: list[tuple[str, bytes, str, tuple[str, ...]]] = [
    ("1e999", _raw_event(quantity="1e999"), STRUCTURED, ("out of range", "1e999")),
    ("-1e999", _raw_event(quantity="-1e999"), STRUCTURED, ("out of range", "-1e999")),
    ("lone surrogate in id", _raw_event(id='"\\ud800"'), STRUCTURED,
     ("lone surrogate", "$.id")),
    ("lone surrogate in source", _raw_event(source='"in\\udfffventory"'), STRUCTURED,
     ("lone surrogate", "$.source")),
    ("lone surrogate in type", _raw_event(type='"\\udc00"'), STRUCTURED,
     ("lone surrogate", "$.type")),
    ("lone surrogate in data", _raw_event(data='{"item_id": "\\ud83d"}'), STRUCTURED,
     ("lone surrogate", "$.data.item_id")),
    ("100,000 nested arrays as JSON", DEEP.encode(), "application/json",
     (f"nested deeper than {MAX_JSON_DEPTH}",)),
    ("100,000 nested arrays as a CloudEvent", _raw_event(data=DEEP), STRUCTURED,
     (f"nested deeper than {MAX_JSON_DEPTH}",)),
    ("65 nested arrays in data", _raw_event(data="[" * 64 + "]" * 64), STRUCTURED,
     (f"nested deeper than {MAX_JSON_DEPTH}",)),
    ("invalid UTF-8", json.dumps(GOOD).encode().replace(b'"sec-1"', b'"caf\xe9"'), STRUCTURED,
     ("not valid UTF-8",)),
    ("encoded surrogate (CESU-8)", json.dumps(GOOD).encode().replace(
        b'"sec-1"', b'"\xed\xa0\x80"'), STRUCTURED, ("not valid UTF-8",)),
    ("1e999 in a PutEvents Detail",
     json.dumps({"Entries": [{"Source": "inventory", "DetailType": "Inventory Updated",
                              "Detail": '{"item_id": "A", "quantity": 1e999}'}]}).encode(),
     "application/json", ("Entries[0].Detail", "out of range")),
    ("1e999 in a PutEvents body", b'{"Entries": [], "x": 1e999}', "application/json",
     ("out of range",)),
]


@pytest.mark.parametrize(("name", "body", "content_type", "words"), MALFORMED,
                         ids=[c[0] for c in MALFORMED])
def test_malformed_json_is_400_naming_the_problem(server: Server, name: str, body: bytes,
                                                  content_type: str,
                                                  words: tuple[str, ...]) -> None:
    status, reply = _post_event(server, body, content_type)
    assert status == 400, reply
    text = json.dumps(reply)
    for word in words:
        assert word in text, (word, reply)
    assert server.runtime.counts()["events"] == 0


def test_binary_mode_data_gets_the_same_json_rules(server: Server) -> None:
    headers, _ = to_binary(Event.new("inventory", INVENTORY_UPDATED, GOOD["data"]))
    for body, word in ((b'{"item_id": "A", "quantity": 1e999}', "out of range"),
                       (b'{"item_id": "\\ud800"}', "lone surrogate"),
                       (DEEP.encode(), "nested deeper than")):
        status, _, reply = server.request("POST", "/events", body, headers)
        assert status == 400 and word in json.dumps(reply), reply
    assert server.runtime.counts()["events"] == 0


def test_unknown_paths_404_and_wrong_methods_405_with_allow(server: Server) -> None:
    status, _, reply = server.request("GET", "/nowhere")
    assert (status, reply) == (404, {"error": "no route for /nowhere"})
    status, headers, reply = server.request("GET", "/events")
    assert status == 405 and headers["allow"] == "POST" and reply["allowed"] == ["POST"]
    status, headers, _ = server.request("DELETE", "/orders/1", b"{}",
                                        {"Content-Type": "application/json"})
    assert status == 405 and headers["allow"] == "GET"
    status, _, reply = server.request("GET", "/orders/%FF%FE")
    assert status == 400 and "not valid UTF-8" in reply["error"]


# --- non-ASCII ids --------------------------------------------------------------------

@pytest.mark.parametrize("order_id", ["bestellung-ü-日本-😀", "a/b c?d%e#f", "ÿ"])
def test_non_ascii_and_reserved_ids_round_trip(server: Server, order_id: str) -> None:
    event = Event.new("orders", ORDER_CREATED, order_data(order_id, [("Z", 1, 5000.0)]))
    headers, body = to_structured(event)
    assert _post_event(server, body, headers["content-type"])[0] == 202
    path = "/orders/" + urllib.parse.quote(order_id, safe="")
    deadline = time.monotonic() + 15
    while True:
        status, _, reply = server.request("GET", path)
        if status == 200:
            break
        assert status == 404 and time.monotonic() < deadline, reply
        time.sleep(0.05)
    assert reply["order_id"] == order_id


# --- Host check (DNS rebinding) -----------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:1",
                                  "localhost.evil.example:{port}", ""])
def test_a_foreign_host_header_is_refused(server: Server, host: str) -> None:
    status, _, reply = server.request("GET", "/dlq", host=host.format(port=server.port))
    assert status == 421, reply
    assert "DNS rebinding" in reply["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}",
                                  "[::1]:{port}"])
def test_loopback_host_headers_are_accepted(server: Server, host: str) -> None:
    status, _, reply = server.request("GET", "/health", host=host.format(port=server.port))
    assert status == 200 and reply["status"] == "ok"


# --- Origin check and content types (CSRF) ------------------------------------------------

@pytest.mark.parametrize("origin", ["http://evil.example", "null",
                                    "http://127.0.0.1:1", "https://127.0.0.1:{port}"])
def test_a_foreign_origin_cannot_redrive_or_post(server: Server, origin: str) -> None:
    _dead_letter_one(server)
    before = server.runtime.counts()
    origin = origin.format(port=server.port)
    status, _, reply = server.request("POST", "/dlq/redrive", b"{}",
                                      {"Content-Type": "application/json", "Origin": origin})
    assert status == 403 and "cross-origin" in reply["error"]
    status, _, reply = server.request("POST", "/events", json.dumps(GOOD).encode(),
                                      {"Content-Type": STRUCTURED, "Origin": origin})
    assert status == 403, reply
    status, _, _ = server.request("GET", "/dlq", headers={"Origin": origin})
    assert status == 403
    assert len(server.runtime.dlq()) == 1
    assert server.runtime.counts()["events"] == before["events"]


def test_the_servers_own_origin_is_accepted(server: Server) -> None:
    status, _, reply = server.request("POST", "/events", json.dumps(GOOD).encode(),
                                      {"Content-Type": STRUCTURED,
                                       "Origin": f"http://localhost:{server.port}"})
    assert status == 202, reply


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x",
                                          "text/plain", "text/plain; charset=utf-8", None])
@pytest.mark.parametrize("path", ["/events", "/dlq/redrive"])
def test_form_content_types_change_nothing(server: Server, content_type: str | None,
                                           path: str) -> None:
    """What a page may post cross-site without a preflight is refused: 415 on the API's
    own endpoints, and on POST /events the shared ingress policy's 400 (what every front
    door answers), each naming what to send instead."""
    _dead_letter_one(server)
    events = server.runtime.counts()["events"]
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _, reply = server.request("POST", path, json.dumps(GOOD).encode(), headers)
    text = json.dumps(reply)
    if path == "/events":
        assert status == 400 and "application/json" in text, reply
    else:
        assert status == 415 and "application/json" in text and "ce-specversion" in text
    assert server.runtime.counts()["events"] == events and len(server.runtime.dlq()) == 1


def test_binary_mode_without_a_content_type_is_accepted(server: Server) -> None:
    """What a CloudEvents SDK sends for bytes-less data: ce-* headers and no Content-Type."""
    headers = {"ce-specversion": "1.0", "ce-id": "bin-1", "ce-source": "inventory",
               "ce-type": INVENTORY_UPDATED}
    body = json.dumps(GOOD["data"]).encode()
    status, _, reply = server.request("POST", "/events", body, headers)
    assert (status, reply["ids"]) == (202, ["bin-1"])
    status, _, reply = server.request("POST", "/events", body,
                                      {**headers, "ce-id": "bin-2", "Content-Type":
                                       "text/plain"})
    # Binary mode may declare any data type (no 415): the ingress policy then judges the
    # data, and text is not the object this type's schema wants.
    assert status == 400 and "data must be of type object" in str(reply), reply


def test_redrive_with_json_content_type_works(server: Server) -> None:
    _dead_letter_one(server)
    status, _, reply = server.request("POST", "/dlq/redrive", b"",
                                      {"Content-Type": "application/json"})
    assert status == 200 and reply["redriven"] == 1


# --- bearer token -----------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, Callable[[], bytes], dict[str, str], tuple[int, ...]]] = [
    ("GET", "/health", lambda: b"", {}, (200,)),
    ("GET", "/dlq", lambda: b"", {}, (200,)),
    ("POST", "/dlq/redrive", lambda: b"", {"Content-Type": "application/json"}, (200,)),
    ("GET", "/orders", lambda: b"", {}, (200,)),
    ("GET", "/orders/nope", lambda: b"", {}, (404,)),
    ("GET", "/inventory/A", lambda: b"", {}, (200,)),
    ("POST", "/events", lambda: json.dumps(GOOD).encode(), {"Content-Type": STRUCTURED},
     (202,)),
    ("GET", "/nowhere", lambda: b"", {}, (404,)),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "ok"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_with_a_token_every_endpoint_wants_it(
        locked: Server, method: str, path: str, body: Callable[[], bytes],
        headers: dict[str, str], ok: tuple[int, ...]) -> None:
    status, reply_headers, reply = locked.request(method, path, body(), headers)
    assert status == 401, reply
    assert reply_headers["www-authenticate"].startswith("Bearer")
    status, reply_headers, reply = locked.request(
        method, path, body(), {**headers, "Authorization": "Bearer wrong-token-0123456789"})
    assert status == 401 and "invalid_token" in reply_headers["www-authenticate"], reply
    status, _, reply = locked.request(method, path, body(), {**headers, "Authorization":
                                                             f"Bearer {TOKEN}"})
    assert status in ok, reply
    assert locked.runtime.counts()["events"] == (1 if path == "/events" else 0)


def test_the_token_is_checked_after_the_host(locked: Server) -> None:
    """A rebinding page with a stolen token still has the wrong Host."""
    status, _, _ = locked.request("GET", "/health", host="evil.example",
                                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 421


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    from adapters.local.http_server import ServeError, serve

    runtime = Runtime(tmp_path / "pub.db")
    try:
        with pytest.raises(ServeError, match="--token"):
            serve(runtime, host="0.0.0.0", port=0)
        with pytest.raises(ServeError, match="at least 16"):
            serve(runtime, host="127.0.0.1", port=0, token="short")
    finally:
        runtime.close()


# --- `switchyard serve` networking options and `send`'s token ----------------------------

def _cli(*args: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_TOKEN"}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def _one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _cli("serve", "--db", str(tmp_path / "a.db"), "--port", str(port))
    _one_line_error(done, f"port {port} is in use (another switchyard serve?); pick one "
                          "with --port")


@pytest.mark.parametrize(("args", "words"), [
    (["--host", "10.99.99.99"], ("10.99.99.99", "--token", "--insecure-no-token")),
    (["--host", "10.99.99.99", "--token", TOKEN], ("address 10.99.99.99 is not available",)),
    (["--host", "10.99.99.99", "--insecure-no-token"], ("address 10.99.99.99 is not available",)),
    (["--host", "no-such-host.invalid", "--token", TOKEN], ("'no-such-host.invalid'",)),
    (["--token", "short"], ("at least 16",)),
    (["--token", "has spaces in it, sixteen+"], ("Authorization: Bearer",)),
    (["--token-file", "/nonexistent/token"], ("cannot read --token-file",)),
])
def test_serve_address_and_token_problems_are_one_line(tmp_path: Path, args: list[str],
                                                       words: tuple[str, ...]) -> None:
    _one_line_error(_cli("serve", "--db", str(tmp_path / "a.db"), "--port", "0", *args),
                    *words)


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(tmp_path: Path, port: str) -> None:
    done = _cli("serve", "--db", str(tmp_path / "a.db"), "--port", port)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "argument --port" in done.stderr and port in done.stderr


def test_serve_with_a_token_from_env_and_send_with_it(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path / "tok.db", tmp_path / "tok.log", workers=1, token=TOKEN)
    proc.start()  # its /health polls carry the token: it would never start otherwise
    try:
        request = urllib.request.Request(proc.url + "/health")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
        send = ("send", "--url", proc.url, "--type", INVENTORY_UPDATED, "--data",
                json.dumps({"item_id": "TOK", "quantity": 2, "action": "restock"}))
        done = _cli(*send)
        assert done.returncode == 1 and "HTTP 401" in done.stderr, done
        done = _cli(*send, env={"SWITCHYARD_TOKEN": TOKEN})
        assert done.returncode == 0, done
        assert json.loads(done.stdout)["accepted"] == 1
        done = _cli(*send, "--token", TOKEN)
        assert done.returncode == 0, done
        assert proc.get("/health")["events"] == 2
    finally:
        proc.stop()


def test_serve_with_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    proc = ServeProcess(tmp_path / "file.db", tmp_path / "file.log", workers=1, token=TOKEN,
                        extra_args=("--token-file", str(token_file)))
    proc.start()  # polls /health with the token: only the file can have set it
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(proc.url + "/health", timeout=10)
        assert refused.value.code == 401
    finally:
        proc.stop()


def test_insecure_no_token_on_all_addresses_starts_with_a_loud_warning(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path / "open.db", tmp_path / "open.log", workers=1,
                        extra_args=("--host", "0.0.0.0", "--insecure-no-token"))
    proc.start()
    try:
        assert proc.get("/health")["status"] == "ok"  # Host 127.0.0.1:port is still ours
    finally:
        proc.stop()
    assert "WARNING: switchyard is listening on 0.0.0.0 WITHOUT a token" in proc.log.read_text()


# --- never a 500 --------------------------------------------------------------------------

_CONTENT_TYPES = st.sampled_from([
    STRUCTURED, STRUCTURED, "application/cloudevents-batch+json", "application/json",
    "application/json",
    "application/json; charset=utf-16", "application/cloudevents+avro", "text/plain", ""])
_JSONISH = st.lists(st.sampled_from([
    "{", "}", "[", "]", ",", ":", '"id"', '"data"', '"specversion"', '"1.0"', '"\\ud800"',
    '"\\u0000"', "1e999", "-0", "NaN", "null", '"Entries"', '"Detail"', '"{\\"a\\": 1e999}"',
    "[" * 2000, "9" * 5000, "\xff", "é"]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), _JSONISH.map(
           lambda t: t.encode("utf-8", "surrogatepass"))),
       content_type=_CONTENT_TYPES,
       ce=st.dictionaries(st.sampled_from(["ce-specversion", "ce-id", "ce-source", "ce-type",
                                           "ce-datacontenttype", "ce-time"]),
                          st.text(max_size=12).map(
                              lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
                          max_size=4),
       # Mostly POST /events, where the bodies are read; the rest exercise routing.
       path=st.sampled_from(["/events"] * 8 + ["/orders/%FF", "/orders/%F0%9F%98%80",
                                               "/dlq/redrive", "/inventory/%2F", "/nowhere"]),
       method=st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE"]))
def test_no_input_gets_a_500(server: Server, body: bytes, content_type: str,
                             ce: dict[str, str], path: str, method: str) -> None:
    app = server.server.application
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
        "REQUEST_URI": path, "QUERY_STRING": "", "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": server.host,
        "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in ce.items()}}
    answered: list[str] = []
    payload = b"".join(app(environ, lambda status, headers: answered.append(status)))
    status = int(answered[0].split()[0])
    assert status < 500, (answered, payload)
    reply = json.loads(payload)
    if status >= 400:
        assert isinstance(reply["error"], str) and reply["error"]


def test_the_host_names_a_server_answers_to() -> None:
    import socket as sockets

    assert Access().bound("127.0.0.1", 8080).hosts == {
        "127.0.0.1:8080", "localhost:8080", "[::1]:8080"}
    on_80 = Access(extra_hosts=("Box.LAN",)).bound("::1", 80).hosts
    assert {"localhost", "localhost:80", "box.lan", "box.lan:80", "[::1]"} <= on_80
    everywhere = Access().bound("0.0.0.0", 9000).hosts
    assert f"{sockets.gethostname().lower()}:9000" in everywhere
