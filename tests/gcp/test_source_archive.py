"""The functions' zip: deterministic, laid out as Cloud Functions expects, importable from
an extracted copy alone, and importing nothing its requirements.txt does not install."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from adapters.gcp import source_archive

ROOT = Path(__file__).resolve().parents[2]
#: Top-level modules each requirement provides (what function code may import).
PROVIDED = {"functions-framework": {"functions_framework", "flask"},
            "google-cloud-pubsub": {"google"}, "google-cloud-firestore": {"google"},
            "google-auth": {"google"}, "requests": {"requests"},
            "opentelemetry-exporter-otlp-proto-http": {"opentelemetry"}}
OURS = {"handlers", "adapters"}


def test_the_archive_is_deterministic_and_laid_out_for_cloud_functions() -> None:
    first, second = source_archive.build(), source_archive.build()
    assert first == second
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names[:2] == ["main.py", "requirements.txt"]
    assert "adapters/gcp/entry.py" in names and "handlers/app.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Nothing a function never imports: the other cloud, the local runtime, the CLIs.
    assert not [n for n in names if n.startswith(source_archive.EXCLUDED)]
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0)
               for info in zipfile.ZipFile(io.BytesIO(first)).infolist())


def test_entry_points_import_from_an_extracted_copy_with_nothing_else(tmp_path: Path) -> None:
    zipfile.ZipFile(io.BytesIO(source_archive.build())).extractall(tmp_path)
    launcher = ROOT / "tests" / "gcp" / "serve_function.py"
    out = subprocess.run([sys.executable, str(launcher), str(tmp_path), "--origins"],
                         cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "SWITCHYARD_PROJECT": "p"}).stdout
    *files, entries = json.loads(out)
    assert all(Path(f).resolve().is_relative_to(tmp_path.resolve()) for f in files), files
    assert entries == [True, True, True]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_function_code_imports_only_the_stdlib_ours_and_its_requirements() -> None:
    requirements = [line.split(">")[0].split("=")[0].split("<")[0].strip()
                    for line in (ROOT / "adapters/gcp/requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    allowed = set(sys.stdlib_module_names) | OURS | {
        module for r in requirements for module in PROVIDED[r]}
    # What the entry points can reach: adapters/gcp (except build-time tools) + handlers.
    build_time = {"source_archive.py", "workflows.py", "topology.py"}
    paths = [p for p in (ROOT / "adapters" / "gcp").glob("*.py") if p.name not in build_time]
    paths += [*(ROOT / "handlers").rglob("*.py"), ROOT / "adapters" / "telemetry.py"]
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) - allowed) for p in paths}
    assert {k: v for k, v in bad.items() if v} == {}
