"""The Lambda code archive: `handlers/` + `adapters/` (minus other clouds), byte-identical
for identical sources.

Pulumi decides whether to update a function by the archive's hash, so the zip must not
depend on when or where it was built: entries are sorted, every timestamp is fixed, and
permissions are normalised. Only `.py` files go in: no tests, caches or local databases.
boto3 is not packaged (the Lambda runtime ships it), which keeps the archive small.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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


@dataclass(frozen=True, slots=True)
class CodeArchive:
    path: Path
    sha256_base64: str  # what Lambda's `source_code_hash` compares
    size: int


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


def build_zip(root: Path = ROOT, files: Iterable[str] | None = None) -> bytes:
    """The archive's bytes: a pure function of the files' paths and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=9) as archive:
        for relative in sorted(files if files is not None else source_files(root)):
            info = zipfile.ZipInfo(relative, date_time=FIXED_TIME)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode above is honoured everywhere
            archive.writestr(info, (root / relative).read_bytes(), compresslevel=9)
    return buffer.getvalue()


def write_zip(root: Path = ROOT, out_dir: Path = BUILD_DIR) -> CodeArchive:
    """Build the archive into `out_dir`, named by its hash (so concurrent builds of the
    same sources agree, and a stale file is never reused for different sources)."""
    data = build_zip(root)
    digest = hashlib.sha256(data)
    path = out_dir / f"switchyard-{digest.hexdigest()[:16]}.zip"
    if not path.exists() or path.read_bytes() != data:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, delete=False, suffix=".tmp") as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)
    return CodeArchive(path, base64.b64encode(digest.digest()).decode(), len(data))
