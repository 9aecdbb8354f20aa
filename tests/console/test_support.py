"""A missing browser is named with what to install (the browser tests then fail)."""

from __future__ import annotations

from pathlib import Path

from tests.console import support


def test_a_missing_chromium_says_what_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(support, "CHROMIUM", tmp_path / "no-chromium")
    problem = support.browser_problem()
    assert problem is not None and "make chromium" in problem and "apt-get install" in problem


def test_the_installed_browser_is_usable() -> None:
    assert support.browser_problem() is None, support.browser_problem()
