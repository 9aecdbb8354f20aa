"""The local runtime's event sources: the watched uploads folder, schedules, expiry.

One `poll` does what the clouds' managed services do: a finished upload in a bucket that
declares `events` becomes a `storage.object.finalized` event (S3 -> EventBridge, GCS ->
Pub/Sub on the clouds); a due schedule publishes its event (EventBridge Scheduler,
Cloud Scheduler); objects older than their bucket's `expire_days` are deleted (lifecycle
rules). What was already announced is recorded in the database, so a restart neither
re-announces old uploads nor fires a slot twice; and every id is derived (from the
object's content hash, from the schedule slot), so even a crash between "published" and
"recorded" only produces a duplicate that consumers drop.

The uploads folder is written by people and programs the runtime does not control, so
the watcher trusts nothing in it:

- Only regular files directly in the folder are taken. Links are never followed (a link
  to `/proc/self/environ` would otherwise be read and its content dead-lettered for all
  to see), and FIFOs, sockets and devices are never read: each is refused by name. Every
  file is opened without following links and without blocking, and checked again on the
  open descriptor, so swapping a file for a link or a FIFO between look and open fails
  safe. Folders are ignored; dot-files and `*.part`, `*.tmp`, `*~` are uploads in
  progress, ignored until renamed.
- Names are read as bytes: a name that is not UTF-8 is refused (shown with `\\xNN`
  escapes) and the files after it are still taken.
- A file is taken once it has settled: the same size, modification time and inode on two
  scans at least `settle_seconds` apart. A file written in place (`cp`, `scp`) changes
  between scans and is announced once, when it is whole. A writer that stalls for longer
  than the settle time can still be taken early (its rest is then a new version with new
  ids); writing `name.part` and renaming it is the only sure way, as for any bucket.
- The size is checked on the open descriptor before anything is read; a file over the
  limit is refused and never read. Otherwise it is copied into the bucket in chunks while
  being hashed (memory stays bounded), and if it changed during the copy the copy is
  dropped and the file taken on a later scan. The event announces the hash of exactly the
  bytes the bucket then holds, and its id derives from that hash.
- A refused file becomes a storage event carrying `problem` (and no object): the bucket's
  consumers dead-letter it with that reason, so `dlq list` says why a file was not taken.
  Fix it (rename, replace the link with the file, split it) and it is taken as new.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Final, NamedTuple

from adapters.local.blob_store import FileBlobStore
from adapters.local.database import Database
from handlers.core.app import App
from handlers.core.events import Event
from handlers.core.schedule import fired_event, next_fire, slot_iso
from handlers.core.storage import STORAGE_OBJECT_FINALIZED
from handlers.files import MAX_FILE_BYTES

log = logging.getLogger("switchyard.local.sources")

_NAMESPACE: Final = uuid.UUID("9d2c4b1e-7a3f-4e58-b6d0-1f8e2a7c5b39")
_DAY_S: Final = 24 * 60 * 60
_EXPIRY_EVERY_S: Final = 60.0
#: Read and hash uploads this much at a time: memory stays bounded whatever the file.
_CHUNK: Final = 1024 * 1024
#: Default settle time: with the runtime's 1 s scans, a file must be unchanged for about
#: two scans, which a copy in progress never is.
SETTLE_SECONDS: Final = 1.0
#: Names that are uploads in progress (editors' backups too): taken once renamed.
_IN_PROGRESS_SUFFIXES: Final = (b".part", b".tmp", b"~")
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS: Final = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO",
                 stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                 stat.S_IFBLK: "a block device"}

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS uploads_seen (
    bucket TEXT NOT NULL, name TEXT NOT NULL, etag TEXT NOT NULL, event_id TEXT NOT NULL,
    seen_at REAL NOT NULL, size INTEGER, mtime_ns INTEGER, PRIMARY KEY (bucket, name, etag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule_runs (
    name TEXT PRIMARY KEY, last_slot REAL NOT NULL, fired INTEGER NOT NULL DEFAULT 0
);
"""
#: Columns added to `uploads_seen` after its first release (added to older databases).
_ADDED_COLUMNS: Final = (("size", "INTEGER"), ("mtime_ns", "INTEGER"))


