"""`switchyard events sample` and `switchyard serve --reload`, plus the console's URL line.

Registered by one call from the CLI (`register(sub)`), like the catalog commands: the
`events` command is added here, and the existing `serve` command gains `--reload` and a
`console` line naming the console's address (with `#token=...` when SWITCHYARD_TOKEN is
set, so the page can authenticate without the token ever reaching a server log: a URL
fragment is not sent over HTTP).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from adapters.contracts import samples

#: The environment variable the serve command's optional bearer token comes from.
TOKEN_ENV = "SWITCHYARD_TOKEN"


def console_url(host: str, port: int | str, token: str | None = None) -> str:
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    return url + (f"#token={token}" if token else "")


def cmd_events_sample(args: argparse.Namespace) -> int:
    from handlers.core.app import load_app

    catalog = load_app().catalog
    if args.list:
        width = max(len(t.type) for t in catalog)
        for spec in catalog:
            print(f"{spec.type:<{width}}  {spec.source:<13}  {spec.detail_type}")
        return 0
    if not args.type:
        print("switchyard events sample: give an event TYPE, or --list", file=sys.stderr)
        return 2
    try:
        body = samples.sample(catalog, args.type, args.format)
    except samples.SampleError as error:
        print(f"switchyard events sample: {error}", file=sys.stderr)
        return 2
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


def _serve_with_console(original: Callable[[argparse.Namespace], int]
                        ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "reload", False):
            from adapters.local import reload as reloader

            return reloader.supervise(args, [sys.executable, "-m", "cli"])
        from adapters.local import reload
        from adapters.local.console.app import close_streams

        reload.watch_drain(close_streams)  # only under `--reload`'s supervisor
        return original(args)

    return run


def register(sub: Any) -> None:
    """Add `events sample`, and `--reload` + the console line to `serve`."""
    events = sub.add_parser("events", help="event helpers: sample events of any catalog type")
    events_sub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    sample = events_sub.add_parser(
        "sample", help="print a valid sample event of a catalog type (pipe it into "
                       "`switchyard send --file -`)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("type", nargs="?", metavar="TYPE",
                        help="CloudEvents type (or EventBridge DetailType)")
    sample.add_argument("--list", action="store_true", help="list the catalog's types")
    sample.add_argument("--format", choices=samples.FORMATS, default="cloudevent",
                        help="a structured CloudEvent, or a PutEvents body with one entry")
    sample.set_defaults(func=cmd_events_sample)

    serve = sub.choices.get("serve")
    if serve is None:  # a CLI without `serve`: nothing to extend
        return
    serve.add_argument("--reload", action="store_true",
                       help="restart the runtime when the app's source changes (handlers/ "
                            "and the SWITCHYARD_APP module); nothing queued is lost")
    serve.set_defaults(func=_serve_with_console(serve.get_default("func")))
