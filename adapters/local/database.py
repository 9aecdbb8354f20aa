"""The local runtime's one SQLite database: schema, connections and transactions.

WAL mode. Every commit survives `kill -9` (it is in the WAL before COMMIT returns). For a
power cut, commits that accept events from outside are made with `synchronous=FULL`
(`write(durable=True)`): on disk before we answer 202. Processing commits use `NORMAL`,
which skips that fsync; the WAL is a log, so a later FULL commit also makes every earlier
frame durable, and a power cut can only lose the newest processing steps, in order,
which the idempotent engine redoes. Each thread gets its own connection; writes use
`BEGIN IMMEDIATE` so two writers queue on the lock instead of deadlocking.

WAL checkpoints are kept off the commit path: SQLite's automatic checkpoint (run inside
whichever COMMIT crosses 1,000 pages) is off, and `checkpoint()` copies the WAL back in
PASSIVE mode (it never waits for, nor blocks, readers or writers). The runtime's
checkpointer thread calls it while it runs; without one (the demo, the tests driving
`run_until_idle`), a commit checkpoints after every `_INLINE_CHECKPOINT_COMMITS` commits,
so the WAL stays bounded either way; `journal_size_limit` truncates it once it has been
copied back.

Commands that only look (or must not start a database by accident) open an existing file:
`create=False` refuses a missing one with `DatabaseMissing`, and `read_only=True` opens it
through SQLite's `mode=ro` URI, so nothing is created or changed, not even the schema
(SQLite may still create the WAL's `-wal`/`-shm` companions of an existing database, the
index readers share with a running writer).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL,
    body TEXT NOT NULL, accepted_at REAL NOT NULL, origin TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (source, id);
CREATE TABLE IF NOT EXISTS queue (
    mid INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL, event_seq INTEGER NOT NULL, body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, visible_at REAL NOT NULL,
    enqueued_at REAL NOT NULL, last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (visible_at);
CREATE TABLE IF NOT EXISTS dlq (
    did INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL, event_id TEXT, event_type TEXT, reason TEXT NOT NULL,
    attempts INTEGER NOT NULL, body TEXT NOT NULL, failed_at REAL NOT NULL,
    redriven_at REAL
);
CREATE TABLE IF NOT EXISTS dlq_discarded (
    did INTEGER PRIMARY KEY,
    consumer TEXT NOT NULL, event_id TEXT, event_type TEXT, reason TEXT NOT NULL,
    attempts INTEGER NOT NULL, body TEXT NOT NULL, failed_at REAL NOT NULL,
    discarded_by TEXT NOT NULL, discarded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sagas (
    saga_id TEXT PRIMARY KEY, status TEXT NOT NULL, state TEXT NOT NULL,
    next_run_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0,
    started_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sagas_due ON sagas (status, next_run_at);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY, message TEXT NOT NULL, sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    event_id TEXT, event_type TEXT, consumer TEXT, attempt INTEGER,
    outcome TEXT NOT NULL, detail TEXT, duration_ms REAL, subject TEXT, trace_id TEXT
);
"""


#: Tables every command reads; a file without them is not a switchyard database.
_REQUIRED: Final = ("events", "queue", "dlq", "timeline", "items", "sagas")
#: Without a checkpointer thread, a PASSIVE checkpoint after this many commits.
_INLINE_CHECKPOINT_COMMITS: Final = 500
#: How long a processing write waits for waiting producers' writes to go first (s).
_YIELD_MAX: Final = 0.02
#: The WAL file is truncated back to this size once its frames are in the database.
_WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024


class _Write:
    """One `Database.write` block: a transaction, a savepoint of the open one, or (nested
    with `savepoint=False`) the open one as it is."""

    __slots__ = ("_db", "_durable", "_savepoint", "_name", "_depth", "_mark")

    def __init__(self, db: Database, durable: bool, savepoint: bool) -> None:
        self._db, self._durable, self._savepoint = db, durable, savepoint
        self._name: str | None = None
        self._depth = 0
        self._mark = 0  # deferred rows before this savepoint (kept if it rolls back)

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        conn = db.connection()
        local = db._local
        depth: int = getattr(local, "depth", 0)
        self._depth = depth
        if depth:
            if self._durable and not local.durable:
                raise RuntimeError("a durable write cannot nest in a non-durable transaction")
            if self._savepoint:
                self._name = name = f"sy_{depth}"
                conn.execute(f"SAVEPOINT {name}")
                self._mark = len(local.deferred)
                local.depth = depth + 1
            return conn
        db._begin(self._durable)
        return conn

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        db = self._db
        if not self._depth:
            db._end(failed=kind is not None)
            return
        name = self._name
        if name is None:  # joined the open transaction: nothing of its own to end
            return
        local = db._local
        conn = local.conn
        try:
            if kind is not None:
                # Whatever the cache holds may be what the savepoint undoes: drop it all
                # first, so nothing cached outlives the rollback (even a failed one).
                local.cache.clear()
                conn.execute(f"ROLLBACK TO {name}")
                del local.deferred[self._mark:]  # rolled back with the savepoint
            conn.execute(f"RELEASE {name}")
        finally:
            local.depth = self._depth


