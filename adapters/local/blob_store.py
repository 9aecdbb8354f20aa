"""The local blob store: each bucket is a directory of files under the runtime's folder.

Writes go to a temporary file and are renamed into place, so a reader never sees half
an object and a crash leaves either the old object or the new one. `expire` is the local
lifecycle rule: the runtime's timer deletes objects older than their bucket allows.

A bucket fed by a watched folder (`watch`) keeps its objects apart from that folder:
people write into the folder however they like (in place, through links), while the
objects are copies the uploads watcher made of settled regular files, so a consumer reads
the bytes of a settled version and never a file that is still being written. As on S3
and Cloud Storage without versioning, a name holds one object: a consumer reads it as it
is when the consumer runs, so a file replaced before its first version was processed is
processed as its newer version (whose own event is then a no-op). Reads never follow a
link out of the bucket.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Mapping
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
        #: Buckets whose folder is a watched inbox: their objects live in `_objects`.
        self._watched: set[str] = set()

    def directory(self, bucket: str) -> Path:
        """The bucket's folder: where people drop files when the bucket is watched."""
        return self._dirs.get(bucket, self.root / bucket)

    def watch(self, bucket: str) -> None:
        """Make the bucket's folder an inbox: objects are then only what `write` and
        `write_stream` put (the watcher's copies), kept under `root/.uploaded/<bucket>`."""
        self._watched.add(bucket)

    def _objects(self, bucket: str) -> Path:
        if bucket in self._watched:
            return self.root / ".uploaded" / bucket
        return self.directory(bucket)

    def _path(self, bucket: str, key: str) -> Path:
        return self._objects(bucket).joinpath(*check_key(key).parts)

    def read(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        base = self._objects(bucket).resolve()
        # A link inside the bucket could point anywhere the runtime can read: refuse to
        # follow it (objects are written here by rename, never as links).
        if path.is_symlink() or not path.resolve().is_relative_to(base):
            raise BlobMissing(f"object {bucket}/{key} does not exist (a link, not an object)")
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobMissing(f"object {bucket}/{key} does not exist") from None

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "") -> None:
        self.write_stream(bucket, key, (data,))

    def write_stream(self, bucket: str, key: str, chunks: Iterable[bytes]) -> None:
        """Put an object from chunks, all or nothing: if `chunks` raises, the object is
        left as it was (the watcher raises when the file changed while it was copied)."""
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keys(self, bucket: str) -> list[str]:
        base = self._objects(bucket)
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.is_symlink()
                      and not _hidden(p.relative_to(base)))

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
