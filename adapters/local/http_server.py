"""HTTP ingress and query API of the local runtime, as a WSGI app served by waitress.

POST /events takes CloudEvents (binary, structured, batch) or an EventBridge PutEvents
body and answers 202 only after the events are committed to SQLite. What it takes and how
it answers is the ingress policy every front door shares (`handlers.core.ingress_binding`):
an unknown type or data that breaks its schema is refused with 400 listing every problem,
exactly as the AWS and GCP ingress functions answer.

Security model (also in README.md, "The local runtime"). The API reads and redrives
dead-lettered bodies, so a web page in the user's browser must not reach it:

- it listens on 127.0.0.1 unless told otherwise, and a non-loopback address needs a
  bearer token (or `insecure_no_token`, which logs a warning);
- a request whose Host is not this server's (loopback names or the bound address, with
  the port) is refused with 421: a DNS-rebinding page sends its own host name;
- with a token set, every endpoint (`/health` included) wants `Authorization: Bearer
  <token>`, compared in constant time; 401 with `WWW-Authenticate: Bearer` otherwise;
- a request with an `Origin` other than this server's own is refused with 403, and a
  state-changing request (any method but GET, HEAD, OPTIONS) must say JSON or
  CloudEvents: the content types a page may send cross-origin without a CORS preflight
  are exactly the form ones (application/x-www-form-urlencoded, multipart/form-data,
  text/plain) or none, so those get 415 (on `POST /events`, the shared ingress policy
  refuses them with 400, as every front door does). A `ce-specversion` header (CloudEvents binary
  mode, any content type or none) is itself a header that forces a preflight, which this
  server never grants.

Every refusal is a one-line JSON `{"error": ...}` that names the problem; malformed input
is 4xx, never 500 (the JSON rules are the shared ones of handlers.core.wire.jsontext).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote_to_bytes, urlsplit

from adapters.local.console.app import ConsoleApp
from adapters.local.console.app import owns as console_owns
from adapters.local.reload import inherited_listener
from adapters.local.runtime import MAX_EVENT_BYTES, Runtime
from handlers.core import ingress_binding
from handlers.core.errors import PermanentError, ValidationError
from handlers.core.events import Event

log = logging.getLogger("switchyard.http")

#: A batch may carry many events; each one is still held to MAX_EVENT_BYTES.
MAX_BODY_BYTES: Final = 8 * MAX_EVENT_BYTES
#: Request line plus headers: waitress answers 431 above it (its default, 256 KiB, would
#: let a 64 KiB `ce-` header become a 64 KiB event attribute). The clouds' front doors
#: cap headers too (API Gateway 10 KiB a header); binary-mode CloudEvents need far less.
MAX_HEADER_BYTES: Final = 32 * 1024

# Connection bounds (waitress `Adjustments`). waitress only hands a request to a thread
# once it has read all of it, so idle or trickling sockets hold no thread; what they hold
# is a slot under `connection_limit`, and at the limit waitress stops accepting until
# `maintenance` (every `cleanup_interval` s) closes sockets idle for `channel_timeout` s.
# With waitress' defaults (100 connections, 120 s idle, 30 s sweep) 100 idle sockets locked
# every client out for over two minutes.
#: Open connections before waitress stops accepting: far above what local clients use,
#: and below the process' file descriptor limit (see `connection_limit`).
CONNECTION_LIMIT: Final = 1000
#: Descriptors kept for SQLite (database, WAL, shm per thread), uploads and logs.
_FD_HEADROOM: Final = 64
#: Seconds a connection may sit idle (no request in progress, nothing read) before it is
#: closed: a keep-alive client reconnects transparently; gunicorn's default keep-alive is
#: 2 s and Node's 5 s. A request being answered is never cut (waitress skips channels
#: with requests pending).
CHANNEL_TIMEOUT: Final = 5
#: Seconds between sweeps for idle connections, so an idle socket lives at most
#: CHANNEL_TIMEOUT + CLEANUP_INTERVAL (+ the 1 s loop tick).
CLEANUP_INTERVAL: Final = 1
#: Request threads. Each request is short (one SQLite transaction); more threads would
#: only queue on SQLite's single writer.
THREADS: Final = 8

#: Host names that always mean this machine; the bound address is added to them.
LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")
#: Media types a state-changing request may declare (parameters such as charset aside).
JSON_CONTENT_TYPES: Final = ("application/json", "application/cloudevents+json",
                             "application/cloudevents-batch+json")
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: RFC 6750 b64token: what a bearer token may contain to travel in the header.
_TOKEN_SYNTAX: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
MIN_TOKEN_LENGTH: Final = 16

#: What `json.dumps(body, default=str)` writes, with the encoder made once.
_ENCODER: Final = json.JSONEncoder(default=str)

StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]
_STATUS: Final = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request",
                  401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
                  405: "405 Method Not Allowed", 411: "411 Length Required",
                  413: "413 Content Too Large", 415: "415 Unsupported Media Type",
                  421: "421 Misdirected Request", 500: "500 Internal Server Error"}


class ServeError(Exception):
    """The server cannot start as asked; the message is one line for the user."""


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: Headers | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or []


def token_problem(token: str) -> str | None:
    """Why a token cannot be used (None when it can)."""
    if not _TOKEN_SYNTAX.match(token):
        return ("the token may only contain letters, digits and -._~+/ (with = at the end), "
                "to travel in an Authorization: Bearer header")
    if len(token) < MIN_TOKEN_LENGTH:
        return (f"the token is {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """Who may use the API: the Host names it answers to and the token, if any."""

    token: str | None = None
    #: Host names (no port) besides the loopback ones and the bound address.
    extra_hosts: Sequence[str] = ()
    #: Filled in once the port is bound (port 0 picks one).
    hosts: frozenset[str] = field(default=frozenset())

    def bound(self, host: str, port: int) -> Access:
        names = {*LOOPBACK_NAMES, _host_name(host), *(_host_name(h) for h in self.extra_hosts)}
        if _is_wildcard(host):  # every address of the machine: its name is one of them
            import socket

            names.add(socket.gethostname().lower())
        values = {f"{name}:{port}" for name in names}
        if port == 80:  # a client leaves the default port out of Host
            values |= names
        return Access(self.token, self.extra_hosts, frozenset(v.lower() for v in values))


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """A host as it appears in a Host header: IPv6 literals in brackets."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare.lower()


