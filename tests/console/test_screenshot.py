"""The README's console screenshot is regenerable: the documented command still produces
a PNG of the expected size (not pixel equality: times and ids differ per run)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.console.support import VIEWPORT, browser_problem
from tests.serve_process import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_make_screenshot_writes_a_png_of_the_viewport(tmp_path: Path) -> None:
    problem = browser_problem()
    if problem:
        pytest.fail(f"the screenshot cannot be taken: {problem}", pytrace=False)
    out = tmp_path / "console.png"
    done = subprocess.run([sys.executable, "-m", "tests.console.screenshot", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _png_size(out) == (VIEWPORT["width"], VIEWPORT["height"])
    assert out.stat().st_size > 20_000  # a rendered page, not a blank one


def test_the_committed_screenshot_is_a_png_of_the_viewport() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/console.png)" in readme
    assert _png_size(ROOT / "docs" / "console.png") == (VIEWPORT["width"], VIEWPORT["height"])
