"""The Lambda code archive: `handlers/` + `adapters/` (minus other clouds), byte-identical
for identical sources and the same bytecode compiler.

Pulumi decides whether to update a function by the archive's hash, so the zip must not
depend on when or where it was built: entries are sorted, every timestamp is fixed, and
permissions are normalised. No tests, caches or local databases go in. boto3 is not
packaged (the Lambda runtime ships it), which keeps the archive small.

Bytecode: Lambda's code directory is read-only, so a function whose archive holds only
`.py` files compiles every module it imports on each cold start (most of the gap between
importing the entry and importing boto3 alone). When the packaging machine has an
interpreter of the Lambda runtime's Python version (`LAMBDA_RUNTIME`), each source is
also shipped as `__pycache__/<name>.cpython-3XY.pyc`, compiled by that interpreter as an
unchecked hash-based pyc (PEP 552): no timestamp in it, and the runtime loads it without
looking at the source's mtime (the extracted files' mtimes are not ours to choose). A pyc
of another minor version would be ignored, so none is made without the right
interpreter: `bytecode_interpreter()` says where it looks, and the archive's `bytecode`
field (shown by `pulumi up` as the `lambdaBytecode` output) says what was shipped.
"""

from __future__ import annotations

import base64
import functools
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from adapters.aws.topology import LAMBDA_RUNTIME

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = ("handlers", "adapters")
#: Never shipped to Lambda: the other cloud's adapters and the local runtime need libraries
#: Lambda does not have and are never imported by the entries. The command line (with the
#: operator commands) is a package of its own (`cli/`), outside PACKAGES, so it never is.
EXCLUDED: Final = ("adapters/gcp", "adapters/local", "adapters/memory")
#: 1980-01-01, the earliest time a zip entry can carry.
FIXED_TIME: Final = (1980, 1, 1, 0, 0, 0)
FILE_MODE: Final = 0o100644 << 16
BUILD_DIR: Final = ROOT / "build" / "lambda"
#: An interpreter to compile the archive's bytecode with (it must be the Lambda runtime's
#: minor version); otherwise `python3.X` on PATH, then pyenv's installs, are tried.
ENV_INTERPRETER: Final = "SWITCHYARD_LAMBDA_PYTHON"
#: "python3.12" -> (3, 12)
RUNTIME_VERSION: Final = tuple(int(p) for p in LAMBDA_RUNTIME.removeprefix("python").split("."))
#: Run by the compiling interpreter: {relative path: source path} on stdin ->
#: {"tag": cache tag, "version": [major, minor], "pycs": {relative pyc path: hex bytes}}.
_COMPILE: Final = """
import importlib.util, json, os, py_compile, sys, tempfile
files = json.load(sys.stdin)
out = {"tag": sys.implementation.cache_tag, "version": list(sys.version_info[:2]), "pycs": {}}
with tempfile.TemporaryDirectory() as tmp:
    for relative, source in sorted(files.items()):
        target = os.path.join(tmp, "out.pyc")
        py_compile.compile(source, cfile=target, dfile=relative, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        head, name = os.path.split(relative)
        pyc = os.path.join(head, "__pycache__",
                           name[:-3] + "." + sys.implementation.cache_tag + ".pyc")
        with open(target, "rb") as f:
            out["pycs"][pyc.replace(os.sep, "/")] = f.read().hex()
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True, slots=True)
class CodeArchive:
    path: Path
    sha256_base64: str  # what Lambda's `source_code_hash` compares
    size: int
    bytecode: str  # what the archive carries besides sources, in words


@functools.cache
def _version_of(interpreter: str) -> tuple[int, int] | None:
    if os.path.realpath(interpreter) == os.path.realpath(sys.executable):
        return sys.version_info[0], sys.version_info[1]
    try:
        done = subprocess.run([interpreter, "-c", "import sys; print(*sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 2:
        return None
    return int(parts[0]), int(parts[1])


@functools.cache
def bytecode_interpreter(version: tuple[int, ...] = RUNTIME_VERSION) -> str | None:
    """An interpreter of Python `version` on this machine, or None: $SWITCHYARD_LAMBDA_PYTHON,
    this interpreter, `python3.X` on PATH, pyenv's installs (each asked its version)."""
    name = "python{}.{}".format(*version)
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    on_path = shutil.which(name)
    # pyenv's own installs before PATH: its shims answer slowly, and only for them.
    candidates = [os.environ.get(ENV_INTERPRETER), sys.executable,
                  *sorted(glob.glob(os.path.join(pyenv, "versions", "{}.{}.*".format(*version),
                                                 "bin", name)), reverse=True),
                  None if on_path and "/shims/" in on_path else on_path]
    for candidate in candidates:
        if candidate and _version_of(candidate) == tuple(version):
            return candidate
    return None


