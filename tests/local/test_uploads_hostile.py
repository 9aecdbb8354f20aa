"""The watched uploads folder under careless and hostile files.

Each test drops something into the folder, drives the watcher's scans by hand (with an
explicit clock, so "settled" is decided by the test and not by sleeping) and then runs
the runtime until idle: what must be taken is applied once, what must be refused is
dead-lettered by name with its reason, and nothing outside the folder is ever read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.local import sources as sources_module
from adapters.local.runtime import Runtime, RuntimeSettings
from adapters.local.sources import _Version
from handlers.files import MAX_FILE_BYTES

GOOD = b"item_id,quantity\nA,5\n"


@pytest.fixture()
def rt(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(tmp_path / "u.db", settings=RuntimeSettings(
        retry_scale=0.001, uploads_dir=str(tmp_path / "drop")))
    (tmp_path / "drop").mkdir()
    yield runtime
    runtime.close()


def _folder(rt: Runtime) -> Path:
    return rt.blobs.directory("uploads")


class _Clock:
    """The watcher's notion of now, moved by the test: one tick settles a file."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.now = time.time()

    def scan(self) -> int:
        self.now += self.rt.sources.settle_seconds
        return self.rt.sources.scan_uploads(self.now)

    def settle(self) -> int:
        """Two scans a settle time apart: everything unchanged in between is taken."""
        return self.scan() + self.scan()


def _everything_recorded(rt: Runtime) -> str:
    """Every text the runtime stored about events: bodies, dead letters, timeline."""
    rows = rt.db.read("SELECT body FROM events") + rt.db.read(
        "SELECT reason || body FROM dlq") + rt.db.read("SELECT COALESCE(detail, '') FROM timeline")
    return "\n".join(r[0] for r in rows)


