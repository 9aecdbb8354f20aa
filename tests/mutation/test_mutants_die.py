"""Mutants that must die: hand-picked one-line bugs, each applied to a copy of the code.

`make mutation` explores thousands of mutants and takes many minutes; this is its cheap,
always-on sample. Each entry below is a single-line change that breaks one of the
product's promises (never charge twice, stock never below zero, every event processed
once in effect, compensations in reverse, an order id not reused with other content).
The test copies the code, applies the change and runs the tests that are meant to catch
it: they must fail. The first three survived the whole suite once; the tests that kill
them now are the behaviour tests named here.

If the code is restructured so that a mutant's line no longer exists, the test fails and
says so: re-target the mutant at the new code, do not delete it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What a copy needs to run the selected tests (they never read README or infra).
_COPIED = ("handlers", "adapters", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "payment declined at the limit instead of above it",
        "handlers/payments.py",
        "declined = amount_cents > self.decline_above_cents",
        "declined = amount_cents >= self.decline_above_cents",
        ("tests/unit/test_boundaries.py::test_an_order_of_exactly_1000_00_is_charged_and_completed",
         "tests/unit/test_boundaries.py::test_a_configured_limit_declines_only_above_it"),
    ),
    Mutant(
        "removal without its stock condition at commit",
        "handlers/inventory.py",
        'ctx.update(INVENTORY, item_id, add={"available": -quantity},\n'
        '               require_min={"available": quantity}, must_exist=True)',
        'ctx.update(INVENTORY, item_id, add={"available": -quantity},\n'
        '               must_exist=True)',
        ("tests/contract/test_handler_races.py::test_race_on_memory",
         "tests/contract/test_handler_races.py::test_race_on_sqlite"),
    ),
    Mutant(
        "idempotency record written unconditionally",
        "handlers/core/engine.py",
        "Put(PROCESSED, key, record, if_absent=True)",
        "Put(PROCESSED, key, record, if_absent=False)",
        ("tests/contract/test_handler_races.py::test_race_on_memory",
         "tests/contract/test_handler_races.py::test_race_on_sqlite"),
    ),
    Mutant(
        "reservation without its stock condition at commit",
        "handlers/saga.py",
        'require_min={"available": qty}, must_exist=True)',
        "must_exist=True)",
        ("tests/contract/test_handler_races.py::test_race_on_memory",),
    ),
    Mutant(
        "a business failure skips the last completed step's compensation",
        "handlers/core/saga_runner.py",
        "return _begin_compensation(st, outcome.reason, index - 1)",
        "return _begin_compensation(st, outcome.reason, index - 2)",
        ("tests/unit/test_saga.py::test_out_of_stock_refunds_and_cancels",
         "tests/unit/test_saga.py::"
         "test_business_failure_at_step_k_compensates_k_minus_1_to_1_in_reverse"),
    ),
    Mutant(
        "a handler's put-if-absent buffered unconditionally",
        "handlers/core/engine.py",
        "self.ops.append(Put(table, key, dict(item), if_absent=True))",
        "self.ops.append(Put(table, key, dict(item), if_absent=False))",
        ("tests/contract/test_handler_races.py::"
         "test_race_on_memory[one_order_id_created_twice_at_once]",),
    ),
    Mutant(
        "an order id reused with other content is accepted",
        "handlers/orders.py",
        "if not same:",
        "if False:",
        ("tests/unit/test_handlers.py::test_different_order_under_a_used_order_id_is_refused",),
    ),
)


def _copy_code(into: Path) -> Path:
    for name in _COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns(
                "__pycache__", ".hypothesis", "mutation"))
        else:
            shutil.copy2(source, into / name)
    return into


def _pytest(where: Path, tests: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # `-p no:cacheprovider`: nothing written into the copy; `-x`: the first failure is
    # enough to kill a mutant. The copy's root comes first on sys.path (cwd), so its
    # mutated packages shadow the installed ones.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "--timeout", "120", *tests],
        cwd=where, env=env, capture_output=True, text=True, timeout=300)


def _apply(mutant: Mutant, copy: Path) -> None:
    target = copy / mutant.path
    source = target.read_text()
    assert source.count(mutant.original) == 1, (
        f"{mutant.path} no longer contains the line this mutant changes "
        f"({mutant.original!r}): re-target the mutant at the code that now does this")
    target.write_text(source.replace(mutant.original, mutant.mutated))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, subprocess.CompletedProcess[str]]:
    """The control (every selected test on the unmutated copy) and each mutant's run,
    side by side: one pytest process each, as many at once as there are cores."""
    base = tmp_path_factory.mktemp("mutants")
    pristine = _copy_code(base / "pristine")
    runs: dict[str, tuple[Path, Sequence[str]]] = {
        "": (pristine, sorted({t for m in MUTANTS for t in m.tests}))}
    for n, mutant in enumerate(MUTANTS):
        copy = base / f"m{n}"
        shutil.copytree(pristine, copy)
        _apply(mutant, copy)
        runs[mutant.name] = (copy, mutant.tests)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {name: pool.submit(_pytest, where, tests)
                   for name, (where, tests) in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_the_unmutated_copy_passes_every_selected_test(outcomes: dict) -> None:
    control = outcomes[""]
    assert control.returncode == 0, f"the unmutated copy fails:\n{control.stdout[-3000:]}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_killed(mutant: Mutant, outcomes: dict) -> None:
    result = outcomes[mutant.name]
    assert outcomes[""].returncode == 0, "the control failed: see the test above"
    assert result.returncode == 1, (
        f"mutant survived ({mutant.name}): {' '.join(mutant.tests)} passed with "
        f"{mutant.path} changed from {mutant.original!r} to {mutant.mutated!r}\n"
        f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    assert " failed" in result.stdout, result.stdout[-2000:]
