"""Dependencies point inward: handlers/ imports nothing cloud-specific."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("adapters", "infra", "boto3", "botocore", "google", "pulumi", "pulumi_aws",
             "pulumi_gcp", "cloudevents", "functions_framework", "waitress", "moto")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "handlers").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_handler_module_imports_nothing_cloud_specific(path: Path) -> None:
    bad = sorted(name for name in _imports(path)
                 if name.split(".")[0] in FORBIDDEN)
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def test_importing_the_app_loads_no_cloud_module() -> None:
    # Some packages preload namespace modules (e.g. `google`) from .pth files at start-up:
    # compare against what the interpreter had before our imports.
    code = ("import sys, json; before = set(sys.modules); "
            "import handlers.app, handlers.core.http_binding, "
            "handlers.core.eventbridge_binding, handlers.core.saga_runner; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import boto3\nfrom google.cloud import pubsub_v1\n")
    assert _imports(sample) == {"boto3", "google.cloud"}
