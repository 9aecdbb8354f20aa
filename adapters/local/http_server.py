"""HTTP ingress and query API of the local runtime, as a WSGI app served by waitress.

POST /events takes CloudEvents (binary, structured, batch) or an EventBridge PutEvents
body and answers 202 only after the events are committed to SQLite. Like a cloud bus, it
checks the envelope (400 listing every problem) but not the data: an event whose data
breaks its schema is accepted, dead-lettered by its consumer with the reason, and named in
the 202's `warnings`, so nothing sent is ever silently lost.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from adapters.local.runtime import MAX_EVENT_BYTES, Runtime
from handlers.core.errors import PermanentError, ValidationError
from handlers.core.events import Event

log = logging.getLogger("switchyard.http")

#: A batch may carry many events; each one is still held to MAX_EVENT_BYTES.
MAX_BODY_BYTES: Final = 8 * MAX_EVENT_BYTES
#: Request line plus headers: waitress answers 431 above it (its default, 256 KiB, would
#: let a 64 KiB `ce-` header become a 64 KiB event attribute). The clouds' front doors
#: cap headers too (API Gateway 10 KiB a header); binary-mode CloudEvents need far less.
MAX_HEADER_BYTES: Final = 32 * 1024
_ORDER: Final = re.compile(r"^/orders/([^/]+)$")
_ITEM: Final = re.compile(r"^/inventory/([^/]+)$")

StartResponse = Callable[..., Any]
_STATUS: Final = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request",
                  404: "404 Not Found", 405: "405 Method Not Allowed",
                  411: "411 Length Required", 413: "413 Content Too Large",
                  500: "500 Internal Server Error"}


class _Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def decode_events(headers: dict[str, str], body: bytes, catalog: Any) -> list[Event]:
    """Any accepted wire shape -> events; ValidationError names every problem."""
    from handlers.core.eventbridge_binding import from_put_events_body
    from handlers.core.http_binding import from_http

    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/json", "") and "ce-specversion" not in headers:
        try:
            parsed = json.loads(body)
        except ValueError as error:
            raise ValidationError("invalid request",
                                  [f"body is not valid JSON: {error}"]) from None
        if isinstance(parsed, dict) and "Entries" in parsed:
            return from_put_events_body(parsed, catalog)
    return from_http(headers, body)


class App:
    """The WSGI application over one Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, body = self._route(environ)
        except _Reply as reply:
            status, body = reply.status, reply.body
        except Exception:  # noqa: BLE001 - never leak a traceback to a client
            log.exception("request failed")
            status, body = 500, {"error": "internal error; see the server log"}
        payload = json.dumps(body, indent=None, default=str).encode()
        start_response(_STATUS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(payload)))])
        return [payload]

    def _route(self, environ: dict[str, Any]) -> tuple[int, Any]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        routes: dict[str, dict[str, Callable[[], tuple[int, Any]]]] = {
            "/events": {"POST": lambda: self._post_events(environ)},
            "/health": {"GET": self._health},
            "/dlq": {"GET": self._dlq},
            "/dlq/redrive": {"POST": self._redrive},
            "/orders": {"GET": lambda: (200, {"orders": self.runtime.orders()})},
        }
        if path in routes:
            handler = routes[path].get(method)
            if handler is None:
                raise _Reply(405, {"error": f"{method} not allowed on {path}",
                                   "allowed": sorted(routes[path])})
            return handler()
        for pattern, lookup in ((_ORDER, self._order), (_ITEM, self._item)):
            match = pattern.match(path)
            if match:
                if method != "GET":
                    raise _Reply(405, {"error": f"{method} not allowed on {path}",
                                       "allowed": ["GET"]})
                return lookup(match.group(1))
        raise _Reply(404, {"error": f"no route for {path}"})

    def _post_events(self, environ: dict[str, Any]) -> tuple[int, Any]:
        body = _read_body(environ)
        headers = _headers(environ)
        try:
            events = decode_events(headers, body, self.runtime.app.catalog)
        except ValidationError as error:
            raise _Reply(400, {"error": "malformed event input",
                               "problems": list(error.problems) or [str(error)]}) from None
        try:
            ids = self.runtime.ingest(events)
        except PermanentError as error:  # an event over the per-event size limit
            raise _Reply(413, {"error": str(error)}) from None
        warnings = _warnings(events, self.runtime)
        reply: dict[str, Any] = {"accepted": len(ids), "ids": ids}
        if warnings:
            reply["warnings"] = warnings
        return 202, reply

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


def public_order(order: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in order.items() if k not in ("created_by",)}
    out["total"] = order["total_cents"] / 100
    if out.get("status") != "cancelled":
        out.pop("reason", None)
        out.pop("reason_detail", None)
    return out


def _warnings(events: list[Event], runtime: Runtime) -> list[dict[str, Any]]:
    out = []
    for event in events:
        spec = runtime.app.catalog.get(event.type)
        if spec is None:
            out.append({"id": event.id, "problems": [f"unknown type '{event.type}': "
                                                     "accepted, but no consumer receives it"]})
            continue
        problems = spec.data_problems(event.data)
        if problems:
            out.append({"id": event.id, "problems": problems,
                        "note": "accepted; its consumers will dead-letter it with this reason"})
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


def make_server(runtime: Runtime, host: str = "127.0.0.1", port: int = 8080,
                threads: int = 8):
    """A waitress server for the API (port 0 picks a free port: see `effective_port`)."""
    import waitress

    return waitress.create_server(App(runtime), host=host, port=port, threads=threads,
                                  max_request_body_size=MAX_BODY_BYTES,
                                  max_request_header_size=MAX_HEADER_BYTES, ident="switchyard")


def serve(runtime: Runtime, host: str = "127.0.0.1", port: int = 8080,
          workers: int = 4, threads: int = 8) -> None:
    """Run workers and the HTTP server until interrupted (SIGINT or SIGTERM)."""
    import signal

    server = make_server(runtime, host, port, threads)

    def _stop(signum: int, frame: object) -> None:
        # Interrupt the event loop the way Ctrl-C does: waitress then lets the requests in
        # progress finish before run() returns. Closing sockets from here instead would
        # pull them out from under the threads answering those requests.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    runtime.start(workers)
    print(f"switchyard: listening on http://{host}:{server.effective_port}", flush=True)
    try:
        server.run()  # returns after SIGINT/SIGTERM, once in-flight requests are answered
    finally:
        server.close()
        runtime.stop()
