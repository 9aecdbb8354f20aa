"""`switchyard dlq|replay|status`: one command per operations job, on every backend.

`--stack local` (the default) works on the embedded runtime's database (`--db`), which
must exist (nothing is created by looking; commands that only look open it read-only);
any other stack name is a deployed Pulumi stack whose resources are found through its
`switchyard` output (`--outputs FILE`, else `pulumi stack output --json --stack S`).
Exit codes: 0 done; 1 some selected dead letters could not be redriven or discarded, or
the platform failed (no database, no credentials, access denied); 2 bad input or outputs
that cannot be found; 3 (`status`) some dead-letter queue is not empty.

`dlq discard ID...` and `dlq purge` (filters, or `--all`) give up on dead letters for
good, with a durable record of each: local, the table `dlq_discarded`; on a stack, a JSON
line per letter in an audit file (`cli.ops.audit`) written before the delete.
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

from cli import args as cli_args
from cli.missing_sdk import guarded
from cli.ops.model import (
    Backend,
    DeadLetter,
    OpsError,
    PlatformError,
    Selection,
    parse_time,
)

LOCAL: Final = "local"
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: `status` exit code when any dead-letter queue holds something (for cron and CI).
EXIT_DEAD_LETTERS: Final = 3


#: `dlq` actions that change nothing (the database is opened read-only for them).
_LOOKING: Final = frozenset({"list", "show"})


def _writes(args: argparse.Namespace) -> bool:
    if args.command == "dlq":
        return args.action not in _LOOKING and not args.dry_run
    if args.command == "replay":
        return not args.dry_run
    return False  # status


@contextmanager
def open_backend(args: argparse.Namespace) -> Iterator[Backend]:
    """The backend `--stack` names; a local runtime is closed afterwards. Cloud SDK
    errors (no credentials, access denied) come out as `PlatformError`s."""
    from handlers.core.app import load_app

    if args.stack == LOCAL:
        from adapters.local.database import DatabaseMissing
        from adapters.local.runtime import Runtime
        from cli.ops.local import LocalOps

        try:
            runtime = Runtime(args.db, create=False, read_only=not _writes(args))
        except DatabaseMissing as error:
            raise PlatformError(str(error)) from None
        try:
            yield LocalOps(runtime)
        finally:
            runtime.close()
        return
    from adapters.stack_outputs import AwsOutputs
    from cli.ops import failures
    from cli.ops.outputs import load

    found = load(args.stack, args.outputs)
    try:
        if isinstance(found, AwsOutputs):
            from cli.ops.aws import AwsOps

            yield AwsOps.connect(found, load_app())
        else:
            from cli.ops.gcp import GcpOps

            yield GcpOps.connect(found, load_app())
    except Exception as error:
        described = failures.describe(error)
        if described is None:
            raise
        raise described from error


def _run(command: Callable[[argparse.Namespace, Backend], int]
         ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from adapters.stack_outputs import OutputsError

        def on_backend() -> int:
            with open_backend(args) as backend:
                return command(args, backend)

        try:
            _check(args)
            # A deployed stack needs its cloud's SDK: missing, it is named in one line.
            return guarded(args.command, on_backend)
        except PlatformError as error:
            print(f"switchyard {args.command}: {_one_line(error)}", file=sys.stderr)
            return EXIT_FAILED
        except (OutputsError, OpsError) as error:
            print(f"switchyard {args.command}: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
    return run


def _check(args: argparse.Namespace) -> None:
    """Argument rules argparse cannot say, checked before anything is opened."""
    if args.command != "dlq":
        return
    selection = _selection(args)
    if args.action == "discard" and not selection.event_ids and not selection.event_id:
        raise OpsError("discard: name the event ids to discard (`dlq discard ID...`); to "
                       "discard by filter use `dlq purge`")
    if args.action == "purge" and selection.event_ids:
        raise OpsError("purge takes filters, not event ids: use `dlq discard ID...` or "
                       "--id")
    if args.action == "purge" and not selection.filtered and not args.all:
        raise OpsError("purge without a filter (--consumer, --type, --reason, --id) "
                       "discards every dead letter: add --all to confirm")
    if args.all and args.action != "purge":
        raise OpsError("--all only applies to `dlq purge`")
    if args.action == "show" and len(selection.event_ids) > 1:
        raise OpsError("show: give one event id (or none, for every dead letter)")


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(consumer=args.consumer, type=args.type, reason=args.reason,
                     event_id=args.id, event_ids=tuple(getattr(args, "event_ids", ()) or ()))


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
    if args.action in ("discard", "purge"):
        return _discard(args, backend, selection)
    letters = backend.dead_letters(selection)
    if args.action == "show" and selection.event_ids and not letters:
        print(f"switchyard dlq: no dead letter with event id '{selection.event_ids[0]}'"
              + _filters_note(args), file=sys.stderr)
        return EXIT_FAILED
    if args.action == "show" or args.json:
        print(json.dumps([d.to_dict() for d in letters], indent=2, default=str))
        return 0
    print(table(["consumer", "event id", "type", "attempts", "failed at", "reason"],
                 [[d.consumer, d.event_id or "?", d.type or "?", _opt(d.attempts),
                   (d.failed_at or "-")[:19], d.reason[:100]] for d in letters]))
    print(f"{len(letters)} dead-lettered")
    return 0


def _filters_note(args: argparse.Namespace) -> str:
    given = [f"--{name} {value}" for name, value in
             (("consumer", args.consumer), ("type", args.type), ("reason", args.reason))
             if value]
    return f" matching {' '.join(given)}" if given else ""


def _discard(args: argparse.Namespace, backend: Backend, selection: Selection) -> int:
    from cli.ops.audit import DEFAULT_AUDIT_LOG, JsonLinesAudit, operator

    audit = None
    if args.audit_log or args.stack != LOCAL:  # local keeps its record in the database
        audit = JsonLinesAudit(args.audit_log or DEFAULT_AUDIT_LOG, args.stack)
    by = operator()
    result = backend.discard(selection, by, audit, dry_run=args.dry_run)
    named = {*selection.event_ids, *([selection.event_id] if selection.event_id else [])}
    missing = sorted(named - {d.event_id for d in result.discarded}
                     - {d.event_id for d, _ in result.failed})
    if args.json:
        print(json.dumps({"dry_run": result.dry_run, "discarded_by": by,
                          "record": result.record,
                          "discarded": [d.to_dict() for d in result.discarded],
                          "failed": [{**d.to_dict(), "error": e} for d, e in result.failed],
                          "not_found": missing}, indent=2, default=str))
    else:
        verb = "would discard" if result.dry_run else "discarded"
        print(f"{verb} {_plural(len(result.discarded), 'dead letter', 'dead letters')}"
              + (f": {[_name(d) for d in result.discarded]}" if result.discarded else ""))
        if result.discarded and not result.dry_run:
            print(f"recorded in {result.record} (by {by})")
        for letter, error in result.failed:
            print(f"NOT discarded {_name(letter)}: {error}", file=sys.stderr)
        for event_id in missing:
            print(f"no dead letter with event id '{event_id}'" + _filters_note(args),
                  file=sys.stderr)
    return EXIT_FAILED if result.failed or missing else 0


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
    types = tuple(args.type or ())
    if args.stack == LOCAL:
        from cli.ops.local import LocalOps

        assert isinstance(backend, LocalOps)
        result = backend.replay(start, end, types, dry_run=args.dry_run, wait_s=args.wait)
        note = None
    else:
        if args.wait:
            raise OpsError("--wait applies to the local runtime only")
        result = backend.replay(start, end, types, dry_run=args.dry_run)
        note = CLOUD_REPLAY_NOTE
    if args.json:
        print(json.dumps({**asdict(result), **({"note": note} if note else {})}, indent=2,
                         default=str))
    else:
        print(result.description)
        if note:  # on stderr: stdout stays the platform's answer, for scripts
            print(f"note: {note}", file=sys.stderr)
    return 0


#: The clouds' dead-letter queues do not deduplicate: said on every cloud replay.
CLOUD_REPLAY_NOTE: Final = (
    "replayed events that fail again are dead-lettered again (the cloud's dead-letter "
    "queue does not deduplicate); afterwards, check `switchyard dlq list` and discard "
    "known poison with `switchyard dlq discard`")


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
        p.add_argument("--stack", default=LOCAL, type=cli_args.nonempty(),
                       help="'local' (the runtime's --db) or a Pulumi stack name")
        p.add_argument("--outputs", metavar="FILE",
                       help="JSON of `pulumi stack output --json` (else the pulumi CLI is "
                            "asked)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    dlq = stack_options(sub.add_parser(
        "dlq", help="list, show, redrive, discard or purge dead-lettered events",
        description="list|show|redrive dead letters; `discard ID...` or `purge FILTERS` "
                    "give up on them for good, with a record of what, by whom and when"))
    dlq.add_argument("action", choices=["list", "show", "redrive", "discard", "purge"],
                     help="what to do")
    dlq.add_argument("event_ids", nargs="*", metavar="EVENT_ID",
                     help="only these event ids (discard: these, or --id)")
    dlq.add_argument("--consumer", help="only this consumer's dead letters")
    dlq.add_argument("--type", help="only this event type")
    dlq.add_argument("--reason", help="only reasons containing this text (any case)")
    dlq.add_argument("--id", help="only this event id")
    dlq.add_argument("--dry-run", action="store_true",
                     help="redrive/discard/purge: say what would be done, change nothing")
    dlq.add_argument("--all", action="store_true",
                     help="purge: confirm discarding every dead letter when no filter is "
                          "given")
    dlq.add_argument("--audit-log", metavar="PATH",
                     help="discard/purge: the JSON-lines record of what was discarded (a "
                          "deployed stack's default: ./switchyard-discards.jsonl; local "
                          "always records in its database, table dlq_discarded)")
    dlq.set_defaults(func=_run(cmd_dlq))

    replay = stack_options(sub.add_parser(
        "replay", help="put the bus's events of a time window back to the consumers"))
    replay.add_argument("--from", dest="start", required=True,
                        help="ISO 8601 time, or a duration ago (30m, 2h, 1d)")
    replay.add_argument("--to", dest="end",
                        help="ISO 8601 time or duration ago (default: now)")
    replay.add_argument("--type", action="append",
                        help="only this event type (repeatable)")
    replay.add_argument("--dry-run", action="store_true",
                        help="say what would be replayed, change nothing")
    replay.add_argument("--wait", type=cli_args.seconds(allow_zero=True), default=0.0,
                        metavar="SECONDS",
                        help="local: wait up to this long for a running `switchyard "
                             "serve` to process the replay, then report what failed again")
    replay.set_defaults(func=_run(cmd_replay))

    status = stack_options(sub.add_parser(
        "status", help=f"backlog, dead letters and recent failures per consumer; exit "
                       f"{EXIT_DEAD_LETTERS} if any dead-letter queue is not empty"))
    status.set_defaults(func=_run(cmd_status))



def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
