"""`make mutation`: mutation testing of the core with mutmut 3, and its report.

    python -m tools.mutation run      # fresh run of every target, then the report
    python -m tools.mutation report   # the report of the last run (mutants/ kept)
    python -m tools.mutation run --only handlers/core/engine.py   # some modules only

mutmut copies the code into `mutants/`, rewrites each function of a target module into a
trampoline over its mutated variants, maps every test to the functions it reaches (its
per-test coverage), then runs, for each mutant, only those tests (`-x`: the first failure
kills). Configuration (files, tests, timeouts) is `[tool.mutmut]` in pyproject.toml.

The report is a table per module (mutants, killed, survived, equivalent, timeout, kill
rate over the non-equivalent ones) and every survivor with file:line and the change,
printed and written to tests/mutation/report.md. A survivor listed in
tests/mutation/equivalent.toml (by file, function, the line's offset in the function and
the change, so the entry outlives renumbering and edits elsewhere) counts as equivalent:
a change with no behaviour to observe.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
EQUIVALENT: Final = ROOT / "tests" / "mutation" / "equivalent.toml"
REPORT: Final = ROOT / "tests" / "mutation" / "report.md"
MUTANTS: Final = ROOT / "mutants"

#: What is mutated: module path -> the functions (mutmut's mangled names, globs). The
#: local runtime is targeted by function: only its broker's claim/ack path (claim a
#: batch, deliver and ack each with the handler's commit, retry or dead-letter it:
#: `Broker`), the speculated deliveries' and saga runs' recording and settling
#: (`adapters.local.offload`), the pipeline that hands batches out one step ahead
#: (`adapters.local.ahead`) and the saga executor's lease and run of sagas
#: (`SagaExecutor`, `run_due_steps`).
TARGETS: Final[dict[str, tuple[str, ...]]] = {
    "handlers/payments.py": ("*",),
    "handlers/inventory.py": ("*",),
    "handlers/orders.py": ("*",),
    "handlers/saga.py": ("*",),
    "handlers/money.py": ("*",),
    "handlers/core/engine.py": ("*",),
    "handlers/core/saga_runner.py": ("*",),
    "handlers/core/ports.py": ("*",),
    "adapters/local/sqlite_store.py": ("*",),
    "adapters/memory/__init__.py": ("*",),
    "adapters/local/broker.py": (
        "xǁBrokerǁdeliver_batch__mutmut_*", "xǁBrokerǁ_deliver__mutmut_*",
        "xǁBrokerǁ_ack__mutmut_*", "xǁBrokerǁretry_delay__mutmut_*",
        "xǁBrokerǁ_retry_or_dead_letter__mutmut_*", "xǁBrokerǁ_dead_letter__mutmut_*",
        "xǁBrokerǁ_claim__mutmut_*", "xǁBrokerǁ_run__mutmut_*", "xǁBrokerǁ_settle__mutmut_*",
        "xǁBrokerǁdeliver_ahead__mutmut_*",
    ),
    # Batches claimed one step ahead for the workers (deliveries and sagas alike).
    "adapters/local/ahead.py": ("*",),
    # Speculated deliveries and saga runs: what the worker records, what is settled.
    "adapters/local/offload.py": (
        "xǁOffloadǁsettle__mutmut_*", "xǁOffloadǁsettle_run__mutmut_*",
        "xǁOffloadǁ_apply__mutmut_*", "xǁOffloadǁ_hand_out__mutmut_*",
        "xǁ_RecordingStoreǁ*", "xǁ_Overlayǁ*", "xǁ_Recordingǁpublish__mutmut_*",
        "x__speculate__mutmut_*", "x__speculate_sagas__mutmut_*",
    ),
    "adapters/local/sagas.py": ("xǁSagaExecutorǁadvance_batch__mutmut_*",
                                "xǁSagaExecutorǁrun_ahead__mutmut_*",
                                "xǁSagaExecutorǁ_lease__mutmut_*",
                                "xǁSagaExecutorǁ_run_all__mutmut_*",
                                "xǁSagaExecutorǁ_run__mutmut_*",
                                "xǁSagaExecutorǁ_finish__mutmut_*",
                                "x_run_due_steps__mutmut_*"),
}

#: mutmut's exit codes -> the report's columns (anything else: "other").
_STATUS: Final = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
                  36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
                  255: "timeout", None: "not checked"}


def module_name(path: str) -> str:
    dotted = path.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def mutant_globs(only: Sequence[str] = ()) -> list[str]:
    return [f"{module_name(path)}.{pattern}" for path, patterns in TARGETS.items()
            if not only or path in only for pattern in patterns]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    status: str
    function: str = ""
    line: int = 0
    before: str = ""
    after: str = ""
    reason: str = ""  # why it is equivalent, when it is

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Row:
    module: str
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def n(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def kill_rate(self) -> float | None:
        # Over the mutants a test could have killed: not equivalent ones, not ones that no
        # selected test reaches (those are listed as "no tests", a gap of their own).
        judged = self.n("killed") + self.n("survived") + self.n("timeout")
        return None if judged == 0 else (self.n("killed") + self.n("timeout")) / judged


def _load_equivalents() -> list[dict[str, str]]:
    if not EQUIVALENT.exists():
        return []
    return list(tomllib.loads(EQUIVALENT.read_text())["mutant"])


def _diff_lines(diff: str) -> tuple[int, str, str]:
    """(line offset in the function, the line before, the line after) from a unified diff
    of one function; a change of several lines keeps them joined by ' / '."""
    offset, before, after = 0, [], []
    for line in diff.splitlines():
        if line.startswith("@@") and not offset:
            offset = int(line.split()[1].split(",")[0].lstrip("-"))
        elif line.startswith("-") and not line.startswith("---"):
            before.append(line[1:].strip())
        elif line.startswith("+") and not line.startswith("+++"):
            after.append(line[1:].strip())
    first_changed = 0
    for n, line in enumerate(diff.splitlines()[3:]):
        if line.startswith(("-", "+")):
            first_changed = n
            break
    return offset + first_changed, " / ".join(before), " / ".join(after)


def _function_lines(path: Path) -> dict[str, int]:
    """Each function's def line, keyed like mutmut's trampolines (x_f, xǁClassǁmethod)."""
    tree = ast.parse(path.read_text())
    lines: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines[f"x_{node.name}"] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines[f"xǁ{node.name}ǁ{item.name}"] = item.lineno
    return lines


def _source_line(source: list[str], estimate: int, before: str) -> int:
    """The file line of the changed text: the diff's count starts at the function's
    leading comments, if any, so the estimate can be off by their number."""
    first = before.split(" / ")[0]
    found = [n + 1 for n, text in enumerate(source) if text.strip() == first]
    return min(found, key=lambda n: abs(n - estimate)) if found else estimate


def _def_line(lines: dict[str, int], function: str) -> int:
    # decorators shift nothing here: mutmut's diff starts at the `def` line too
    return lines.get(function, 0)


def collect(results: Path = MUTANTS, only: Sequence[str] = ()) -> list[Mutant]:
    """Every target mutant (of the `only` modules, if given) with its status; `results`
    holds mutmut's verdicts (`*.meta`), `mutants/` the mutated code the diffs are read
    from."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # the tool's own reader

    equivalents = _load_equivalents()
    mutants: list[Mutant] = []
    for path, patterns in TARGETS.items():
        meta = results / f"{path}.meta"
        if only and path not in only or not meta.exists():
            continue
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        lines = _function_lines(ROOT / path)
        source = (ROOT / path).read_text().splitlines()
        prefix = module_name(path) + "."
        for name, code in sorted(exit_codes.items(), key=lambda kv: _natural(kv[0])):
            local = name.removeprefix(prefix)
            if not any(fnmatch.fnmatchcase(local, p) for p in patterns):
                continue
            status = _STATUS.get(code, "other")
            function = local.rsplit("__mutmut_", 1)[0]
            if status != "survived":
                mutants.append(Mutant(name, path, status, function))
                continue
            offset, before, after = _diff_lines(get_diff_for_mutant(name, path=path))
            line = _source_line(source, _def_line(lines, function) + offset - 1, before)
            offset = line - _def_line(lines, function) + 1
            # Matched on the line's offset in its function too: the same text can occur
            # twice in a function (a read repeated on another path) with other meaning.
            reason = next((e["reason"] for e in equivalents
                           if e["file"] == path and e["function"] == function
                           and e["offset"] == offset - 1
                           and e["before"] == before and e["after"] == after), "")
            mutants.append(Mutant(name, path, "equivalent" if reason else "survived",
                                  function, line, before, after, reason))
    return mutants


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


