"""The local runtime's event sources: uploads folder, schedules, claim check and expiry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.local.blob_store import FileBlobStore
from adapters.local.runtime import Runtime, RuntimeSettings
from handlers.catalog import INVENTORY_DRIFT_DETECTED, INVENTORY_UPDATED
from handlers.core.errors import BlobMissing, ValidationError
from handlers.core.events import Event
from handlers.core.ports import Update
from handlers.core.schedule import fired_event
from tests.eventually import eventually
from tests.factories import restock

CSV = b"item_id,quantity,action\nA,5,restock\nB,-1,restock\n"


def _drop(folder: Path, name: str, content: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.part").write_bytes(content)
    (folder / f"{name}.part").rename(folder / name)


def test_csv_dropped_in_the_watched_folder_is_processed_once(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    runtime = Runtime(tmp_path / "s.db", settings=RuntimeSettings(
        retry_scale=0.001, poll_interval=0.01, uploads_dir=str(drop), sources_interval=0.02))
    runtime.sources.settle_seconds = 0.05
    runtime.start(workers=2)
    try:
        _drop(drop, "restock.csv", CSV)
        eventually(lambda: runtime.available("A") == 5, "restock applied")
        (rejected,) = eventually(lambda: runtime.dlq("upload-rejects"), "bad row parked")
        assert "line 3: quantity must be a positive integer (got '-1')" in rejected["reason"]
        # Touched but unchanged, and copied under another name: still one effect.
        (drop / "restock.csv").touch()
        _drop(drop, "copy.csv", CSV)
        eventually(lambda: runtime.db.read("SELECT COUNT(*) FROM uploads_seen")[0][0] == 2,
                    "copy announced")
        runtime.stop()
        runtime.run_until_idle()
        assert runtime.available("A") == 5 and len(runtime.dlq("upload-rejects")) == 1
    finally:
        runtime.close()
    # A restart does not announce what was already announced.
    again = Runtime(tmp_path / "s.db", settings=RuntimeSettings(uploads_dir=str(drop)))
    try:
        now = time.time()
        assert again.sources.scan_uploads(now) == 0  # first sight: settling
        assert again.sources.scan_uploads(now + 5) == 0  # settled, and already announced
        assert again.db.read("SELECT COUNT(*) FROM uploads_seen")[0][0] == 2
    finally:
        again.close()


def test_partial_uploads_are_not_announced(runtime: Runtime) -> None:
    folder = runtime.blobs.directory("uploads")
    folder.mkdir(parents=True)
    (folder / "big.csv.part").write_bytes(CSV)
    (folder / ".hidden.csv").write_bytes(CSV)
    (folder / "notes.csv~").write_bytes(CSV)
    (folder / "load.tmp").write_bytes(CSV)
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.csv").write_bytes(CSV)  # only files directly in the folder
    now = time.time()
    assert runtime.sources.scan_uploads(now) + runtime.sources.scan_uploads(now + 5) == 0
    (folder / "big.csv.part").rename(folder / "big.csv")
    assert runtime.sources.scan_uploads(now + 6) == 0  # renamed: a new file, settling
    assert runtime.sources.scan_uploads(now + 8) == 1
    runtime.run_until_idle()
    assert runtime.available("A") == 5 and runtime.dlq("file-processor") == []


def test_schedule_fires_on_a_short_interval(tmp_path: Path) -> None:
    runtime = Runtime(tmp_path / "t.db", settings=RuntimeSettings(
        retry_scale=0.001, poll_interval=0.01, schedule_every=0.2, sources_interval=0.02))
    runtime.ingest([restock("A", 5)])
    runtime.start(workers=2)
    try:
        audits = eventually(lambda: runtime.store.scan("audits"), "an audit ran")
    finally:
        runtime.close()
    audit = audits[0]
    assert audit["audit_id"].startswith("inventory-audit@")
    assert audit["drifting"] == [] and audit["unledgered"] == []


def test_audit_reports_drift_and_runs_once_per_slot(runtime: Runtime) -> None:
    runtime.ingest([restock("A", 5), restock("B", 2)])
    runtime.run_until_idle()
    # Someone edits stock behind the ledger's back.
    assert runtime.store.transact([Update("inventory", "A", add={"available": 3})])
    (schedule,) = runtime.app.schedules
    firing = fired_event(schedule, runtime.app.catalog, "2026-11-23T03:00:00Z")
    runtime.ingest([firing, firing])
    runtime.run_until_idle()
    (audit,) = runtime.store.scan("audits")
    assert audit["items_checked"] == 2
    assert audit["drifting"] == [{"item_id": "A", "actual": 8, "expected": 5, "drift": 3,
                                  "unledgered": False}]
    drift = runtime.db.read("SELECT body FROM events WHERE type = ?",
                            (INVENTORY_DRIFT_DETECTED,))
    assert len(drift) == 1


def test_claim_checked_event_whose_payload_expired_is_dead_lettered(runtime: Runtime) -> None:
    big = Event.new("inventory", INVENTORY_UPDATED, {
        "item_id": "A", "quantity": 1, "action": "restock", "manifest": "m" * 2_000_000})
    runtime.producer().publish([big])
    body = runtime.db.read("SELECT body FROM events WHERE id = ?", (big.id,))[0][0]
    assert len(body) < 2048  # the bus carried the reference, not the payload
    gone = runtime.sources.expire(time.time() + 16 * 24 * 3600)
    assert len(gone) == 1 and gone[0].startswith("claims/")
    runtime.run_until_idle()
    (dead,) = runtime.dlq()
    assert "is gone (objects there expire after 15 days)" in dead["reason"]
    assert runtime.available("A") == 0


def test_events_under_the_limit_are_not_claim_checked(runtime: Runtime) -> None:
    runtime.producer().publish([restock("A", 1)])
    runtime.run_until_idle()
    assert runtime.available("A") == 1 and runtime.blobs.keys("claims") == []


def test_blob_store_refuses_unsafe_keys_and_reports_missing(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    for key in ("../etc/passwd", "/abs", "a//b", ""):
        with pytest.raises(ValidationError):
            blobs.write("claims", key, b"x")
    with pytest.raises(BlobMissing, match="claims/nope does not exist"):
        blobs.read("claims", "nope")
    blobs.write("claims", "a/b.json", b"{}")
    assert blobs.read("claims", "a/b.json") == b"{}" and blobs.keys("claims") == ["a/b.json"]


def test_redelivered_claim_checked_event_is_a_duplicate_even_after_expiry(runtime: Runtime
                                                                          ) -> None:
    big = Event.new("inventory", INVENTORY_UPDATED, {
        "item_id": "A", "quantity": 2, "action": "restock", "manifest": "m" * 2_000_000})
    runtime.producer().publish([big])
    runtime.run_until_idle()
    body = runtime.db.read("SELECT body FROM events WHERE id = ?", (big.id,))[0][0]
    runtime.sources.expire(time.time() + 16 * 24 * 3600)
    from handlers.core import jsonformat

    runtime.ingest([jsonformat.loads(body)])  # the bus redelivers the reference
    runtime.run_until_idle()
    assert runtime.available("A") == 2 and runtime.dlq() == []