def test_symlinks_are_refused_by_name_and_never_read(rt: Runtime, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_bytes(b"item_id,quantity\nSECRET-ITEM-7f3a,9\n")
    monkeypatch.setenv("SWITCHYARD_TEST_MARKER", "ENVIRON-MARKER-51c2")  # in environ
    folder = _folder(rt)
    (folder / "outside.csv").symlink_to(secret)
    (folder / "environ.csv").symlink_to("/proc/self/environ")
    (folder / "good.csv").write_bytes(GOOD)
    assert _Clock(rt).settle() == 3
    rt.run_until_idle()
    assert rt.available("A") == 5 and rt.available("SECRET-ITEM-7f3a") == 0
    dead = {d["event"]["data"]["name"]: d for d in rt.dlq("file-processor")}
    assert sorted(dead) == ["environ.csv", "outside.csv"]
    assert all("it is a symbolic link, not a regular file" in d["reason"]
               and d["attempts"] == 1 for d in dead.values())
    recorded = _everything_recorded(rt)
    assert "SECRET-ITEM-7f3a" not in recorded and "ENVIRON-MARKER-51c2" not in recorded
    assert rt.blobs.keys("uploads") == ["good.csv"]


def test_a_link_planted_in_the_bucket_is_not_followed_on_read(rt: Runtime,
                                                              tmp_path: Path) -> None:
    objects = tmp_path / "u.db.blobs" / ".uploaded" / "uploads"
    objects.mkdir(parents=True)
    (tmp_path / "secret").write_bytes(b"secret")
    (objects / "x.csv").symlink_to(tmp_path / "secret")
    from handlers.core.errors import BlobMissing

    with pytest.raises(BlobMissing, match="a link, not an object"):
        rt.blobs.read("uploads", "x.csv")


def test_a_name_that_is_not_utf8_is_refused_and_later_files_still_taken(rt: Runtime
                                                                        ) -> None:
    folder = os.fsencode(_folder(rt))
    fd = os.open(folder + b"/caf\xe9-\xff.csv", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"item_id,quantity\nB,3\n")
    os.close(fd)
    clock = _Clock(rt)
    assert clock.settle() == 1
    (_folder(rt) / "later.csv").write_bytes(GOOD)  # dropped after the bad one was seen
    assert clock.settle() == 1
    rt.run_until_idle()
    assert rt.available("A") == 5 and rt.available("B") == 0
    (dead,) = rt.dlq("file-processor")
    assert dead["attempts"] == 1
    assert dead["reason"] == ("permanent error: upload 'caf\\xe9-\\xff.csv' was refused by "
                              "bucket 'uploads': its name is not UTF-8 (the bytes that are "
                              "not are shown as \\xNN); rename it")
    # Not announced again on later scans.
    assert clock.settle() == 0


def test_a_file_over_the_limit_is_refused_without_being_read(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = _folder(rt) / "huge.csv"
    with huge.open("wb") as out:
        out.truncate(2 * 1024 ** 3)  # sparse: 2 GiB of size, no disk used
    read_bytes = 0
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        nonlocal read_bytes
        data = real_read(fd, n)
        read_bytes += len(data)
        return data

    monkeypatch.setattr(sources_module.os, "read", counting_read)
    assert _Clock(rt).settle() == 1
    monkeypatch.undo()
    assert read_bytes == 0
    rt.run_until_idle()
    (dead,) = rt.dlq("file-processor")
    assert dead["attempts"] == 1
    assert (f"it is {2 * 1024 ** 3} bytes, over the {MAX_FILE_BYTES}-byte limit for "
            "uploads; it was not read") in dead["reason"]
    assert rt.blobs.keys("uploads") == []


def test_a_file_at_the_limit_is_copied_in_bounded_chunks(rt: Runtime,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    body = b"item_id,quantity\n" + b"A,1\n" * 5
    content = body + b"#" * (MAX_FILE_BYTES - len(body))
    (_folder(rt) / "full.csv").write_bytes(content)
    sizes: list[int] = []
    real_read = os.read

    def recording_read(fd: int, n: int) -> bytes:
        sizes.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(sources_module.os, "read", recording_read)
    assert _Clock(rt).settle() == 1
    monkeypatch.undo()
    assert max(sizes) == 1024 * 1024 and len(sizes) >= MAX_FILE_BYTES // (1024 * 1024)
    assert rt.blobs.read("uploads", "full.csv") == content


def test_a_file_written_in_place_is_announced_once_and_applied_once(rt: Runtime) -> None:
    path = _folder(rt) / "growing.csv"
    clock = _Clock(rt)
    chunks = [b"item_id,quantity\n", b"A,1\nB,2\n", b"C,3\nA,4\n"]
    with path.open("wb") as out:
        for chunk in chunks:  # cp writes a big file over several scans
            out.write(chunk)
            out.flush()
            assert clock.scan() == 0
    # Unchanged on the next scan, but not yet for the settle time: still waiting.
    assert rt.sources.scan_uploads(clock.now + rt.sources.settle_seconds / 2) == 0
    assert clock.scan() == 1
    assert clock.settle() == 0
    rt.run_until_idle()
    assert (rt.available("A"), rt.available("B"), rt.available("C")) == (5, 2, 3)
    finalized = rt.db.read("SELECT COUNT(*) FROM events WHERE source = 'storage'")[0][0]
    assert finalized == 1 and rt.dlq() == []


def test_a_file_changed_during_the_copy_is_taken_later_not_twice(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _folder(rt) / "racy.csv"
    path.write_bytes(b"item_id,quantity\nA,1\n")
    real_read = os.read
    appended = False

    def read_then_append(fd: int, n: int) -> bytes:
        nonlocal appended
        data = real_read(fd, n)
        if not appended:  # the writer adds rows right after the watcher's first read
            appended = True
            with path.open("ab") as out:
                out.write(b"B,2\n")
        return data

    monkeypatch.setattr(sources_module.os, "read", read_then_append)
    clock = _Clock(rt)
    assert clock.settle() == 0  # the copy saw the change: nothing announced
    monkeypatch.undo()
    assert rt.blobs.keys("uploads") == []
    assert clock.settle() == 1
    rt.run_until_idle()
    assert (rt.available("A"), rt.available("B")) == (1, 2)
    assert rt.db.read("SELECT COUNT(*) FROM uploads_seen")[0][0] == 1


def test_a_rewritten_file_is_announced_again_and_a_restart_announces_nothing(
        rt: Runtime, tmp_path: Path) -> None:
    path = _folder(rt) / "r.csv"
    path.write_bytes(GOOD)
    clock = _Clock(rt)
    assert clock.settle() == 1
    rt.run_until_idle()
    path.write_bytes(b"item_id,quantity\nA,2\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1000))
    assert clock.settle() == 1
    rt.run_until_idle()
    assert rt.available("A") == 7
    rows = rt.db.read("SELECT name, size, mtime_ns FROM uploads_seen ORDER BY seen_at")
    assert [r[:2] for r in rows] == [("r.csv", len(GOOD)), ("r.csv", len(GOOD))]
    assert rows[1][2] == path.stat().st_mtime_ns
    again = Runtime(tmp_path / "u.db", settings=RuntimeSettings(
        uploads_dir=str(_folder(rt))))
    try:
        assert _Clock(again).settle() == 0
    finally:
        again.close()


def test_a_fifo_does_not_hang_the_watcher(rt: Runtime) -> None:
    os.mkfifo(_folder(rt) / "pipe.csv")
    (_folder(rt) / "good.csv").write_bytes(GOOD)
    result: list[int] = []
    watcher = threading.Thread(target=lambda: result.append(_Clock(rt).settle()),
                               daemon=True)
    watcher.start()
    watcher.join(20)
    assert not watcher.is_alive(), "the watcher blocked on a FIFO"
    assert result == [2]
    rt.run_until_idle()
    assert rt.available("A") == 5
    (dead,) = rt.dlq("file-processor")
    assert "'pipe.csv' was refused by bucket 'uploads': it is a FIFO, not a regular file" \
        in dead["reason"]


def test_a_file_swapped_for_a_fifo_after_the_scan_is_not_opened_blocking(rt: Runtime
                                                                         ) -> None:
    path = _folder(rt) / "swap.csv"
    path.write_bytes(GOOD)
    regular = _Version.of(os.lstat(path))
    path.unlink()
    os.mkfifo(path)  # no writer: a blocking open would wait forever
    dir_fd = os.open(_folder(rt), os.O_RDONLY | os.O_DIRECTORY)
    result: list[Any] = []
    try:
        opener = threading.Thread(target=lambda: result.append(rt.sources._take(
            "uploads", b"swap.csv", regular, dir_fd)), daemon=True)
        opener.start()
        opener.join(20)
        assert not opener.is_alive(), "the watcher blocked opening a FIFO"
    finally:
        os.close(dir_fd)
    assert result == [0] and rt.blobs.keys("uploads") == []


def test_a_200kb_field_is_dead_lettered_at_once_with_its_line(rt: Runtime) -> None:
    (_folder(rt) / "wide.csv").write_bytes(
        b"item_id,quantity\nA,1\nB," + b"9" * 200_000 + b"\nC,1\n")
    (_folder(rt) / "fine.csv").write_bytes(b"item_id,quantity\nD,4\n")
    assert _Clock(rt).settle() == 2
    rt.run_until_idle()
    (dead,) = rt.dlq()
    assert dead["consumer"] == "file-processor" and dead["attempts"] == 1
    assert "upload 'wide.csv' line 3: not parseable as CSV (field larger than field limit" \
        in dead["reason"]
    # Refused whole: none of its rows applied (the lines after it cannot be trusted).
    assert (rt.available("A"), rt.available("C"), rt.available("D")) == (0, 0, 4)
