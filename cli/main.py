"""`switchyard`: run the order system locally, send it events, operate any stack.

Exit codes: 0 done; 1 the command failed (nothing listening, no database, no
credentials, some dead letters not redriven or discarded); 2 bad arguments or
environment (SWITCHYARD_LOG, SWITCHYARD_LOG_FORMAT, ...); 3 `status` found dead letters;
130 interrupted; 141 output closed early (`| head`). Errors are one line on stderr;
SWITCHYARD_LOG=DEBUG adds the traceback of an unexpected one.
"""

# Heavy imports happen inside each command so `switchyard --help` stays instant.

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import sqlite3
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

from cli import args as cli_args
from cli import catalog, console, tools

if TYPE_CHECKING:
    from adapters.local.runtime import Runtime
from cli.ops import commands as ops_commands
from cli.ops.commands import table as _table

DEFAULT_URL: Final = "http://127.0.0.1:8080"
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
#: What a shell reports for a process ended by SIGPIPE (128 + 13): `| head` closed early.
EXIT_BROKEN_PIPE: Final = 141
#: The HTTP API (adapters.local.http_server's routes), for the serve banner; a test checks
#: that the server routes each one.
ENDPOINTS: Final = ("POST /events", "GET /health", "GET /orders", "GET /orders/{id}",
                    "GET /inventory/{id}", "GET /dlq", "POST /dlq/redrive")


class CliError(Exception):
    """A command cannot go on: one line for the user, and the exit code to end with."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
#: The bearer token `serve` requires and `send` sends, when set.
TOKEN_ENV: Final = "SWITCHYARD_TOKEN"


def _db_default() -> str:
    return os.environ.get("SWITCHYARD_DB", "switchyard.db")


def _runtime(args: argparse.Namespace) -> Runtime:
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
        processes=getattr(args, "processes", 0),
    )
    return Runtime(args.db, settings=settings)


def _reader(args: argparse.Namespace) -> Runtime:
    """The runtime over an existing database, read-only: looking creates nothing."""
    from adapters.local.database import DatabaseMissing
    from adapters.local.runtime import Runtime

    try:
        return Runtime(args.db, create=False, read_only=True)
    except DatabaseMissing as error:
        raise CliError(str(error)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from adapters.local.http_server import ServeError, check_access, serve

    try:
        token = _serve_token(args)
        # Before the runtime: a refused setting creates no database and prints no banner.
        check_access(args.host, token, args.insecure_no_token)
    except ServeError as error:
        print(f"switchyard serve: {error}", file=sys.stderr)
        return 1
    runtime = _runtime(args)
    print(_banner(args, runtime, token), flush=True)
    try:
        serve(runtime, host=args.host, port=args.port, workers=args.workers, token=token,
              insecure_no_token=args.insecure_no_token, allow_hosts=args.allow_host)
    except ServeError as error:  # nothing was started: one line, no traceback
        runtime.close()
        print(f"switchyard serve: {error}", file=sys.stderr)
        return 1
    return 0


def _banner(args: argparse.Namespace, runtime: Any, token: str | None = None) -> str:
    """What `serve` runs, where its data is, and how to reach and stop it."""
    from pathlib import Path

    app = runtime.app
    port = args.port if args.port else "<free port: see the 'listening on' line>"
    uploads = next((b.name for b in app.buckets if b.events), None)
    every = (f"every {args.schedule_every:g}s (--schedule-every)" if args.schedule_every
             else "on their cron (UTC)")
    schedules = ", ".join(f"{s.name} [{s.cron}]" for s in app.schedules) or "none"
    lines = [
        f"switchyard {_version()}: the local runtime",
        f"  url        http://{args.host}:{port}",
        f"  console    {console.console_url(args.host, port, token)}",
        f"  database   {Path(args.db).resolve()}",
        f"  uploads    {Path(runtime.blobs.directory(uploads)).resolve()} (drop CSV files "
        f"here)" if uploads else "  uploads    none declared",
        f"  schedules  {schedules}" + (f", fired {every}" if app.schedules else ""),
        f"  workers    {args.workers} (maxDeliveries {args.max_deliveries}, visibility "
        f"timeout {args.visibility_timeout:g}s)" + (
            f", handlers ahead in {args.processes} worker process"
            f"{'es' if args.processes > 1 else ''}" if args.processes else ""),
        f"  endpoints  {', '.join(ENDPOINTS)}",
        "  auth       a bearer token on every request" if token is not None else
        "  auth       none: loopback only, Host and Origin checked",
        "  Ctrl-C to stop",
    ]
    return "\n".join(lines)


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
    from cli.ops import send

    if args.stack != ops_commands.LOCAL:  # publish on a deployed stack's bus
        return send.run(args)
    if args.file:
        if args.type or args.data is not None:
            raise CliError("give either --file, or --type with --data, not both",
                           EXIT_USAGE)
        try:
            if args.file == "-":
                body = sys.stdin.buffer.read()
            else:
                with open(args.file, "rb") as handle:
                    body = handle.read()
        except OSError as error:
            raise CliError(f"cannot read --file {args.file}: {error.strerror or error}",
                           EXIT_USAGE) from None
        content_type = args.content_type or send.guess_content_type(body)
        headers = {"Content-Type": content_type}
    else:
        if not args.type:
            raise CliError("give --file, or --type with --data", EXIT_USAGE)
        from handlers.core import tracing
        from handlers.core.errors import PermanentError
        from handlers.core.events import Event
        from handlers.core.http_binding import to_structured

        try:
            data = json.loads(args.data) if args.data is not None else None
        except ValueError as error:
            raise CliError(f"--data is not valid JSON: {error}", EXIT_USAGE) from None
        source = args.source or _source_for(args.type)
        try:
            event = Event.new(source, args.type, data, id=args.id, subject=args.subject)
        except (PermanentError, ValueError) as error:
            raise CliError(f"cannot build the event: {error}", EXIT_USAGE) from None
        if tracing.enabled():  # the server's spans continue the trace this span starts
            with tracing.ingress([event], "send") as (traced,):
                return _post(args, *to_structured(traced))
        headers, body = to_structured(event)
    return _post(args, headers, body)


def _post(args: argparse.Namespace, headers: dict[str, str], body: bytes) -> int:
    """POST one request to `serve`'s /events; print its answer."""
    if args.token:
        headers = {**headers, "Authorization": f"Bearer {args.token}"}
    request = urllib.request.Request(args.url.rstrip("/") + "/events", data=body,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {_one_line(error.read().decode(errors='replace'))}",
              file=sys.stderr)
        return EXIT_FAILED
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or error.reason
        raise CliError(f"cannot reach {args.url}: {reason} (is `switchyard serve` "
                       f"running? start it, or point --url at it)") from None
    except (OSError, http.client.HTTPException) as error:  # reset, closed, timed out
        raise CliError(f"{args.url} did not answer properly: {type(error).__name__}: "
                       f"{error} (is it a `switchyard serve`?)") from None


