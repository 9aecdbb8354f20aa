"""`switchyard dlq|replay|status`: one command per operations job, on every backend.

`--stack local` (the default) works on the embedded runtime's database (`--db`); any
other stack name is a deployed Pulumi stack whose resources are found through its
`switchyard` output (`--outputs FILE`, else `pulumi stack output --json --stack S`).
Exit codes: 0 done; 1 some selected dead letters could not be redriven; 2 bad input or
outputs that cannot be found; 3 (`status`) some dead-letter queue is not empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final

from adapters.missing_sdk import guarded
from adapters.ops.model import Backend, DeadLetter, OpsError, Selection, parse_time

LOCAL: Final = "local"
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: `status` exit code when any dead-letter queue holds something (for cron and CI).
EXIT_DEAD_LETTERS: Final = 3


@contextmanager
def open_backend(args: argparse.Namespace) -> Iterator[Backend]:
    """The backend `--stack` names; a local runtime is closed afterwards."""
    from handlers.core.app import load_app

    if args.stack == LOCAL:
        from adapters.local.runtime import Runtime
        from adapters.ops.local import LocalOps

        runtime = Runtime(args.db)
        try:
            yield LocalOps(runtime)
        finally:
            runtime.close()
        return
    from adapters.ops import outputs

    found = outputs.load(args.stack, args.outputs)
    if isinstance(found, outputs.AwsOutputs):
        from adapters.ops.aws import AwsOps

        yield AwsOps.connect(found, load_app())
    else:
        from adapters.ops.gcp import GcpOps

        yield GcpOps.connect(found, load_app())


def _run(command: Callable[[argparse.Namespace, Backend], int]
         ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from adapters.ops.outputs import OutputsError

        def on_backend() -> int:
            with open_backend(args) as backend:
                return command(args, backend)

        try:
            # A deployed stack needs its cloud's SDK: missing, it is named in one line.
            return guarded(args.command, on_backend)
        except (OutputsError, OpsError) as error:
            print(f"switchyard {args.command}: {error}", file=sys.stderr)
            return EXIT_USAGE
    return run


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(consumer=args.consumer, type=args.type, reason=args.reason,
                     event_id=getattr(args, "event_id", None) or args.id)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def cmd_dlq(args: argparse.Namespace, backend: Backend) -> int:
    selection = _selection(args)
    if args.action == "redrive":
        result = backend.redrive(selection, dry_run=args.dry_run)
        if args.json:
            print(json.dumps({"dry_run": result.dry_run,
                              "redriven": [d.to_dict() for d in result.redriven],
                              "failed": [{**d.to_dict(), "error": e} for d, e in result.failed]},
                             indent=2, default=str))
        else:
            verb = "would redrive" if result.dry_run else "redriven"
            print(f"{verb} {_plural(len(result.redriven), 'entry', 'entries')}"
                  + (f": {[_name(d) for d in result.redriven]}" if result.redriven else ""))
            for letter, error in result.failed:
                print(f"NOT redriven {_name(letter)}: {error}", file=sys.stderr)
        return EXIT_FAILED if result.failed else 0
    letters = backend.dead_letters(selection)
    if args.action == "show" or args.json:
        print(json.dumps([d.to_dict() for d in letters], indent=2, default=str))
        return 0
    print(table(["consumer", "event id", "type", "attempts", "failed at", "reason"],
                 [[d.consumer, d.event_id or "?", d.type or "?", _opt(d.attempts),
                   (d.failed_at or "-")[:19], d.reason[:100]] for d in letters]))
    print(f"{len(letters)} dead-lettered")
    return 0


def _name(letter: DeadLetter) -> str:
    return f"{letter.consumer}/{letter.event_id or letter.location}"


def cmd_status(args: argparse.Namespace, backend: Backend) -> int:
    rows = backend.status()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(table(["consumer", "backlog", "in flight", "dead letters", "latest failure"],
                     [[r.consumer, _opt(r.backlog), _opt(r.in_flight), r.dead_letters,
                       (r.recent_failures[0] if r.recent_failures else "")[:100]]
                      for r in rows]))
        for note in sorted({r.note for r in rows if r.note}):
            print(f"n/a: {note}")
    dead = sum(r.dead_letters for r in rows)
    if dead:
        print(f"{_plural(dead, 'dead letter', 'dead letters')}: see `switchyard dlq list "
              f"--stack {args.stack}`", file=sys.stderr)
        return EXIT_DEAD_LETTERS
    return 0


def cmd_replay(args: argparse.Namespace, backend: Backend) -> int:
    now = datetime.now(UTC)
    start = parse_time(args.start, now)
    end = parse_time(args.end, now) if args.end else now
    result = backend.replay(start, end, tuple(args.type or ()), dry_run=args.dry_run)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str))
    else:
        print(result.description)
    return 0


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def register(sub: Any, with_db: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
             ) -> None:
    """Add `dlq`, `replay` and `status` to the `switchyard` command line."""

    def stack_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_db(p)
        p.add_argument("--stack", default=LOCAL,
                       help="'local' (the runtime's --db, default) or a Pulumi stack name")
        p.add_argument("--outputs", metavar="FILE",
                       help="JSON of `pulumi stack output --json` (else the pulumi CLI is "
                            "asked)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    dlq = stack_options(sub.add_parser(
        "dlq", help="list, show or redrive dead-lettered events"))
    dlq.add_argument("action", choices=["list", "show", "redrive"])
    dlq.add_argument("event_id", nargs="?", help="only this event id")
    dlq.add_argument("--consumer")
    dlq.add_argument("--type", help="only this event type")
    dlq.add_argument("--reason", help="only reasons containing this text (any case)")
    dlq.add_argument("--id", help="only this event id")
    dlq.add_argument("--dry-run", action="store_true",
                     help="redrive: say what would be redriven, change nothing")
    dlq.set_defaults(func=_run(cmd_dlq))

    replay = stack_options(sub.add_parser(
        "replay", help="put the bus's events of a time window back to the consumers"))
    replay.add_argument("--from", dest="start", required=True,
                        help="ISO 8601 time, or a duration ago (30m, 2h, 1d)")
    replay.add_argument("--to", dest="end", help="ISO 8601 time or duration ago (default now)")
    replay.add_argument("--type", action="append",
                        help="only this event type (repeatable)")
    replay.add_argument("--dry-run", action="store_true")
    replay.set_defaults(func=_run(cmd_replay))

    status = stack_options(sub.add_parser(
        "status", help=f"backlog, dead letters and recent failures per consumer; exit "
                       f"{EXIT_DEAD_LETTERS} if any dead-letter queue is not empty"))
    status.set_defaults(func=_run(cmd_status))
