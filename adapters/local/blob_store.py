"""The local blob store: each bucket is a directory of files under the runtime's folder.

Writes go to a temporary file and are renamed into place, so a reader never sees half
an object and a crash leaves either the old object or the new one. `expire` is the local
lifecycle rule: the runtime's timer deletes objects older than their bucket allows.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from handlers.core.errors import BlobMissing, ValidationError


def check_key(key: str) -> PurePosixPath:
    """A key is a relative path of plain names: no `..`, no absolute path, no empties."""
    path = PurePosixPath(key)
    problems = []
    if not key or path.is_absolute():
        problems.append("must be a non-empty relative path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        problems.append("must not contain '.', '..' or empty segments")
    if problems:
        raise ValidationError(f"object key {key!r} is invalid", problems)
    return path


class FileBlobStore:
    def __init__(self, root: str | Path, overrides: Mapping[str, str | Path] | None = None
                 ) -> None:
        self.root = Path(root)
        #: Buckets kept somewhere else than root/<bucket> (the watched uploads folder).
        self._dirs = {name: Path(d) for name, d in (overrides or {}).items()}

    def directory(self, bucket: str) -> Path:
        return self._dirs.get(bucket, self.root / bucket)

    def _path(self, bucket: str, key: str) -> Path:
        return self.directory(bucket).joinpath(*check_key(key).parts)

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return self._path(bucket, key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise BlobMissing(f"object {bucket}/{key} does not exist") from None

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "") -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keys(self, bucket: str) -> list[str]:
        base = self.directory(bucket)
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                      if p.is_file() and not _hidden(p.relative_to(base)))

    def expire(self, bucket: str, max_age_s: float, now: float | None = None) -> list[str]:
        """Delete objects written more than `max_age_s` ago; the keys deleted."""
        now = time.time() if now is None else now
        gone = []
        for key in self.keys(bucket):
            path = self._path(bucket, key)
            try:
                if now - path.stat().st_mtime > max_age_s:
                    path.unlink()
                    gone.append(key)
            except FileNotFoundError:
                continue
        return gone


def _hidden(relative: Path) -> bool:
    """Dot-files and `.part`/`.tmp` files are uploads in progress, not objects."""
    return any(part.startswith(".") for part in relative.parts) or \
        relative.suffix in (".part", ".tmp")
