"""The emulator harness fails loudly, naming what to install, when a stand-in is missing."""

from __future__ import annotations

import pytest

from tests.gcp import conftest


def test_missing_gcloud_or_java_fails_with_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception) as caught:
        conftest._sdk_root()
    assert "gcloud and java" in str(caught.value) and "pubsub-emulator" in str(caught.value)


def test_missing_workflows_emulator_fails_with_how_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(conftest, "WORKFLOWS_VENV", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="make .venv-workflows/.installed"):
        conftest._workflows_python()
