"""`switchyard`: the command line. Local runtime commands today; cloud commands later.

Heavy imports happen inside each command so `switchyard --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from adapters.ops import commands as ops_commands
from adapters.ops.commands import table as _table

DEFAULT_URL = "http://127.0.0.1:8080"
#: The bearer token `serve` requires and `send` sends, when set.
TOKEN_ENV = "SWITCHYARD_TOKEN"


def _db_default() -> str:
    return os.environ.get("SWITCHYARD_DB", "switchyard.db")


def _runtime(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from adapters.local.runtime import Runtime, RuntimeSettings
    from handlers.money import to_cents

    visibility = getattr(args, "visibility_timeout", 30.0)
    settings = RuntimeSettings(
        max_deliveries=getattr(args, "max_deliveries", 5),
        visibility_timeout=visibility,
        saga_lease=visibility,  # one knob: how long a dead worker's claim blocks its work
        decline_above_cents=to_cents(getattr(args, "decline_above", "1000.00")),
        uploads_dir=getattr(args, "uploads", None),
        schedule_every=getattr(args, "schedule_every", None),
    )
    return Runtime(args.db, settings=settings)


def cmd_serve(args: argparse.Namespace) -> int:
    from adapters.local.http_server import ServeError, serve, token_problem

    try:
        token = _serve_token(args)
        if token is not None and (problem := token_problem(token)):
            raise ServeError(problem)
    except ServeError as error:
        print(f"switchyard serve: {error}", file=sys.stderr)
        return 1
    runtime = _runtime(args)
    print(f"switchyard: db {args.db}, {args.workers} workers, "
          f"maxDeliveries {args.max_deliveries}", flush=True)
    try:
        serve(runtime, host=args.host, port=args.port, workers=args.workers, token=token,
              insecure_no_token=args.insecure_no_token, allow_hosts=args.allow_host)
    except ServeError as error:  # nothing was started: one line, no traceback
        runtime.close()
        print(f"switchyard serve: {error}", file=sys.stderr)
        return 1
    return 0


def _serve_token(args: argparse.Namespace) -> str | None:
    """--token, else --token-file, else SWITCHYARD_TOKEN; None when none is given."""
    from adapters.local.http_server import ServeError

    if args.token is not None:
        return str(args.token)
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ServeError(f"cannot read --token-file {args.token_file}: "
                             f"{getattr(error, 'strerror', None) or error}") from None
        if not token:
            raise ServeError(f"--token-file {args.token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535, or 0 for any free "
                                         "port)")
    return port


def cmd_send(args: argparse.Namespace) -> int:
    if args.file:
        with open(args.file, "rb") as handle:
            body = handle.read()
        content_type = args.content_type or _guess_content_type(body)
        headers = {"Content-Type": content_type}
    else:
        if not args.type:
            print("switchyard send: give --file, or --type with --data", file=sys.stderr)
            return 2
        from handlers.core.events import Event
        from handlers.core.http_binding import to_structured

        data = json.loads(args.data) if args.data else None
        source = args.source or _source_for(args.type)
        event = Event.new(source, args.type, data, id=args.id, subject=args.subject)
        headers, body = to_structured(event)
    if args.token:
        headers = {**headers, "Authorization": f"Bearer {args.token}"}
    request = urllib.request.Request(args.url.rstrip("/") + "/events", data=body,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {error.read().decode()}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"cannot reach {args.url}: {error.reason} (is `switchyard serve` running?)",
              file=sys.stderr)
        return 1


def _guess_content_type(body: bytes) -> str:
    text = body.lstrip()[:1]
    if text == b"[":
        return "application/cloudevents-batch+json"
    try:
        parsed = json.loads(body)
    except ValueError:
        return "application/json"
    if isinstance(parsed, dict) and "specversion" in parsed:
        return "application/cloudevents+json"
    return "application/json"


def _source_for(type_: str) -> str:
    from handlers.app import APP

    spec = APP.catalog.get(type_)
    return spec.source if spec else "cli"


def cmd_orders(args: argparse.Namespace) -> int:
    from handlers.money import format_cents

    runtime = _runtime(args)
    rows = [[o["order_id"], o["customer_id"], format_cents(o["total_cents"]), o["status"],
             o.get("reason") or ""] for o in runtime.orders()]
    print(_table(["order", "customer", "total", "status", "reason"], rows))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    rows = runtime.trace(args.order_id)
    if not rows:
        print(f"nothing recorded for order '{args.order_id}'", file=sys.stderr)
        return 1
    start = rows[0]["at"]
    print(f"order {args.order_id}: {len(rows)} steps, trace "
          f"{', '.join(sorted({r['trace_id'] for r in rows if r['trace_id']})) or '-'}")
    print(_table(["+ms", "event / step", "consumer", "try", "outcome", "took ms", "detail"],
                 [[f"{(r['at'] - start) * 1000:.0f}", r["type"], r["consumer"] or "-",
                   r["attempt"], r["outcome"], f"{r['duration_ms'] or 0:.1f}",
                   (r["detail"] or "")[:70]] for r in rows]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from adapters.local.demo import run_demo

    return run_demo(verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", default=_db_default(),
                       help="SQLite database of the local runtime (env SWITCHYARD_DB)")
        return p

    serve = with_db(sub.add_parser("serve", help="run the local runtime with its HTTP API"))
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; any other needs a token)")
    serve.add_argument("--port", type=_port, default=8080,
                       help="1-65535, or 0 for any free port (printed at start)")
    serve.add_argument("--token", help=f"require Authorization: Bearer TOKEN on every request "
                                       f"(env {TOKEN_ENV}; prefer it or --token-file: "
                                       "arguments show in ps)")
    serve.add_argument("--token-file", help="read the token from this file")
    serve.add_argument("--insecure-no-token", action="store_true",
                       help="allow a non-loopback --host without a token")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="another name clients use in the Host header (repeatable)")
    serve.add_argument("--workers", type=int, default=4)
    serve.add_argument("--max-deliveries", type=int, default=5)
    serve.add_argument("--visibility-timeout", type=float, default=30.0,
                       help="seconds before an unfinished delivery is retried")
    serve.add_argument("--decline-above", default=os.environ.get(
        "SWITCHYARD_PAYMENT_DECLINE_ABOVE", "1000.00"),
        help="the simulated payment provider declines totals above this "
             "(env SWITCHYARD_PAYMENT_DECLINE_ABOVE)")
    serve.add_argument("--uploads", help="the watched uploads folder (default: "
                                         "<db>.blobs/uploads); drop CSVs there")
    serve.add_argument("--schedule-every", type=float,
                       help="fire every schedule every N seconds instead of on its cron")
    serve.set_defaults(func=cmd_serve)

    send = sub.add_parser("send", help="post an event (or a file of them) to a server")
    send.add_argument("--url", default=DEFAULT_URL)
    send.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                      help=f"bearer token of the server (env {TOKEN_ENV})")
    send.add_argument("--file", help="CloudEvent JSON, a batch, or a PutEvents body")
    send.add_argument("--content-type")
    send.add_argument("--type", help="CloudEvents type, e.g. com.switchyard.order.created")
    send.add_argument("--source")
    send.add_argument("--id")
    send.add_argument("--subject")
    send.add_argument("--data", help="the event data as JSON")
    send.set_defaults(func=cmd_send)

    # dlq, replay, status: on the local runtime or a deployed stack (adapters.ops).
    ops_commands.register(sub, with_db)

    orders = with_db(sub.add_parser("orders", help="table of orders and their states"))
    orders.set_defaults(func=cmd_orders)

    trace = with_db(sub.add_parser("trace", help="an order's full path as a timeline"))
    trace.add_argument("order_id")
    trace.set_defaults(func=cmd_trace)

    demo = sub.add_parser("demo", help="run the whole flow in-process and print a timeline")
    demo.add_argument("--verbose", action="store_true",
                      help="also show events no consumer receives")
    demo.set_defaults(func=cmd_demo)
    __import__("adapters.tools_cli").tools_cli.register(sub)  # synth, cost (issue 6)
    return parser


def main(argv: list[str] | None = None) -> int:
    from handlers.core.observability import configure_logging

    configure_logging(os.environ.get("SWITCHYARD_LOG", "INFO"),
                      json_lines=os.environ.get("SWITCHYARD_LOG_FORMAT", "json") == "json")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