def decode_events(headers: dict[str, str], body: bytes, catalog: Any) -> list[Event]:
    """Any accepted wire shape -> events; ValidationError names every problem."""
    return ingress_binding.decode_request(headers, body, catalog)


Route = Callable[[dict[str, Any], list[str]], tuple[int, Any]]


class App:
    """The WSGI application over one Runtime."""

    def __init__(self, runtime: Runtime, access: Access | None = None) -> None:
        self.runtime = runtime
        #: Replaced by `make_server` once the port is known; no Host is accepted before.
        self.access = access or Access()
        # Keyed by decoded segments, so "/dlq%2Fredrive" is not "/dlq/redrive".
        self._fixed: dict[tuple[str, ...], dict[str, Route]] = {
            ("events",): {"POST": lambda env, _: self._post_events(env)},
            ("health",): {"GET": lambda *_: self._health()},
            ("dlq",): {"GET": lambda *_: self._dlq()},
            ("dlq", "redrive"): {"POST": lambda *_: self._redrive()},
            ("orders",): {"GET": lambda *_: (200, {"orders": self.runtime.orders()})},
        }
        # /<collection>/<id>: the id is one path segment, percent-decoded as UTF-8.
        self._items: dict[str, dict[str, Route]] = {
            "orders": {"GET": lambda _, seg: self._order(seg[1])},
            "inventory": {"GET": lambda _, seg: self._item(seg[1])},
        }

        # The console checks nothing of its own: its requests pass the same Host, Origin
        # and token checks as the API's, here, before it sees them.
        self.console = ConsoleApp(runtime)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        extra: Headers = []
        path = environ.get("PATH_INFO", "/")
        if console_owns(path):  # the page, its assets, /api/...
            try:
                self._check_console_access(path, _headers(environ))
            except _Reply as reply:
                return self._answer(start_response, reply.status, reply.body, reply.headers)
            return self.console(environ, start_response)
        try:
            status, body = self._handle(environ)
        except _Reply as reply:
            status, body, extra = reply.status, reply.body, reply.headers
            if status in (401, 403, 421):
                log.warning("refused %s %s from %s: %s", environ.get("REQUEST_METHOD"),
                            environ.get("PATH_INFO"), environ.get("REMOTE_ADDR"),
                            body.get("error") if isinstance(body, dict) else body)
        except Exception:  # noqa: BLE001 - never leak a traceback to a client
            log.exception("request failed")
            status, body = 500, {"error": "internal error; see the server log"}
        return self._answer(start_response, status, body, extra)

    @staticmethod
    def _answer(start_response: StartResponse, status: int, body: Any,
                extra: Headers) -> Iterable[bytes]:
        payload = _ENCODER.encode(body).encode()
        start_response(_STATUS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(payload))), *extra])
        return [payload]

    def _check_console_access(self, path: str, headers: dict[str, str]) -> None:
        """The console's requests meet the API's checks. Only its page and assets (no
        data) load without the token: the page carries the token in its URL fragment,
        which browsers never send, and adds it to each `/api/` call itself."""
        self._check_host(headers)
        if path.startswith("/api/"):
            self._check_token(headers)
        self._check_origin(headers)

    def _handle(self, environ: dict[str, Any]) -> tuple[int, Any]:
        method = environ["REQUEST_METHOD"]
        headers = _headers(environ)
        self._check_host(headers)
        self._check_token(headers)
        self._check_origin(headers)
        segments = _segments(environ)
        route = self._route(segments)
        handler = route.get(method)
        if handler is None:
            allowed = sorted(route)
            raise _Reply(405, {"error": f"{method} not allowed on /{'/'.join(segments)}",
                               "allowed": allowed}, [("Allow", ", ".join(allowed))])
        if method not in _SAFE_METHODS and segments != ["events"]:
            # POST /events: the ingress policy refuses the same content types (400, with
            # what to send instead), as the clouds' front doors do.
            _check_content_type(headers)
        return handler(environ, segments)

    def _route(self, segments: list[str]) -> dict[str, Route]:
        fixed = self._fixed.get(tuple(segments))
        if fixed is not None:
            return fixed
        if len(segments) == 2 and segments[0] in self._items and segments[1]:
            return self._items[segments[0]]
        raise _Reply(404, {"error": f"no route for /{'/'.join(segments)}"})

    # --- access checks, in the order a refusal tells least to a stranger ---------------

    def _check_host(self, headers: dict[str, str]) -> None:
        host = headers.get("host", "").strip().lower()
        if host not in self.access.hosts:
            shown = repr(host) if host else "none"
            raise _Reply(421, {"error": f"Host {shown} is not this server (it answers to "
                                        f"{', '.join(sorted(self.access.hosts))}); refused "
                                        "so that a page cannot reach it by DNS rebinding"})

    def _check_token(self, headers: dict[str, str]) -> None:
        token = self.access.token
        if token is None:
            return
        scheme, _, given = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _Reply(401, {"error": "this server wants Authorization: Bearer <token> "
                                        "(switchyard serve --token / SWITCHYARD_TOKEN)"},
                         [("WWW-Authenticate", 'Bearer realm="switchyard"')])
        # Header values arrive as latin-1 (PEP 3333): compare the bytes that were sent.
        if not hmac.compare_digest(given.strip().encode("latin-1", "replace"),
                                   token.encode("utf-8")):
            raise _Reply(401, {"error": "the bearer token is not this server's"},
                         [("WWW-Authenticate",
                           'Bearer realm="switchyard", error="invalid_token"')])

    def _check_origin(self, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        if origin is None:
            return
        parts = urlsplit(origin.strip().lower())
        if parts.scheme != "http" or parts.netloc not in self.access.hosts or (
                parts.path not in ("", "/")):
            raise _Reply(403, {"error": f"cross-origin request from {origin!r} refused "
                                        "(this API serves no pages and grants no CORS)"})

    # --- endpoints ---------------------------------------------------------------------

    def _post_events(self, environ: dict[str, Any]) -> tuple[int, Any]:
        body = _read_body(environ)
        headers = _headers(environ)
        try:
            events = decode_events(headers, body, self.runtime.app.catalog)
        except ValidationError as error:
            raise _Reply(400, ingress_binding.refused(error.problems or [str(error)])) from None
        try:
            ids = self.runtime.ingest(events)
        except PermanentError as error:  # an event over the per-event size limit
            raise _Reply(413, {"error": str(error)}) from None
        return 202, {"accepted": len(ids), "ids": ids}

    def _health(self) -> tuple[int, Any]:
        return 200, {"status": "ok", **self.runtime.counts()}

    def _dlq(self) -> tuple[int, Any]:
        return 200, {"entries": self.runtime.dlq()}

    def _redrive(self) -> tuple[int, Any]:
        redriven = self.runtime.redrive()
        return 200, {"redriven": len(redriven), "dlq_ids": redriven}

    def _order(self, order_id: str) -> tuple[int, Any]:
        order = self.runtime.order(order_id)
        if order is None:
            raise _Reply(404, {"error": f"order '{order_id}' not found"})
        return 200, public_order(order)

    def _item(self, item_id: str) -> tuple[int, Any]:
        return 200, {"item_id": item_id, "available": self.runtime.available(item_id)}


def _check_content_type(headers: dict[str, str]) -> None:
    if "ce-specversion" in headers:
        return  # binary mode: its data may be of any declared type, or none
    declared = headers.get("content-type", "")
    media_type = declared.partition(";")[0].strip().lower()
    if media_type not in JSON_CONTENT_TYPES:
        shown = repr(declared) if declared else "none"
        raise _Reply(415, {"error": f"Content-Type {shown} is not accepted here: send "
                                    f"{', '.join(JSON_CONTENT_TYPES)}, or a CloudEvent in "
                                    "binary mode (ce-specversion header)"})


def _segments(environ: dict[str, Any]) -> list[str]:
    """The path's segments, each percent-decoded and read as UTF-8.

    PATH_INFO cannot be used as it is: the WSGI server has already percent-decoded it
    (so an id holding %2F would split in two) and hands the bytes over as latin-1
    (PEP 3333), so 'é' arrives as 'Ã©'. The raw request target has neither problem.
    """
    target = environ.get("REQUEST_URI")
    if target is None:  # another WSGI server: PATH_INFO, re-encoded to its bytes
        raw = environ.get("PATH_INFO", "/").encode("latin-1")
        pieces = raw.split(b"/")
    else:
        if "://" in target.partition("?")[0]:  # absolute-form (RFC 9112 3.2.2)
            target = urlsplit(target).path
        target = target.partition("?")[0].partition("#")[0]
        pieces = [unquote_to_bytes(p.encode("latin-1")) for p in target.split("/")]
    try:
        segments = [p.decode("utf-8") for p in pieces]
    except UnicodeDecodeError as exc:
        raise _Reply(400, {"error": f"the path is not valid UTF-8 once percent-decoded "
                                    f"({exc.reason})"}) from None
    while segments and segments[0] == "":  # waitress too collapses leading slashes
        segments.pop(0)
    return segments


def public_order(order: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in order.items() if k not in ("created_by",)}
    out["total"] = order["total_cents"] / 100
    if out.get("status") != "cancelled":
        out.pop("reason", None)
        out.pop("reason_detail", None)
    return out


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
               if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def _read_body(environ: dict[str, Any]) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.strip():
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise _Reply(413, {"error": f"body is {size} bytes, over the limit of "
                                        f"{MAX_BODY_BYTES} bytes"})
        return stream.read(size)
    body = stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise _Reply(413, {"error": f"body is over the limit of {MAX_BODY_BYTES} bytes"})
    return body


def connection_limit() -> int:
    """CONNECTION_LIMIT, lowered to fit the process' open-file limit when that is lower
    (macOS starts shells at 256). Past the file limit accept() fails with EMFILE and
    waitress only logs it, so its own connection limit must be the one reached first."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # Windows: no resource module
        return CONNECTION_LIMIT
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(16, min(CONNECTION_LIMIT, soft - _FD_HEADROOM))


def make_server(runtime: Runtime, host: str = "127.0.0.1", port: int = 8080,
                threads: int = THREADS, access: Access | None = None,
                **bounds: Any) -> Any:
    """A waitress server for the API (port 0 picks a free port: see `effective_port`).

    `bounds` overrides the connection bounds (tests shrink them); `ServeError` when the
    address cannot be bound, in one line.
    """
    import errno
    import socket

    import waitress

    app = App(runtime)
    listener = inherited_listener()  # `serve --reload` hands its socket to each child
    where: dict[str, Any] = {"sockets": [listener]} if listener else {"host": host, "port": port}
    settings: dict[str, Any] = {
        "connection_limit": connection_limit(), "channel_timeout": CHANNEL_TIMEOUT,
        "cleanup_interval": CLEANUP_INTERVAL,
        # poll() has no FD_SETSIZE (1024) ceiling, which select() hits first.
        "asyncore_use_poll": True, **bounds}
    try:
        server = waitress.create_server(app, **where, threads=threads,
                                        max_request_body_size=MAX_BODY_BYTES,
                                        max_request_header_size=MAX_HEADER_BYTES,
                                        ident="switchyard", **settings)
    except (socket.gaierror, ValueError) as error:  # waitress: "Invalid host/port"
        raise ServeError(f"cannot listen on {host!r}: not an address or resolvable name of "
                         f"this machine ({error}); give --host one of its addresses") from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} is in use (another switchyard serve?); pick one "
                             "with --port") from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise ServeError(f"address {host} is not available on this machine; give --host "
                             "one of its addresses (127.0.0.1 by default)") from None
        if error.errno == errno.EACCES:
            raise ServeError(f"not allowed to listen on port {port} (ports below 1024 need "
                             "privileges); pick another with --port") from None
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    # A name that resolves to several addresses gives a multi-socket server with no
    # single effective_port; a fixed port is then the same on each.
    app.access = (access or Access()).bound(host, getattr(server, "effective_port", port))
    server.close = functools.partial(_close, server, app, server.close)
    return server


def _close(server: Any, app: App, close: Callable[[], object]) -> None:
    """Close the server and end its threads. waitress's own `close` of a one-socket
    server closes only the listening socket: its request threads stay, waiting for work,
    and `run` goes on while a connection is open. Here open event streams end at their
    next poll, the request threads finish what they are answering and exit, then the
    listening socket and every connection close, so `run` returns."""
    from waitress import wasyncore

    app.console.closing.set()
    server.task_dispatcher.shutdown()
    close()
    # A multi-socket server keeps its sockets in `map`, a one-socket one in `_map`.
    wasyncore.close_all(server.map if hasattr(server, "map") else server._map)


def check_access(host: str, token: str | None, insecure_no_token: bool = False) -> None:
    """`ServeError` when the token is malformed, or a non-loopback address would be served
    without one (and `insecure_no_token` does not say that is meant)."""
    if token is not None and (problem := token_problem(token)):
        raise ServeError(problem)
    if not is_loopback(host) and token is None and not insecure_no_token:
        raise ServeError(f"listening on {host} opens the API (dead-lettered bodies, "
                         "redrive) to other machines: give --token (or --token-file, "
                         "SWITCHYARD_TOKEN), or --insecure-no-token to run without one")


def serve(runtime: Runtime, host: str = "127.0.0.1", port: int = 8080,
          workers: int = 4, threads: int = THREADS, token: str | None = None,
          insecure_no_token: bool = False, allow_hosts: Sequence[str] = ()) -> None:
    """Run workers and the HTTP server until interrupted (SIGINT or SIGTERM).

    `ServeError` (one line) when the address cannot be bound or the access settings are
    unsafe; nothing is started then.
    """
    import signal

    check_access(host, token, insecure_no_token)
    exposed = not is_loopback(host) and token is None
    server = make_server(runtime, host, port, threads,
                         Access(token=token, extra_hosts=tuple(allow_hosts)))
    if exposed:
        print(f"WARNING: switchyard is listening on {host} WITHOUT a token: anyone who can "
              "reach this address can post events, read the DLQ and redrive it",
              file=sys.stderr, flush=True)
        log.warning("listening on %s without a token", host)

    def _stop(signum: int, frame: object) -> None:
        # Interrupt the event loop the way Ctrl-C does: waitress then lets the requests in
        # progress finish before run() returns. Closing sockets from here instead would
        # pull them out from under the threads answering those requests.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    runtime.start(workers)
    shown = _host_name(host)
    print(f"switchyard: listening on http://{shown}:{server.effective_port}"
          f"{' (bearer token required)' if token else ''}", flush=True)
    try:
        server.run()  # returns after SIGINT/SIGTERM, once in-flight requests are answered
    finally:
        server.close()
        runtime.stop()
