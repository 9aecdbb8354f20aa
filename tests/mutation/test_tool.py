"""The mutation report's own parts: the equivalent list stays true to the code, the diff
reader finds the changed line, the kill rate leaves out what no test could judge."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from tools.mutation import (
    EQUIVALENT,
    ROOT,
    TARGETS,
    Mutant,
    _diff_lines,
    _function_lines,
    mutant_globs,
    scope_line,
    table,
)

ENTRIES = tomllib.loads(EQUIVALENT.read_text())["mutant"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['file']}:{e['after']}" for e in ENTRIES])
def test_each_equivalent_mutant_still_points_at_its_line(entry: dict) -> None:
    """An entry whose line moved or changed is stale: re-judge the mutant, then re-mark it."""
    assert entry["file"] in TARGETS
    path = ROOT / entry["file"]
    def_line = _function_lines(path)[entry["function"]]
    line = path.read_text().splitlines()[def_line - 1 + entry["offset"]]
    assert line.strip().startswith(entry["before"].split(" / ")[0])
    assert entry["before"] != entry["after"]
    assert len(entry["reason"]) > 20, "say why the change has no behaviour to observe"


def test_the_diff_reader_finds_the_changed_line_in_the_function() -> None:
    diff = "\n".join([
        "--- handlers/payments.py", "+++ handlers/payments.py", "@@ -2,5 +2,5 @@",
        "     a = 1", "     b = 2", "-    declined = x > y", "+    declined = x >= y",
        "     c = 3"])
    assert _diff_lines(diff) == (4, "declined = x > y", "declined = x >= y")


def test_function_lines_are_keyed_like_mutmut(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    pass\n\n\nclass C:\n    def g(self):\n        pass\n")
    assert _function_lines(source) == {"x_f": 1, "xǁCǁg": 6}


def test_the_kill_rate_leaves_out_equivalent_unreached_and_unchecked_mutants() -> None:
    statuses = (["killed"] * 6 + ["survived"] * 2 + ["timeout"] * 2 + ["equivalent"] * 5
                + ["no tests"] * 3 + ["not checked"] * 4)
    rows, total = table([Mutant(f"m{n}", "handlers/payments.py", s)
                         for n, s in enumerate(statuses)])
    assert total.total == 22 and total.kill_rate == 0.8
    assert rows[0].module == "handlers/payments.py"


def test_a_run_of_some_modules_targets_only_their_mutants() -> None:
    globs = mutant_globs(["handlers/core/engine.py", "adapters/local/sagas.py"])
    assert globs == ["handlers.core.engine.*",
                     *(f"adapters.local.sagas.{name}"
                       for name in TARGETS["adapters/local/sagas.py"])]
    assert "adapters.local.sagas.xǁSagaExecutorǁadvance_batch__mutmut_*" in globs
    assert len(mutant_globs()) == sum(len(p) for p in TARGETS.values())


def test_the_report_says_what_was_measured_and_when(tmp_path: Path) -> None:
    meta = tmp_path / "handlers" / "core" / "engine.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text("{}")
    os.utime(meta, (0, 86_400 + 3_600))
    line = scope_line(tmp_path, ["handlers/core/engine.py", "handlers/core/saga_runner.py"])
    assert line == ("Measured: these modules alone: `handlers/core/engine.py`, "
                    "`handlers/core/saga_runner.py`; last verdict 1970-01-02 01:00 UTC.\n\n")
    assert scope_line(tmp_path, []).startswith("Measured: every target module; last verdict")
