"""The Lambda archive: deterministic, small, only handlers/ + adapters/ sources (and their
bytecode for the runtime's Python when one is here), and its entry points import from an
extracted copy with nothing of the checkout on the path."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from adapters.aws import topology
from infra.aws.packaging import (
    ROOT,
    RUNTIME_VERSION,
    build_zip,
    bytecode_interpreter,
    source_files,
    write_zip,
)

#: Sources and, when compiled, their bytecode (about three times the sources' zipped size).
MAX_BYTES = 512 * 1024
ENTRIES = [topology.SQS_HANDLER, topology.STEP_HANDLER, topology.API_HANDLER,
           topology.EVENTBRIDGE_HANDLER]


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first = build_zip()
    copy = tmp_path / "copy"
    for relative in source_files():
        target = copy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
        target.chmod(0o600)  # different permissions and mtimes must not matter
    assert build_zip(copy) == first
    written = write_zip(out_dir=tmp_path / "out")
    assert written.path.read_bytes() == first and written.size == len(first)


def test_archive_holds_only_sources_in_order_with_fixed_metadata() -> None:
    archive = zipfile.ZipFile(io.BytesIO(build_zip(bytecode=False)))
    names = archive.namelist()
    assert names == sorted(names)
    assert all(n.endswith(".py") for n in names)
    assert all(n.startswith(("handlers/", "adapters/")) for n in names)
    assert not [n for n in names if n.startswith(("adapters/gcp", "adapters/local", "tests"))
                or "__pycache__" in n]
    assert names == source_files()
    assert "adapters/aws/lambda_entry.py" in names and "handlers/app.py" in names
    for info in archive.infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o100644


def test_archive_is_small() -> None:
    assert len(build_zip()) < MAX_BYTES


def _purelib() -> str:
    return sysconfig.get_paths()["purelib"]


def test_entry_points_import_from_an_extracted_copy(tmp_path: Path) -> None:
    """`-I -S`: no PYTHON* variables, no user site, no site-packages and no .pth files
    (so no editable install). The path is the extracted archive, then the venv's
    site-packages only for boto3, as the Lambda runtime provides it."""
    zipfile.ZipFile(io.BytesIO(build_zip())).extractall(tmp_path / "code")
    script = f"""
import sys
sys.path[:0] = [{str(tmp_path / 'code')!r}, {_purelib()!r}]
import importlib
for dotted in {ENTRIES!r}:
    module, _, name = dotted.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name)), dotted
assert "boto3" not in sys.modules, "clients are built on first use, not at import"
import handlers, adapters
assert handlers.__file__.startswith({str(tmp_path)!r}), handlers.__file__
assert adapters.__file__.startswith({str(tmp_path)!r}), adapters.__file__
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"pulumi", "moto", "infra",
                 "pulumi_aws", "google", "waitress", "tests"}})
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_lambda_code_imports_only_the_standard_library_and_boto3() -> None:
    import ast

    allowed_third_party = {"boto3", "botocore"}
    # Imported only when OTEL_TRACES_EXPORTER asks, from the layer that provides it (README
    # "Tracing"); tests/aws/test_tracing_off.py shows it is not imported otherwise.
    tracing_only = {"adapters/telemetry.py": {"opentelemetry"}}
    stdlib = set(sys.stdlib_module_names)
    for relative in source_files():
        tree = ast.parse((ROOT / relative).read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and \
                node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in allowed_third_party or top in (
                    "handlers", "adapters") or top in tracing_only.get(relative, ()), \
                    f"{relative} imports {name}"

def test_bytecode_is_one_unchecked_hash_pyc_per_source_for_the_compiler() -> None:
    """This interpreter stands in for the runtime's: one pyc per source, in __pycache__,
    tagged with the compiler's version, flagged unchecked-hash (PEP 552: bit 0 set, bit 1
    clear), so its loader uses it without the source mtimes an extraction leaves."""
    archive = zipfile.ZipFile(io.BytesIO(build_zip(bytecode=sys.executable)))
    names = set(archive.namelist())
    tag = sys.implementation.cache_tag
    for source in source_files():
        head, _, name = source.rpartition("/")
        pyc = f"{head}/__pycache__/{name[:-3]}.{tag}.pyc"
        assert pyc in names, pyc
        header = archive.read(pyc)[:8]
        assert header[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc
    assert len(names) == 2 * len(source_files())


def test_the_compiler_bytecode_is_what_imports_load(tmp_path: Path) -> None:
    """Extracted, the entries import with no source compiled at all: every module of the
    archive comes from its pyc."""
    zipfile.ZipFile(io.BytesIO(build_zip(bytecode=sys.executable))).extractall(tmp_path / "c")
    code = str(tmp_path / "c")
    script = f"""
import sys
sys.dont_write_bytecode = True
sys.path[:0] = [{code!r}, {_purelib()!r}]
from importlib import _bootstrap_external as ext
compiled = []
original = ext.SourceLoader.source_to_code
def spy(self, data, path, *args, **kwargs):
    if str(path).startswith({code!r}):
        compiled.append(path)
    return original(self, data, path, *args, **kwargs)
ext.SourceLoader.source_to_code = spy
import importlib
for dotted in {ENTRIES!r}:
    importlib.import_module(dotted.rpartition(".")[0])
ours = [m for m in sys.modules.values()
        if str(getattr(m, "__file__", "")).startswith({code!r})]
assert ours and not compiled, compiled
print(len(ours))
"""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10


def test_no_bytecode_of_another_version_is_shipped() -> None:
    """Without an interpreter of the runtime's version the archive holds sources only;
    with one, its pycs carry that version's tag and nothing else."""
    names = zipfile.ZipFile(io.BytesIO(build_zip())).namelist()
    tags = {n.rsplit(".", 2)[-2] for n in names if n.endswith(".pyc")}
    if bytecode_interpreter() is None:
        assert not tags
    else:
        assert tags == {"cpython-{}{}".format(*RUNTIME_VERSION)}


def test_a_missing_compiler_is_said_not_guessed(tmp_path: Path) -> None:
    written = write_zip(out_dir=tmp_path, bytecode=False)
    assert written.bytecode.startswith("none:") and "SWITCHYARD_LAMBDA_PYTHON" in \
        written.bytecode
    names = zipfile.ZipFile(written.path).namelist()
    assert not [n for n in names if n.endswith(".pyc")]


def _copy_sources(to: Path) -> Path:
    for relative in source_files():
        target = to / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    return to


def test_unchanged_sources_reuse_the_archive_and_any_change_rebuilds_it(
        tmp_path: Path, monkeypatch) -> None:
    from infra.aws import packaging

    root, out = _copy_sources(tmp_path / "src"), tmp_path / "out"
    built = []
    real_build = packaging._build
    monkeypatch.setattr(packaging, "_build",
                        lambda *a: built.append(a) or real_build(*a))
    first = write_zip(root, out, bytecode=False)
    assert write_zip(root, out, bytecode=False) == first and len(built) == 1

    # A source edited: a new archive, whose bytes carry the edit.
    handler = root / "handlers" / "notifications.py"
    handler.write_text(handler.read_text() + "\n# edited\n")
    second = write_zip(root, out, bytecode=False)
    assert len(built) == 2 and second.sha256_base64 != first.sha256_base64
    assert zipfile.ZipFile(second.path).read("handlers/notifications.py").endswith(
        b"# edited\n")

    # The archive a manifest names, damaged on disk: rebuilt, never handed on as it is.
    second.path.write_bytes(b"not a zip")
    third = write_zip(root, out, bytecode=False)
    assert len(built) == 3 and third == second and zipfile.ZipFile(third.path).testzip() is None
