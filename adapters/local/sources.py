"""The local runtime's event sources: the watched uploads folder, schedules, expiry.

One `poll` does what the clouds' managed services do: a finished upload in a bucket that
declares `events` becomes a `storage.object.finalized` event (S3 -> EventBridge, GCS ->
Pub/Sub on the clouds); a due schedule publishes its event (EventBridge Scheduler,
Cloud Scheduler); objects older than their bucket's `expire_days` are deleted (lifecycle
rules). What was already announced is recorded in the database, so a restart neither
re-announces old uploads nor fires a slot twice; and every id is derived (from the
object's content hash, from the schedule slot), so even a crash between "published" and
"recorded" only produces a duplicate that consumers drop.

Uploads must appear whole: write `name.part` (or a dot-file) and rename it, as `cp`
into a bucket would; names ending in `.part`/`.tmp` and dot-files are ignored.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from adapters.local.blob_store import FileBlobStore
from adapters.local.database import Database
from handlers.core.app import App
from handlers.core.events import Event
from handlers.core.schedule import fired_event, next_fire, slot_iso
from handlers.core.storage import STORAGE_OBJECT_FINALIZED

log = logging.getLogger("switchyard.local.sources")

_NAMESPACE: Final = uuid.UUID("9d2c4b1e-7a3f-4e58-b6d0-1f8e2a7c5b39")
_DAY_S: Final = 24 * 60 * 60
_EXPIRY_EVERY_S: Final = 60.0

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS uploads_seen (
    bucket TEXT NOT NULL, name TEXT NOT NULL, etag TEXT NOT NULL, event_id TEXT NOT NULL,
    seen_at REAL NOT NULL, PRIMARY KEY (bucket, name, etag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule_runs (
    name TEXT PRIMARY KEY, last_slot REAL NOT NULL, fired INTEGER NOT NULL DEFAULT 0
);
"""


def finalized_event(bucket: str, name: str, content: bytes, content_type: str = "text/csv"
                    ) -> Event:
    """The normalised event for an object as it is now (id: bucket, name and content)."""
    etag = hashlib.sha256(content).hexdigest()[:32]
    return Event(
        id=str(uuid.uuid5(_NAMESPACE, f"{bucket}/{name}#{etag}")), source="storage",
        type=STORAGE_OBJECT_FINALIZED, subject=name, datacontenttype="application/json",
        time=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        data={"bucket": bucket, "name": name, "size": len(content), "etag": etag,
              "content_type": content_type})


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
        self._stat_cache: dict[tuple[str, str], tuple[int, int, str]] = {}
        self._last_expiry = 0.0
        with db.write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def poll(self, now: float | None = None) -> int:
        """Announce new uploads, fire due schedules, expire old objects; events published."""
        now = time.time() if now is None else now
        published = self.scan_uploads() + self.fire_due(now)
        if now - self._last_expiry >= _EXPIRY_EVERY_S:
            self._last_expiry = now
            self.expire(now)
        return published

    # uploads ----------------------------------------------------------------------------
    def scan_uploads(self) -> int:
        published = 0
        for bucket in (b for b in self.app.buckets if b.events):
            for key in self.blobs.keys(bucket.name):
                path = self.blobs.directory(bucket.name) / key
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                cached = self._stat_cache.get((bucket.name, key))
                if cached and cached[:2] == (stat.st_size, stat.st_mtime_ns):
                    continue
                content = path.read_bytes()
                event = finalized_event(bucket.name, key, content,
                                        "text/csv" if key.endswith(".csv") else
                                        "application/octet-stream")
                etag = event.data["etag"]
                self._stat_cache[(bucket.name, key)] = (stat.st_size, stat.st_mtime_ns, etag)
                seen = self.db.read("SELECT 1 FROM uploads_seen WHERE bucket = ? AND name = ?"
                                    " AND etag = ?", (bucket.name, key, etag))
                if seen:
                    continue
                self._ingest([event])
                with self.db.write() as conn:
                    conn.execute("INSERT OR IGNORE INTO uploads_seen (bucket, name, etag, "
                                 "event_id, seen_at) VALUES (?, ?, ?, ?, ?)",
                                 (bucket.name, key, etag, event.id, time.time()))
                log.info("upload", extra={"bucket": bucket.name, "object": key,
                                          "event_id": event.id})
                published += 1
        return published

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
