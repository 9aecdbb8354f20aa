"""The functions' source archive: a deterministic zip the stack uploads for Cloud Build.

Layout (what Cloud Functions expects): `main.py` and `requirements.txt` at the root, then
the `handlers/` and `adapters/` packages. Same sources -> same bytes (fixed timestamps,
permissions and order, no bytecode), so the object name can carry the content hash and
functions are redeployed exactly when the code changed.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = ("handlers", "adapters")
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_MODE: Final = 0o644 << 16
_SKIP_PARTS: Final = frozenset({"__pycache__"})
#: What a function never imports: the other cloud, the local runtime and its fakes (tests/gcp
#: runs the functions from the extracted archive, which proves it). The command line is a
#: package of its own (`cli/`), outside PACKAGES, so it is never shipped either.
EXCLUDED: Final = ("adapters/aws/", "adapters/local/", "adapters/memory/")


def _entries(root: Path) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = [
        ("main.py", (root / "adapters" / "gcp" / "zip_main.py").read_bytes()),
        ("requirements.txt", (root / "adapters" / "gcp" / "requirements.txt").read_bytes()),
    ]
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if (_SKIP_PARTS.isdisjoint(relative.parts)
                    and not relative.as_posix().startswith(EXCLUDED)):
                files.append((relative.as_posix(), path.read_bytes()))
    return files


def build(root: Path = ROOT) -> bytes:
    """The archive's bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _entries(root):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = _MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def write(directory: Path, root: Path = ROOT) -> tuple[Path, str]:
    """Write the archive as `functions-<hash>.zip` under `directory`; (path, sha256)."""
    data = build(root)
    digest = hashlib.sha256(data).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"functions-{digest[:16]}.zip"
    if not path.exists():
        path.write_bytes(data)
    return path, digest