def compile_bytecode(interpreter: str, root: Path, files: Iterable[str],
                     cache_dir: Path | None = BUILD_DIR) -> dict[str, bytes]:
    """{archive path of the pyc: its bytes} for each source, compiled by `interpreter` as
    unchecked hash-based pycs (deterministic: no timestamps, no paths of this machine).
    Kept in `cache_dir` under a hash of the interpreter and every source, so a program
    run on unchanged sources starts no compiler."""
    request = {relative: str(root / relative) for relative in files}
    key = hashlib.sha256(os.path.realpath(interpreter).encode())
    for relative in sorted(request):
        key.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    cached = cache_dir / f"bytecode-{key.hexdigest()[:24]}.json" if cache_dir else None
    if cached is not None and cached.exists():
        try:
            return {k: bytes.fromhex(v) for k, v in json.loads(cached.read_text()).items()}
        except (ValueError, OSError):
            pass  # unreadable: compile again
    pycs = _compile(interpreter, request)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cached.parent, delete=False,
                                         suffix=".tmp") as tmp:
            json.dump({k: v.hex() for k, v in pycs.items()}, tmp)
        os.replace(tmp.name, cached)
    return pycs


def _compile(interpreter: str, request: Mapping[str, str]) -> dict[str, bytes]:
    done = subprocess.run([interpreter, "-I", "-c", _COMPILE], input=json.dumps(request),
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compiling the Lambda bytecode with {interpreter} failed:\n"
                           f"{done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    return {path: bytes.fromhex(data) for path, data in answer["pycs"].items()}


def _bytecode(root: Path, files: list[str], interpreter: str | None | bool
              ) -> tuple[Mapping[str, bytes], str]:
    """(pycs, what was shipped) for `interpreter`: True finds one, False or None ships none."""
    found = bytecode_interpreter() if interpreter is True else interpreter or None
    if not found:
        return {}, ("none: no Python {}.{} found to compile with (set {}); Lambda compiles "
                    "the sources at each cold start".format(*RUNTIME_VERSION, ENV_INTERPRETER))
    version = _version_of(found)
    return compile_bytecode(found, root, files), "cpython-{}{} pycs (unchecked hash)".format(
        *(version or ("?", "?")))


def source_files(root: Path = ROOT) -> list[str]:
    """Repository-relative paths of every file the archive holds, sorted."""
    found: list[str] = []
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            relative = path.relative_to(root).as_posix()
            if "__pycache__" in relative or relative.startswith(EXCLUDED):
                continue
            found.append(relative)
    return sorted(found)


def build_zip(root: Path = ROOT, files: Iterable[str] | None = None,
              bytecode: str | None | bool = True) -> bytes:
    """The archive's bytes: a pure function of the files' paths and contents (and of the
    bytecode compiler's version). `bytecode`: True compiles with `bytecode_interpreter()`
    when there is one, a path compiles with that interpreter, False/None ships sources only."""
    return _build(root, files, bytecode)[0]


def _build(root: Path, files: Iterable[str] | None,
           bytecode: str | None | bool) -> tuple[bytes, str]:
    sources = sorted(files if files is not None else source_files(root))
    pycs, shipped = _bytecode(root, sources, bytecode)
    entries = {relative: (root / relative).read_bytes() for relative in sources}
    entries.update(pycs)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=9) as archive:
        for relative in sorted(entries):
            info = zipfile.ZipInfo(relative, date_time=FIXED_TIME)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode above is honoured everywhere
            archive.writestr(info, entries[relative], compresslevel=9)
    return buffer.getvalue(), shipped


def write_zip(root: Path = ROOT, out_dir: Path = BUILD_DIR,
              bytecode: str | None | bool = True) -> CodeArchive:
    """Build the archive into `out_dir`, named by its hash (so concurrent builds of the
    same sources agree, and a stale file is never reused for different sources).

    A program run on unchanged sources reuses the archive it built last time (a manifest
    keyed by the compiler and every source's path and bytes, checked against the zip's
    own hash), instead of compressing it again on every `pulumi preview` and `up`."""
    sources = source_files(root)
    found = bytecode_interpreter() if bytecode is True else bytecode or None
    key = hashlib.sha256(os.path.realpath(found).encode() if found else b"-")
    for relative in sources:
        key.update(b"\0" + relative.encode() + b"\0" + (root / relative).read_bytes())
    manifest = out_dir / f"archive-{key.hexdigest()[:24]}.json"
    reused = _reuse(manifest, out_dir)
    if reused is not None:
        return reused
    data, shipped = _build(root, sources, found)
    digest = hashlib.sha256(data)
    path = out_dir / f"switchyard-{digest.hexdigest()[:16]}.zip"
    if not path.exists() or path.read_bytes() != data:
        _write_atomically(path, data)
    archive = CodeArchive(path, base64.b64encode(digest.digest()).decode(), len(data), shipped)
    _write_atomically(manifest, json.dumps({"zip": path.name, "sha256": archive.sha256_base64,
                                            "bytecode": shipped}).encode())
    return archive


def _reuse(manifest: Path, out_dir: Path) -> CodeArchive | None:
    """The archive `manifest` names, if it is there with the bytes it was built with."""
    try:
        known = json.loads(manifest.read_text())
        path = out_dir / known["zip"]
        data = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    if digest != known.get("sha256") or not isinstance(known.get("bytecode"), str):
        return None
    return CodeArchive(path, digest, len(data), known["bytecode"])


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