COLUMNS: Final = ("killed", "survived", "equivalent", "timeout", "no tests", "not checked")


def table(mutants: Sequence[Mutant]) -> tuple[list[Row], Row]:
    rows: dict[str, Row] = {}
    total = Row("total")
    for m in mutants:
        rows.setdefault(m.path, Row(m.path)).add(m.status)
        total.add(m.status)
    return [rows[p] for p in TARGETS if p in rows], total


def _rate(row: Row) -> str:
    rate = row.kill_rate
    return "-" if rate is None else f"{100 * rate:.1f}%"


def render(mutants: Sequence[Mutant], wall: float | None) -> str:
    rows, total = table(mutants)
    # "other": what mutmut calls suspicious or segfault; shown only when there is any.
    columns = [*COLUMNS, *(["other"] if total.n("other") else [])]
    out = ["| module | mutants | killed | survived | equivalent (marked) | timeout | "
           "no tests | not checked | " + ("other | " if total.n("other") else "")
           + "kill rate |", "|---|" + "---:|" * (len(columns) + 2)]
    for row in [*rows, total]:
        name = f"**{row.module}**" if row is total else f"`{row.module}`"
        out.append(f"| {name} | {row.total} | " + " | ".join(str(row.n(c)) for c in columns)
                   + f" | {_rate(row)} |")
    out.append("")
    out.append("Kill rate = (killed + timeout) / (killed + survived + timeout): equivalent "
               "mutants, mutants no selected test reaches (no tests) and mutants the run "
               "did not get to (not checked: an interrupted run) are left out of it.")
    if wall is not None:
        out.append(f"Wall time of the run: {wall / 60:.1f} min ({os.cpu_count()} cores).")
    survivors = [m for m in mutants if m.status == "survived"]
    out += ["", f"## Survivors ({len(survivors)})", ""]
    out += [f"- `{m.where}` ({m.function}): `{m.before}` -> `{m.after}`" for m in survivors]
    equivalent = [m for m in mutants if m.status == "equivalent"]
    out += ["", f"## Equivalent, marked in equivalent.toml ({len(equivalent)})", ""]
    out += [f"- `{m.where}`: `{m.before}` -> `{m.after}`: {m.reason}" for m in equivalent]
    return "\n".join(out) + "\n"


