"""`switchyard synth` and `switchyard cost`: look at a stack before it exists.

Both run the real Pulumi program offline under mocks (`infra.synth`), so they need no
Pulumi CLI and no credentials. Pulumi and the cloud SDKs are imported inside the commands,
never at import of this module, so `switchyard demo` and `serve` start as fast as before;
in an environment without them (`make demo` installs only the base package) the commands
say in one line what to install (`cli.missing_sdk`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.missing_sdk import guarded

FORMATS = ("json", "mermaid", "table")


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def render(stack: str, fmt: str) -> str:
    """The document `switchyard synth --stack STACK --format FMT` writes."""
    from infra.synth import synthesize, to_json, to_table

    rec = synthesize(stack)
    if fmt == "json":
        return to_json(rec)
    if fmt == "table":
        return to_table(rec)
    from infra.diagram import to_mermaid
    from infra.program import load_app

    return to_mermaid(rec, load_app())


def _markers(stack: str) -> tuple[str, str]:
    return (f"<!-- synth:mermaid {stack} (generated: {regenerate_command(stack)}) -->",
            f"<!-- /synth:mermaid {stack} -->")


def regenerate_command(stack: str) -> str:
    return f"switchyard synth --stack {stack} --format mermaid --readme README.md"


def readme_block(readme: str, stack: str) -> str | None:
    """The diagram between the stack's markers in `readme`, or None without markers."""
    begin, end = _markers(stack)
    start = readme.find(begin)
    stop = readme.find(end, start + 1)
    if start < 0 or stop < 0:
        return None
    body = readme[start + len(begin) : stop].strip("\n")
    fence = "```mermaid\n"
    return body[len(fence) : -len("```")] if body.startswith(fence) else body


def with_readme_block(readme: str, stack: str, diagram: str) -> str:
    """`readme` with the stack's diagram replaced (markers must already be there)."""
    begin, end = _markers(stack)
    start = readme.find(begin)
    stop = readme.find(end, start + 1)
    if start < 0 or stop < 0:
        raise ValueError(f"the README has no markers for {stack}: add the lines\n{begin}\n{end}")
    block = f"{begin}\n```mermaid\n{diagram}```\n"
    return readme[:start] + block + readme[stop:]


def cmd_synth(args: argparse.Namespace) -> int:
    return guarded("synth", lambda: _synth(args))


def _synth(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.synth import SynthError

    if args.readme and args.format != "mermaid":
        print("switchyard synth: --readme takes --format mermaid", file=sys.stderr)
        return 2
    try:
        text = render(args.stack, args.format)
        if args.readme:
            path = Path(args.readme)
            path.write_text(with_readme_block(path.read_text(encoding="utf-8"), args.stack,
                                              text), encoding="utf-8")
            return 0
    except (SynthError, ConfigError, ValueError, OSError) as exc:
        print(f"switchyard synth: {exc}", file=sys.stderr)
        return 2
    _write(text, args.out)
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    return guarded("cost", lambda: _cost(args))


def _cost(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.cost import CostError, estimate_stack, render_compare, render_estimate
    from infra.synth import SynthError

    try:
        if args.compare:
            text = render_compare(args.events_per_day, sagas_per_day=args.sagas_per_day)
        else:
            text = render_estimate(estimate_stack(args.stack, args.events_per_day,
                                                  args.sagas_per_day))
    except (SynthError, ConfigError, CostError) as exc:
        print(f"switchyard cost: {exc}", file=sys.stderr)
        return 2
    _write(text, args.out)
    return 0


def _events_per_day(raw: str) -> int:
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(sub: Any) -> None:
    """Add `synth` and `cost` to the `switchyard` sub-command parser."""
    synth = sub.add_parser(
        "synth", help="write a stack's resource graph (offline, under Pulumi mocks)")
    synth.add_argument("--stack", required=True,
                       help="a stack with a Pulumi.<stack>.yaml, e.g. dev-aws or dev-gcp")
    synth.add_argument("--format", choices=FORMATS, default="json",
                       help="json: every resource; mermaid: the event topology; "
                            "table: counts by resource type")
    synth.add_argument("--out", help="write to this file instead of stdout")
    synth.add_argument("--readme", metavar="FILE",
                       help="replace the stack's diagram between its markers in FILE")
    synth.set_defaults(func=cmd_synth)

    cost = sub.add_parser(
        "cost", help="monthly cost estimate of a stack from its synthesized graph")
    cost.add_argument("--stack", default="dev-aws",
                      help="a stack with a Pulumi.<stack>.yaml (ignored with --compare)")
    cost.add_argument("--events-per-day", type=_events_per_day, required=True,
                      help="events accepted per day")
    cost.add_argument("--sagas-per-day", type=float, default=None,
                      help="order sagas started per day (default: the price table's "
                           "sagas_per_event x events)")
    cost.add_argument("--compare", action="store_true",
                      help="dev-aws vs dev-gcp side by side, with the always-on baseline")
    cost.add_argument("--out", help="write to this file instead of stdout")
    cost.set_defaults(func=cmd_cost)