def _one_line(text: str) -> str:
    try:
        return json.dumps(json.loads(text))
    except ValueError:
        return " ".join(text.split())


def _source_for(type_: str) -> str:
    from handlers.app import APP

    spec = APP.catalog.get(type_)
    return spec.source if spec else "cli"


def cmd_orders(args: argparse.Namespace) -> int:
    from handlers.money import format_cents

    runtime = _reader(args)
    try:
        orders = runtime.orders()
    finally:
        runtime.close()
    rows = [[o["order_id"], o["customer_id"], format_cents(o["total_cents"]), o["status"],
             o.get("reason") or ""] for o in orders]
    print(_table(["order", "customer", "total", "status", "reason"], rows))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    runtime = _reader(args)
    try:
        rows = runtime.trace(args.order_id)
    finally:
        runtime.close()
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


class _Parser(argparse.ArgumentParser):
    """Every parser shows defaults in --help and reports misuse in one line (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchyard")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "(not installed: version unknown)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="switchyard", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", default=_db_default(),
                       type=cli_args.nonempty("SWITCHYARD_DB"),
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
    serve.add_argument("--workers", type=cli_args.positive_int, default=4,
                       help="worker threads processing deliveries and saga steps")
    serve.add_argument("--processes", type=cli_args.non_negative_int, default=0,
                       help="worker processes running deliveries' handlers outside the write "
                            "lock, to use more cores (0: none; README \"Using more cores\")")
    serve.add_argument("--max-deliveries", type=cli_args.positive_int,
                       default=5, help="attempts per delivery before it is dead-lettered")
    serve.add_argument("--visibility-timeout", type=cli_args.seconds(),
                       default=30.0, help="seconds before an unfinished delivery is retried")
    serve.add_argument("--decline-above", default=os.environ.get(
        "SWITCHYARD_PAYMENT_DECLINE_ABOVE", "1000.00"),
        type=cli_args.amount("SWITCHYARD_PAYMENT_DECLINE_ABOVE"),
        help="the simulated payment provider declines totals above this "
             "(env SWITCHYARD_PAYMENT_DECLINE_ABOVE)")
    serve.add_argument("--uploads", type=cli_args.directory,
                       help="the watched uploads folder (None: <db>.blobs/uploads); drop "
                            "CSVs there")
    serve.add_argument("--schedule-every", type=cli_args.seconds(),
                       help="fire every schedule every N seconds instead of on its cron")
    serve.set_defaults(func=cmd_serve)

    send = sub.add_parser("send", help="post an event (or a file of them) to a server, or "
                                       "publish it on a deployed stack's bus (--stack)")
    send.add_argument("--url", default=DEFAULT_URL, type=cli_args.http_url,
                      help="the `switchyard serve` to post to (--stack local)")
    send.add_argument("--stack", default=ops_commands.LOCAL,
                      help="'local' (POST to --url) or a Pulumi stack name")
    send.add_argument("--outputs", metavar="FILE",
                      help="JSON of `pulumi stack output --json` (None: the pulumi CLI is "
                           "asked)")
    send.add_argument("--json", action="store_true",
                      help="--stack: answer {accepted, ids, bus} as JSON")
    send.add_argument("--file", help="CloudEvent JSON, a batch, or a PutEvents body ('-': "
                                     "stdin)")
    send.add_argument("--content-type",
                      help="of --file (None: guessed from its first bytes)")
    send.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                      help=f"bearer token of the local server (env {TOKEN_ENV})")
    send.add_argument("--type", help="CloudEvents type, e.g. com.switchyard.order.created")
    send.add_argument("--source", help="CloudEvents source (None: the catalog's for --type)")
    send.add_argument("--id", help="CloudEvents id (None: a new UUID)")
    send.add_argument("--subject", help="CloudEvents subject")
    send.add_argument("--data", help="the event data as JSON")
    send.set_defaults(func=cmd_send)

    # dlq, replay, status: on the local runtime or a deployed stack (cli.ops).
    ops_commands.register(sub, with_db)

    orders = with_db(sub.add_parser("orders", help="table of orders and their states"))
    orders.set_defaults(func=cmd_orders)

    trace = with_db(sub.add_parser("trace", help="an order's full path as a timeline"))
    trace.add_argument("order_id", help="the order to follow")
    trace.set_defaults(func=cmd_trace)

    demo = sub.add_parser("demo", help="run the whole flow in-process and print a timeline")
    demo.add_argument("--verbose", action="store_true",
                      help="also show events no consumer receives")
    demo.set_defaults(func=cmd_demo)
    tools.register(sub)  # synth, cost
    catalog.register(sub)  # catalog export|check
    console.register(sub)  # events sample, serve --reload
    return parser


def _say(message: str) -> None:
    """One line on stderr, whatever the message quotes (a server's reply, a path)."""
    print(" ".join(message.split()), file=sys.stderr)


def _configure_logging() -> int:
    """SWITCHYARD_LOG (level) and SWITCHYARD_LOG_FORMAT (json|text), checked; the level."""
    from handlers.core.observability import configure_logging, parse_format, parse_level

    try:
        level = parse_level(os.environ.get("SWITCHYARD_LOG", "INFO"))
    except ValueError as error:
        raise CliError(f"SWITCHYARD_LOG: {error}", EXIT_USAGE) from None
    try:
        json_lines = parse_format(os.environ.get("SWITCHYARD_LOG_FORMAT", "json"))
    except ValueError as error:
        raise CliError(f"SWITCHYARD_LOG_FORMAT: {error}", EXIT_USAGE) from None
    configure_logging(level, json_lines=json_lines)
    return level


#: How many of its latest spans `serve` keeps in memory for the console (tracing on only).
SERVE_KEEPS_SPANS: Final = 10_000


def _configure_tracing(command: str) -> None:
    """OpenTelemetry spans when the OTEL_* variables ask for them (README "Tracing");
    the server also keeps its latest spans for the console's order view."""
    from adapters.telemetry import SettingsError, install_from_env

    try:
        install_from_env(messaging_system="switchyard",
                         service_name=os.environ.get("OTEL_SERVICE_NAME") or "switchyard",
                         keep_spans=SERVE_KEEPS_SPANS if command == "serve" else 0)
    except SettingsError as error:
        raise CliError(str(error), EXIT_USAGE) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends as one line on stderr and an exit code."""
    command = "switchyard"
    level = logging.INFO
    try:
        args = build_parser().parse_args(argv)
        command = f"switchyard {args.command}"
        level = _configure_logging()
        _configure_tracing(args.command)
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except CliError as error:
        _say(f"{command}: {error}")
        return error.code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly. Python's docs recommend pointing
        # stdout at devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _say(f"{command}: interrupted")
        return EXIT_INTERRUPTED
    except sqlite3.Error as error:
        _say(f"{command}: database error: {error}")
        return EXIT_FAILED
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        _say(f"{command}: {error.strerror or error}{where}")
        return EXIT_FAILED
    except Exception as error:  # noqa: BLE001 - the last resort: still one line
        _say(f"{command}: unexpected error: {type(error).__name__}: {error} (rerun with "
             f"SWITCHYARD_LOG=DEBUG for the traceback)")
        if level <= logging.DEBUG:
            traceback.print_exc()
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
