"""The console's WSGI sub-app: the page at `/`, its assets under `/console/`, and its JSON
API under `/api/`.

Reads go through the Runtime's query methods (orders, trace, dlq, counts) and the
read-only queries of `queries`, and an order's OpenTelemetry spans come from the spans
this process keeps in memory when tracing is on (`adapters.telemetry.recent_spans`);
the only writes are the Runtime methods the ingress and the `switchyard dlq` commands use
(ingest, redrive(ids=...), discard(ids, by)), so the console cannot do what the CLI
cannot.

Security, for a server on a developer's machine that any web page they visit could try
to reach: every state change is a POST with a JSON body (a cross-site form cannot send
`application/json` without a CORS preflight, which this server never grants), a POST with
an `Origin` other than this server's own is refused, and when a token is configured
(SWITCHYARD_TOKEN) every `/api/` call needs `Authorization: Bearer <token>`. The page and
its assets carry no data, so they load without the token: the token travels in the URL
fragment (`/#token=...`), which browsers never send to the server, and the page keeps it
in sessionStorage. Responses forbid framing and sniffing, and the page's Content Security
Policy allows only its own scripts and styles.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from adapters.contracts import samples
from adapters.local.console import queries
from adapters.local.runtime import Runtime

log = logging.getLogger("switchyard.console")

STATIC: Final = Path(__file__).resolve().parent / "static"
_ASSETS: Final = {"index.html": "text/html; charset=utf-8",
                  "console.js": "text/javascript; charset=utf-8",
                  "console.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS: Final = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]
_STATUS: Final = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request",
                  401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
                  405: "405 Method Not Allowed", 413: "413 Content Too Large",
                  415: "415 Unsupported Media Type", 500: "500 Internal Server Error"}
#: A stream ends after this long and the page resumes it with Last-Event-ID: a waitress
#: thread is never held for ever, and a server shutdown never waits long for a stream.
STREAM_SECONDS: Final = 20.0
STREAM_POLL: Final = 0.25
STREAM_BATCH: Final = 1000
MAX_JSON_BODY: Final = 2 * 1024 * 1024
_ORDER: Final = re.compile(r"^/api/orders/([^/]+)$")
_TABLE: Final = re.compile(r"^/api/tables/([^/]+)$")

StartResponse = Callable[..., Any]


class _Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def owns(path: str) -> bool:
    """Whether a request path belongs to the console (the ingress keeps the rest)."""
    return path in ("/", "/index.html") or path.startswith(("/console/", "/api/"))


_APPS: Final[weakref.WeakSet[ConsoleApp]] = weakref.WeakSet()


def close_streams() -> None:
    """End every open event stream of this process cleanly (before a reload's SIGTERM)."""
    for app in list(_APPS):
        app.closing.set()


class ConsoleApp:
    def __init__(self, runtime: Runtime, token: str | None = None) -> None:
        self.runtime = runtime
        self.token = token or None
        self._samples: dict[str, Any] | None = None
        self.closing = threading.Event()
        _APPS.add(self)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ["REQUEST_METHOD"]
        try:
            if not path.startswith("/api/"):
                return self._static(path, method, start_response)
            self._check_auth(environ)
            if path == "/api/stream":
                return self._stream(environ, start_response)
            status, body = self._route(method, path, environ)
        except _Reply as reply:
            status, body = reply.status, reply.body
        except Exception:  # noqa: BLE001 - never leak a traceback to a client
            log.exception("console request failed")
            status, body = 500, {"error": "internal error; see the server log"}
        payload = json.dumps(body, default=str, separators=(",", ":")).encode()
        start_response(_STATUS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(payload))),
                                         ("Cache-Control", "no-store"),
                                         *_SECURITY_HEADERS])
        return [payload]

    # static -----------------------------------------------------------------
    def _static(self, path: str, method: str, start_response: StartResponse
                ) -> Iterable[bytes]:
        name = "index.html" if path in ("/", "/index.html") else path[len("/console/"):]
        if method not in ("GET", "HEAD"):
            raise _Reply(405, {"error": f"{method} not allowed on {path}",
                               "allowed": ["GET"]})
        if name not in _ASSETS:  # a fixed list: no path from the request reaches open()
            raise _Reply(404, {"error": f"no console asset {name!r}"})
        body = (STATIC / name).read_bytes()
        start_response("200 OK", [("Content-Type", _ASSETS[name]),
                                  ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-cache"), *_SECURITY_HEADERS])
        return [b""] if method == "HEAD" else [body]

    # guards -----------------------------------------------------------------
    def _check_auth(self, environ: dict[str, Any]) -> None:
        if self.token is None:
            return
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 self.token.encode()):
            raise _Reply(401, {"error": "this server needs `Authorization: Bearer <token>` "
                                        "(open the console URL printed by `switchyard "
                                        "serve`, which carries the token)"})

    def _json_body(self, environ: dict[str, Any]) -> Any:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Reply(415, {"error": "state-changing requests need Content-Type: "
                                        f"application/json, got {content_type or 'none'!r}"})
        origin = environ.get("HTTP_ORIGIN")
        host = environ.get("HTTP_HOST", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            raise _Reply(403, {"error": f"cross-origin request from {origin!r} refused"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_JSON_BODY:
            raise _Reply(413, {"error": f"body is {length} bytes, over {MAX_JSON_BODY}"})
        try:
            return json.loads(environ["wsgi.input"].read(length) if length else b"")
        except ValueError as error:
            raise _Reply(400, {"error": f"body is not valid JSON: {error}"}) from None

    # API --------------------------------------------------------------------
    def _route(self, method: str, path: str, environ: dict[str, Any]) -> tuple[int, Any]:
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        gets: dict[str, Callable[[], tuple[int, Any]]] = {
            "/api/app": self._app,
            "/api/health": self._health,
            "/api/dlq": self._dlq,
            "/api/samples": self._samples_all,
        }
        posts: dict[str, Callable[[Any], tuple[int, Any]]] = {
            "/api/send": self._send,
            "/api/dlq/redrive": self._redrive,
            "/api/dlq/discard": self._discard,
        }
        if path in gets or path in posts:
            if path in gets and method == "GET":
                return gets[path]()
            if path in posts and method == "POST":
                return posts[path](self._json_body(environ))
            raise _Reply(405, {"error": f"{method} not allowed on {path}",
                               "allowed": ["GET" if path in gets else "POST"]})
        for pattern, handler in ((_ORDER, self._order), (_TABLE, self._table)):
            match = pattern.match(path)
            if match:
                if method != "GET":
                    raise _Reply(405, {"error": f"{method} not allowed on {path}",
                                       "allowed": ["GET"]})
                return handler(match.group(1), query)
        raise _Reply(404, {"error": f"no route for {path}"})

    def _app(self) -> tuple[int, Any]:
        from adapters.local.console.topology import describe

        return 200, describe(self.runtime.app)

    def _health(self) -> tuple[int, Any]:
        consumers = self.runtime.consumer_status()
        return 200, {"status": "ok", "counts": self.runtime.counts(), "consumers": consumers,
                     **queries.sources_status(self.runtime),
                     "last_reload": queries.last_reload(self.runtime), "now": time.time()}

    def _dlq(self) -> tuple[int, Any]:
        discarded = int(self.runtime.db.read("SELECT COUNT(*) FROM dlq_discarded")[0][0])
        return 200, {"entries": self.runtime.dlq(), "discarded": discarded}

    def _samples_all(self) -> tuple[int, Any]:
        if self._samples is None:
            catalog = self.runtime.app.catalog
            self._samples = {
                spec.type: {"detail_type": spec.detail_type, "description": spec.description,
                            "event": samples.render(samples.sample_event(spec), catalog)}
                for spec in catalog}
        return 200, {"samples": self._samples}

    def _order(self, order_id: str, query: dict[str, str]) -> tuple[int, Any]:
        from adapters.local.http_server import public_order
        from handlers.orders import saga_id_for

        order = self.runtime.order(order_id)
        trace = self.runtime.trace(order_id)
        if order is None and not trace:
            raise _Reply(404, {"error": f"order '{order_id}' not found"})
        saga = queries.saga_state(self.runtime, saga_id_for(order_id))
        return 200, {"order": public_order(order) if order else None, "trace": trace,
                     "saga": saga, "spans": _spans(trace, saga)}

    def _table(self, name: str, query: dict[str, str]) -> tuple[int, Any]:
        if name not in self.runtime.app.tables:
            raise _Reply(404, {"error": f"no table {name!r} (tables: "
                                        f"{', '.join(self.runtime.app.tables)})"})
        try:
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 50))
        except ValueError:
            raise _Reply(400, {"error": "offset and limit must be integers"}) from None
        return 200, queries.table_page(self.runtime, name, offset, limit)

    def _send(self, body: Any) -> tuple[int, Any]:
        from adapters.local.http_server import decode_events
        from handlers.core import ingress_binding
        from handlers.core.errors import PermanentError, ValidationError

        if not isinstance(body, dict) or not isinstance(body.get("event"), dict | list):
            raise _Reply(400, {"error": "send {\"event\": <a CloudEvent object, a batch "
                                        "array, or a PutEvents body>}"})
        event = body["event"]
        if isinstance(event, dict) and "Entries" in event:
            headers = {"content-type": "application/json"}
        elif isinstance(event, list):
            headers = {"content-type": "application/cloudevents-batch+json"}
        else:
            headers = {"content-type": "application/cloudevents+json"}
        try:
            events = decode_events(headers, json.dumps(event).encode(),
                                   self.runtime.app.catalog)
        except ValidationError as error:  # the ingress policy of every front door
            raise _Reply(400, ingress_binding.refused(error.problems or [str(error)])) from None
        try:
            ids = self.runtime.ingest(events)
        except PermanentError as error:
            raise _Reply(413, {"error": str(error)}) from None
        return 202, {"accepted": len(ids), "ids": ids}

    def _ids(self, body: Any) -> list[int]:
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise _Reply(400, {"error": "give {\"ids\": [dead-letter ids, integers]}"})
        return ids

    def _redrive(self, body: Any) -> tuple[int, Any]:
        ids = self._ids(body)
        done = self.runtime.redrive(ids=ids)
        return 200, {"redriven": done, "not_redriven": sorted(set(ids) - set(done))}

    def _discard(self, body: Any) -> tuple[int, Any]:
        ids = self._ids(body)
        done = self.runtime.discard(ids, by=f"console ({_operator()})")
        return 200, {"discarded": done, "not_discarded": sorted(set(ids) - set(done)),
                     "record": f"table dlq_discarded of {self.runtime.db.path}"}

    # stream -----------------------------------------------------------------
    def _stream(self, environ: dict[str, Any], start_response: StartResponse
                ) -> Iterator[bytes]:
        if environ["REQUEST_METHOD"] != "GET":
            raise _Reply(405, {"error": "GET /api/stream only", "allowed": ["GET"]})
        resume = environ.get("HTTP_LAST_EVENT_ID") or _query(environ).get("after") or "0"
        try:
            after = max(0, int(resume))
        except ValueError:
            raise _Reply(400, {"error": f"Last-Event-ID must be a timeline seq, got "
                                        f"{resume!r}"}) from None
        start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"),
                                  ("Cache-Control", "no-store"),
                                  ("X-Accel-Buffering", "no"), *_SECURITY_HEADERS])
        return self._events(after)

    def _events(self, after: int) -> Iterator[bytes]:
        """Server-sent events: `rows` batches (id = the last seq, so Last-Event-ID
        resumes right after it), a `caught-up` marker once the backlog is sent, and a
        comment now and then so idle connections stay open."""
        deadline = time.monotonic() + STREAM_SECONDS
        columns = json.dumps(list(queries.TIMELINE_COLUMNS))
        yield f"retry: 1000\nevent: columns\ndata: {columns}\n\n".encode()
        caught_up = False
        quiet = 0.0
        while time.monotonic() < deadline and not self.closing.is_set():
            rows = queries.timeline_after(self.runtime, after, STREAM_BATCH)
            if rows:
                after = rows[-1][0]
                data = json.dumps(rows, default=str, separators=(",", ":"))
                yield f"id: {after}\nevent: rows\ndata: {data}\n\n".encode()
                quiet = 0.0
                if len(rows) == STREAM_BATCH:
                    continue
            if not caught_up:
                caught_up = True
                yield f"event: caught-up\ndata: {after}\n\n".encode()
            self.closing.wait(STREAM_POLL)
            quiet += STREAM_POLL
            if quiet >= 5.0:
                quiet = 0.0
                yield b": keep-alive\n\n"
        yield b"event: end\ndata: resume with Last-Event-ID\n\n"


SPANS_OFF: Final = ("Spans are off: start `switchyard serve` with OTEL_TRACES_EXPORTER=console "
                    "(or otlp) to see this order's OpenTelemetry spans here.")


def _spans(trace: list[dict[str, Any]], saga: dict[str, Any] | None) -> dict[str, Any]:
    """The order's spans kept by this process, found by the trace ids its timeline rows
    and its saga's state carry (each from the W3C traceparent of the events)."""
    from adapters import telemetry
    from handlers.core.observability import trace_id_of

    kept = telemetry.recent_spans()
    if kept is None:
        return {"recording": False, "note": SPANS_OFF}
    found = [row["trace_id"] for row in trace]
    state = saga.get("state") if saga is not None else None
    if isinstance(state, dict):
        found.append(trace_id_of(state.get("traceparent")))
    trace_ids = list(dict.fromkeys(t for t in found if t))
    return {"recording": True, "trace_ids": trace_ids, "tree": kept.tree(trace_ids),
            "kept": len(kept), "limit": kept.limit}


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _operator() -> str:
    """Who discards from the console: the OS login name of the server's user."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        return f"uid:{os.getuid()}"