def _content_type(name: str) -> str:
    return "text/csv" if name.endswith(".csv") else "application/octet-stream"


def finalized_event(bucket: str, name: str, size: int, sha256: str,
                    content_type: str = "text/csv") -> Event:
    """The normalised event for an object whose content has this SHA-256 (id: bucket,
    name and content, so the same bytes under the same name always get the same id)."""
    etag = sha256[:32]
    return Event(
        id=str(uuid.uuid5(_NAMESPACE, f"{bucket}/{name}#{etag}")), source="storage",
        type=STORAGE_OBJECT_FINALIZED, subject=name, datacontenttype="application/json",
        time=_now_iso(),
        data={"bucket": bucket, "name": name, "size": size, "etag": etag,
              "content_type": content_type})


def refused_event(bucket: str, name: str, size: int, problem: str, version: str) -> Event:
    """The event for a file the bucket refused to store: no object, a `problem` saying
    why. `version` identifies what was refused (the file's identity, not its content,
    which is never read), so the same refusal has the same id."""
    return Event(
        id=str(uuid.uuid5(_NAMESPACE, f"{bucket}/{name}#{version}")), source="storage",
        type=STORAGE_OBJECT_FINALIZED, subject=name, datacontenttype="application/json",
        time=_now_iso(),
        data={"bucket": bucket, "name": name, "size": size, "problem": problem,
              "content_type": _content_type(name)})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Version(NamedTuple):
    """What tells one version of a file from the next without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    kind: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Version:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IFMT(st.st_mode))

    def token(self) -> str:
        return f"v:{self.dev}:{self.ino}:{self.size}:{self.mtime_ns}:{self.kind}"


class _Changed(Exception):
    """The file changed while it was being copied: drop the copy, look again later."""


def _in_progress(raw: bytes) -> bool:
    return raw.startswith(b".") or raw.endswith(_IN_PROGRESS_SUFFIXES)


def shown(raw: bytes) -> str:
    """A file name for messages and events: UTF-8 as it is, other bytes as `\\xNN`."""
    return raw.decode("utf-8", "backslashreplace")


class LocalSources:
    def __init__(self, app: App, db: Database, blobs: FileBlobStore,
                 ingest: Callable[[list[Event]], object], schedule_every: float | None = None
                 ) -> None:
        self.app = app
        self.db = db
        self.blobs = blobs
        self._ingest = ingest
        #: Fire every schedule every this many seconds instead of on its cron (demos, tests).
        self.schedule_every = schedule_every
        #: How long a file must stay unchanged (and over two scans at least) to be taken.
        self.settle_seconds = SETTLE_SECONDS
        #: Uploads over this are refused unread: the file processor's own limit.
        self.max_upload_bytes = MAX_FILE_BYTES
        #: (bucket, raw name) -> the version seen and when it was first seen unchanged.
        self._settling: dict[tuple[str, bytes], tuple[_Version, float]] = {}
        #: (bucket, raw name) -> the version already taken (announced, refused or seen).
        self._taken: dict[tuple[str, bytes], _Version] = {}
        #: Files that could not be opened (permissions): warned once, tried every scan.
        self._warned: set[tuple[str, bytes, _Version]] = set()
        self._last_expiry = 0.0
        for bucket in app.buckets:
            if bucket.events:
                blobs.watch(bucket.name)
        with db.write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(uploads_seen)")}
            for column, sql_type in _ADDED_COLUMNS:
                if column not in have:
                    conn.execute(f"ALTER TABLE uploads_seen ADD COLUMN {column} {sql_type}")

    def poll(self, now: float | None = None) -> int:
        """Announce new uploads, fire due schedules, expire old objects; events published."""
        now = time.time() if now is None else now
        published = self.scan_uploads(now) + self.fire_due(now)
        if now - self._last_expiry >= _EXPIRY_EVERY_S:
            self._last_expiry = now
            self.expire(now)
        return published

    # uploads ----------------------------------------------------------------------------
    def scan_uploads(self, now: float | None = None) -> int:
        """Look at every watched folder once; the number of events published. A file is
        announced on the first scan that finds it settled (see the module docstring)."""
        now = time.time() if now is None else now
        return sum(self._scan(bucket.name, now) for bucket in self.app.buckets
                   if bucket.events)

    def _scan(self, bucket: str, now: float) -> int:
        folder = self.blobs.directory(bucket)
        try:
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        published = 0
        present: set[bytes] = set()
        try:
            # Bytes names: a name that is not UTF-8 is one refused file, not an error
            # that stops the scan for every file after it.
            with os.scandir(os.fsencode(folder)) as entries:
                for entry in entries:
                    raw = entry.name
                    if _in_progress(raw):
                        continue
                    try:
                        version = _Version.of(entry.stat(follow_symlinks=False))
                    except FileNotFoundError:
                        continue
                    present.add(raw)
                    if version.kind == stat.S_IFDIR \
                            or self._taken.get((bucket, raw)) == version:
                        continue  # folders are not objects; this version is already taken
                    if not self._settled(bucket, raw, version, now):
                        continue
                    try:
                        published += self._take(bucket, raw, version, dir_fd)
                    except OSError as error:  # one unreadable file must not stop the rest
                        self._settling.pop((bucket, raw), None)
                        log.warning("upload could not be read; trying again later",
                                    extra={"bucket": bucket, "object": shown(raw),
                                           "error": str(error)})
        finally:
            os.close(dir_fd)
        for state in (self._settling, self._taken):
            for key in [k for k in state if k[0] == bucket and k[1] not in present]:
                del state[key]  # gone from the folder: forget it (memory stays bounded)
        self._warned = {w for w in self._warned if w[0] != bucket or w[1] in present}
        return published

    def _settled(self, bucket: str, raw: bytes, version: _Version, now: float) -> bool:
        seen = self._settling.get((bucket, raw))
        if seen is None or seen[0] != version:
            self._settling[(bucket, raw)] = (version, now)  # new, or changed since last scan
            return False
        return now - seen[1] >= self.settle_seconds

    def _take(self, bucket: str, raw: bytes, version: _Version, dir_fd: int) -> int:
        """Announce (or refuse) one settled file; the number of events published."""
        key = (bucket, raw)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(bucket, raw, version,
                                "its name is not UTF-8 (the bytes that are not are shown as "
                                "\\xNN); rename it")
        if version.kind != stat.S_IFREG:
            what = _KINDS.get(version.kind, "of an unknown kind")
            return self._refuse(bucket, raw, version,
                                f"it is {what}, not a regular file; only regular files are "
                                "taken and links are never followed")
        try:
            # One name relative to the folder's descriptor, links refused by the kernel
            # (O_NOFOLLOW): what is opened is in the folder, wherever a link would point.
            # O_NONBLOCK: a FIFO swapped in since the scan cannot block the watcher.
            fd = os.open(raw, _OPEN_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            self._settling.pop(key, None)
            return 0
        except OSError as error:
            if error.errno == errno.ELOOP:  # swapped for a link since the scan looked
                self._settling.pop(key, None)
                return 0
            if (bucket, raw, version) not in self._warned:
                self._warned.add((bucket, raw, version))
                log.warning("upload cannot be opened; trying again on later scans",
                            extra={"bucket": bucket, "object": name, "error": str(error)})
            return 0
        try:
            opened = os.fstat(fd)
            # Checked on the descriptor, which is what will be read: a regular file, and
            # the very version that settled (not one swapped in since the scan).
            if not stat.S_ISREG(opened.st_mode) or _Version.of(opened) != version:
                self._settling.pop(key, None)
                return 0
            if opened.st_size > self.max_upload_bytes:
                return self._refuse(bucket, raw, version,
                                    f"it is {opened.st_size} bytes, over the "
                                    f"{self.max_upload_bytes}-byte limit for uploads; it was "
                                    "not read (split it)")
            digest = hashlib.sha256()
            try:
                self.blobs.write_stream(bucket, name,
                                        self._chunks(fd, raw, version, dir_fd, digest))
            except _Changed:
                log.info("upload changed while it was copied; taking it on a later scan",
                         extra={"bucket": bucket, "object": name})
                self._settling.pop(key, None)
                return 0
        finally:
            os.close(fd)
        event = finalized_event(bucket, name, version.size, digest.hexdigest(),
                                _content_type(name))
        return self._announce(bucket, raw, name, event, event.data["etag"], version)

    @staticmethod
    def _chunks(fd: int, raw: bytes, version: _Version, dir_fd: int,
                digest: hashlib._Hash) -> Iterator[bytes]:
        """The file's bytes, hashed as they go; `_Changed` if it was written meanwhile
        (more or fewer bytes than its size said, a new mtime, or another file renamed
        over its name)."""
        total = 0
        while chunk := os.read(fd, _CHUNK):
            total += len(chunk)
            if total > version.size:
                raise _Changed
            digest.update(chunk)
            yield chunk
        if total != version.size or _Version.of(os.fstat(fd)) != version:
            raise _Changed
        try:
            if _Version.of(os.stat(raw, dir_fd=dir_fd, follow_symlinks=False)) != version:
                raise _Changed
        except FileNotFoundError:
            raise _Changed from None

    def _refuse(self, bucket: str, raw: bytes, version: _Version, problem: str) -> int:
        name = shown(raw)
        token = version.token()
        # A link's own size is the length of its target path: not the size of any file.
        size = version.size if version.kind == stat.S_IFREG else 0
        event = refused_event(bucket, name, size, problem, token)
        return self._announce(bucket, raw, name, event, f"refused:{token}", version)

    def _announce(self, bucket: str, raw: bytes, name: str, event: Event, etag: str,
                  version: _Version) -> int:
        """Publish the event unless this (name, content) was announced before (by this
        process or an earlier one), then remember the version as taken."""
        self._taken[(bucket, raw)] = version
        self._settling.pop((bucket, raw), None)
        seen = self.db.read("SELECT 1 FROM uploads_seen WHERE bucket = ? AND name = ?"
                            " AND etag = ?", (bucket, name, etag))
        if seen:
            return 0
        self._ingest([event])
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO uploads_seen (bucket, name, etag, event_id, "
                         "seen_at, size, mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (bucket, name, etag, event.id, time.time(), event.data["size"],
                          version.mtime_ns))
        if "problem" in event.data:
            log.warning("upload refused", extra={"bucket": bucket, "object": name,
                                                 "problem": event.data["problem"],
                                                 "event_id": event.id})
        else:
            log.info("upload", extra={"bucket": bucket, "object": name, "event_id": event.id})
        return 1

    # schedules --------------------------------------------------------------------------
    def _due_slot(self, cron: str, last: float, now: float) -> float | None:
        if self.schedule_every:
            slot = math.floor(now / self.schedule_every) * self.schedule_every
            return slot if slot > last else None
        due = None
        at = next_fire(cron, datetime.fromtimestamp(last, UTC))
        while at.timestamp() <= now:  # missed several (runtime was down): fire the latest
            due = at.timestamp()
            at = next_fire(cron, at)
        return due

    def fire_due(self, now: float) -> int:
        fired = 0
        for schedule in self.app.schedules:
            row = self.db.read("SELECT last_slot FROM schedule_runs WHERE name = ?",
                               (schedule.name,))
            if not row:
                # First start: schedules begin from now, nothing is back-filled.
                start = math.floor(now / self.schedule_every) * self.schedule_every \
                    if self.schedule_every else now
                with self.db.write() as conn:
                    conn.execute("INSERT OR IGNORE INTO schedule_runs (name, last_slot) "
                                 "VALUES (?, ?)", (schedule.name, start))
                continue
            slot = self._due_slot(schedule.cron, row[0][0], now)
            if slot is None:
                continue
            event = fired_event(schedule, self.app.catalog,
                                slot_iso(datetime.fromtimestamp(slot, UTC)))
            self._ingest([event])
            with self.db.write() as conn:
                conn.execute("UPDATE schedule_runs SET last_slot = ?, fired = fired + 1 "
                             "WHERE name = ?", (slot, schedule.name))
            log.info("schedule fired", extra={"schedule": schedule.name,
                                              "scheduled_time": event.data["scheduled_time"]})
            fired += 1
        return fired

    # lifecycle --------------------------------------------------------------------------
    def expire(self, now: float) -> list[str]:
        gone = []
        for bucket in (b for b in self.app.buckets if b.expire_days):
            assert bucket.expire_days is not None
            gone += [f"{bucket.name}/{k}" for k in
                     self.blobs.expire(bucket.name, bucket.expire_days * _DAY_S, now)]
        return gone