def _mutmut() -> Path:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit("error: mutmut is not installed in this environment; "
                 "run `make mutation` (it installs the dev extra) or pip install -e '.[dev]'")
    return Path(found)


def run(jobs: int, only: Sequence[str] = ()) -> float:
    """A fresh run of every target, or of the `only` modules (mutmut skips files already
    in mutants/, so a stale copy would test old code); returns the wall time in seconds."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    started = time.monotonic()
    command = [str(_mutmut()), "run", "--max-children", str(jobs), *mutant_globs(only)]
    result = subprocess.run(command, cwd=ROOT)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"error: mutmut run failed (exit {result.returncode}); see its output above")
    (MUTANTS / "wall-seconds").write_text(f"{wall:.0f}\n")
    return wall


def report(results: Path | None = None, only: Sequence[str] = ()) -> str:
    """The report of the last run (written to tests/mutation/report.md), or of the
    verdicts kept in `results` (a copy of an earlier run's `*.meta` files; printed only).
    With `only`, of those modules alone, and the report says so."""
    if not MUTANTS.exists():
        sys.exit("error: no mutants/ folder: run `python -m tools.mutation run` first")
    os.chdir(ROOT)  # mutmut's readers resolve mutants/ and the sources from here
    where = results or MUTANTS
    wall_file = where / "wall-seconds"
    wall = float(wall_file.read_text()) if wall_file.exists() else None
    text = "# Mutation testing: the last run\n\n" + scope_line(where, only) \
        + render(collect(where, only), wall)
    if results is None:
        REPORT.write_text(text)
    return text


def scope_line(where: Path, only: Sequence[str]) -> str:
    """What the run measured and when its last verdict was written (UTC)."""
    metas = [where / f"{path}.meta" for path in (only or TARGETS)]
    stamps = [m.stat().st_mtime for m in metas if m.exists()]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(max(stamps))) if stamps else "-"
    what = ("these modules alone: " + ", ".join(f"`{p}`" for p in only)) if only \
        else "every target module"
    return f"Measured: {what}; last verdict {when}.\n\n"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.mutation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: one per core)")
    parser.add_argument("--results", type=Path, default=None,
                        help="report: the verdicts (*.meta) of an earlier run kept elsewhere")
    parser.add_argument("--only", nargs="+", default=[], choices=list(TARGETS),
                        metavar="MODULE", help="these target modules alone (paths as in "
                        "TARGETS, e.g. handlers/core/engine.py)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "run":
        run(args.jobs, args.only)
    print(report(args.results, args.only))


if __name__ == "__main__":
    main()