class _Joined:
    """One `Database.joined` block (see there)."""

    __slots__ = ("_local", "_was")

    def __init__(self, local: threading.local) -> None:
        self._local = local
        self._was = 0

    def __enter__(self) -> None:
        local = self._local
        self._was = getattr(local, "joined", 0)
        local.joined = getattr(local, "depth", 0)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._local.joined = self._was


def _write_deferred(conn: sqlite3.Connection,
                    deferred: list[tuple[str, tuple[Any, ...]]]) -> None:
    """One `executemany` per statement, in the order of each statement's first row; the
    rows of a statement in the order given."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for sql, params in deferred:
        same = rows.get(sql)
        if same is None:
            rows[sql] = [params]
        else:
            same.append(params)
    for sql, params_list in rows.items():
        conn.executemany(sql, params_list)


class DatabaseMissing(Exception):
    """The database a command should open does not exist, or is not one of ours."""


class Database:
    def __init__(self, path: str | Path, *, create: bool = True,
                 read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        self._local = threading.local()
        self._writer = threading.Lock()
        self._count_lock = threading.Lock()
        self._durable_waiting = 0
        self._uri: str | None = None
        #: Commits since the last checkpoint; a checkpointer thread sets `background`.
        self._commits = 0
        self.background_checkpoints = False
        if self.path != ":memory:" and (read_only or not create):
            file = Path(self.path)
            if not file.is_file():
                raise DatabaseMissing(
                    f"no database at {self.path} (start one with `switchyard serve --db "
                    f"{self.path}`, or point --db / SWITCHYARD_DB at an existing one)")
            # mode=rw|ro: SQLite itself refuses to create the file if it vanished since.
            self._uri = f"{file.resolve().as_uri()}?mode={'ro' if read_only else 'rw'}"
            self._check_tables()
        elif self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not read_only:
            self._create_schema()

    def _create_schema(self) -> None:
        """Every table in one transaction: another process opening the file meanwhile (a
        read-only command while `serve` starts) finds all of them or none, never some."""
        conn = self.connection()
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_tables(self) -> None:
        try:
            found = {row[0] for row in self.read(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            self.close()
            raise DatabaseMissing(f"{self.path} is not a switchyard database ({error})") \
                from None
        if not found:  # as a writer leaves it before its schema commits
            self.close()
            raise DatabaseMissing(f"{self.path} has no tables: an empty file, or one that a "
                                  "starting `switchyard serve` is still creating (then try "
                                  "again once it runs)")
        missing = [t for t in _REQUIRED if t not in found]
        if missing:
            self.close()
            raise DatabaseMissing(f"{self.path} is not a switchyard database (no table "
                                  f"{', '.join(missing)})")

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._uri is not None:
                conn = sqlite3.connect(self._uri, uri=True, isolation_level=None,
                                       timeout=30.0, check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                       check_same_thread=False)
            if self.read_only:
                # The writer chose WAL; a reader must not try to change the journal mode.
                conn.execute("PRAGMA query_only=ON")
                conn.execute("PRAGMA busy_timeout=30000")
                self._local.conn = conn
                self._local.durable = False
                return conn
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            # What a savepoint must undo if it rolls back (its statement journal) stays in
            # memory instead of spilling to a temporary file past 64 KiB, which a batch's
            # deliveries did, one write call per page. It is never read after a crash: an
            # uncommitted transaction is simply not in the WAL.
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            self._local.conn = conn
            self._local.durable = False
        return conn

    def write(self, durable: bool = False, *, savepoint: bool = True) -> _Write:
        """A write transaction: committed on exit, rolled back on error. `durable`: the
        commit is fsynced before it returns (for what we acknowledge to a producer).

        Nested calls on the same thread become savepoints of the open transaction, so a
        delivery's store writes, emitted events, notifications and ack commit together
        (one commit, all or nothing). Threads queue on an in-process lock rather than
        on SQLite's busy handler, which sleeps in steps of up to 100 ms.

        `savepoint=False`: a nested call joins the open transaction as it is, for writers
        that check everything before their first write (a failure after it unwinds to the
        enclosing savepoint anyway); it saves the SAVEPOINT/RELEASE round trips.

        A context manager class rather than a generator: a delivery opens dozens of these,
        nested, and the generator machinery was a measurable share of its CPU."""
        return _Write(self, durable, savepoint)

    def atomic(self) -> _Write:
        """A unit of writes and effects that commit together or not at all (the engine's
        `Ports.atomic`): a savepoint of the open transaction (or a transaction), except
        directly inside a `joined()` block, whose caller's savepoint already rolls back
        whole on any error leaving it: there it joins that savepoint."""
        local = self._local
        depth: int = getattr(local, "depth", 0)
        return _Write(self, False, not depth or getattr(local, "joined", 0) != depth)

    def joined(self) -> _Joined:
        """Marks this thread's innermost open savepoint as one its caller rolls back
        whole on any error that leaves the block: `atomic()` directly inside joins it."""
        return _Joined(self._local)

    def _begin(self, durable: bool) -> None:
        """Take the write lock (producers first) and begin; the lock is released again if
        beginning fails."""
        local = self._local
        conn = local.conn
        if durable:
            with self._count_lock:
                self._durable_waiting += 1
            try:
                self._writer.acquire()
            finally:
                with self._count_lock:
                    self._durable_waiting -= 1
        else:
            # Producers first: events waiting to be accepted (and answered 202) take the
            # lock before the next processing transaction, for at most _YIELD_MAX.
            if self._durable_waiting:
                until = time.monotonic() + _YIELD_MAX
                while self._durable_waiting and time.monotonic() < until:
                    time.sleep(0.0005)
            self._writer.acquire()
        try:
            if local.durable != durable:
                conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                local.durable = durable
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._writer.release()
            raise
        local.deferred = []
        local.cache = {}
        local.depth = 1

    def _end(self, failed: bool) -> None:
        """Commit (or roll back) the outermost transaction and release the write lock."""
        local = self._local
        conn = local.conn
        deferred: list[tuple[str, tuple[Any, ...]]] = local.deferred
        local.deferred = []
        local.cache = {}
        try:
            local.depth = 0
            if failed:
                conn.execute("ROLLBACK")
                return
            try:
                _write_deferred(conn, deferred)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._commits += 1
            if not self.background_checkpoints and \
                    self._commits >= _INLINE_CHECKPOINT_COMMITS:
                self._checkpoint(conn)
        finally:
            self._writer.release()

    def defer(self, sql: str, params: tuple[Any, ...]) -> None:
        """A statement made as part of this thread's open transaction, at its commit: the
        rows deferred in one transaction go in one `executemany` per statement just
        before COMMIT (a statement's rows in the order given, the statements in the
        order of their first row); a savepoint rolled back drops the rows deferred
        inside it, as it would have dropped them written. For writes that nothing reads
        inside the transaction, and that do not depend on one another across statements
        (timeline rows, acks). Outside a transaction the row is written in one of its
        own."""
        local = self._local
        if getattr(local, "depth", 0):
            local.deferred.append((sql, params))
            return
        with self.write() as conn:
            conn.execute(sql, params)

    def cache(self) -> dict[Any, Any] | None:
        """This thread's cache for its open write transaction (None outside one): what
        the transaction has read or written, kept by the code that reads and writes it,
        so it need not read it again. It starts empty with each transaction and is
        emptied when the transaction ends and whenever a savepoint of it rolls back, so
        a value cached can never outlive the write it saw. Only for rows that nothing
        else changes inside a transaction (no other connection writes while it holds
        the write lock)."""
        local = self._local
        return local.cache if getattr(local, "depth", 0) else None

    def ingest_waiting(self) -> bool:
        """A durable write (events accepted from outside) waits for the write lock: a
        long batch of processing should commit what it has and let it in."""
        return self._durable_waiting > 0

    def checkpoint(self) -> bool:
        """Copy committed WAL frames back into the database (PASSIVE: whatever no reader
        still needs, without waiting). False when there was nothing new to copy."""
        if self.read_only or self._commits == 0:
            return False
        self._checkpoint(self.connection())
        return True

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        self._commits = 0
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.connection().execute(sql, params).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
