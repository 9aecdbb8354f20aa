"""The Store port on Firestore (native mode): one collection per table, one document per key.

- `put_if_absent` is `DocumentReference.create()`: Firestore refuses it atomically with
  `AlreadyExists`, which becomes `False` here (nothing vendor-shaped leaks inward).
- `transact` is optimistic concurrency: read every document, apply the shared condition
  semantics of `handlers.core.ports.apply_op`, then write all or nothing in one batch whose
  preconditions say each document is unchanged since it was read (`create` for an absent
  one, its update time for a present one). Not a Firestore transaction: those take
  read locks, so N writers of one document (12 buyers of the last units) all hold a read
  lock, all wait to commit, and all abort together after the lock timeout, round after
  round (the emulator's pessimistic locks livelock like that). With preconditions the
  first commit wins and the others fail fast, re-read, and retry, a bounded number of
  times with jittered exponential backoff; when the retries are spent, contention is a
  `TransientError`: the platform redelivers, which is one more retry later.
- `expires_at` (epoch seconds in the engine's idempotency records) is stored as a
  Timestamp, because Firestore TTL policies only delete documents whose TTL field is a
  Timestamp; it is read back as epoch seconds, so callers never notice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from handlers.core.engine import PROCESSED, step_of_key
from handlers.core.errors import PermanentError, TransientError
from handlers.core.ports import Op, Put, apply_op

#: The field Firestore's TTL policy watches (infra/gcp sets the policy on it).
TTL_FIELD: Final = "expires_at"
#: Errors worth retrying: the platform redelivers, the orchestrator retries the step.
_TRANSIENT: Final = (gexc.Aborted, gexc.DeadlineExceeded, gexc.ServiceUnavailable,
                     gexc.TooManyRequests, gexc.InternalServerError, gexc.ResourceExhausted)
_SAFE: Final = "|:@-_.~+=,"
#: Transaction attempts before contention becomes a TransientError, and the backoff
#: between them: a random delay in [0, min(cap, base * 2**attempt)] ("full jitter"), so
#: contending writers spread out instead of retrying in lock-step.
MAX_ATTEMPTS: Final = 6
BACKOFF_BASE_S: Final = 0.02
BACKOFF_CAP_S: Final = 0.5


def doc_id(key: str) -> str:
    """A Firestore document id for `key`: '/' is not allowed in ids, and '.', '..' and
    '__x__' are reserved, so keys are percent-encoded (readably) and escaped."""
    encoded = quote(key, safe=_SAFE)
    if encoded in (".", "..") or (encoded.startswith("__") and encoded.endswith("__")):
        encoded = "~" + encoded
    return encoded


def _to_firestore(item: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(item)
    expires = out.get(TTL_FIELD)
    if isinstance(expires, (int, float)) and not isinstance(expires, bool):
        out[TTL_FIELD] = datetime.fromtimestamp(expires, UTC)
    return out


def _from_firestore(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    out = dict(data)
    expires = out.get(TTL_FIELD)
    if isinstance(expires, datetime):
        out[TTL_FIELD] = int(expires.timestamp())
    return out


class FirestoreStore:
    """Key-value tables with conditional, transactional writes on Firestore."""

    def __init__(self, client: firestore.Client, *, max_attempts: int = MAX_ATTEMPTS,
                 backoff_base_s: float = BACKOFF_BASE_S, backoff_cap_s: float = BACKOFF_CAP_S,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._client = client
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base_s
        self._backoff_cap = backoff_cap_s
        self._sleep = sleep
        self._jitter = jitter

    def _ref(self, table: str, key: str) -> firestore.DocumentReference:
        return self._client.collection(table).document(doc_id(key))

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every document of a table (audits; never on a per-event path)."""
        try:
            return [_from_firestore(s.to_dict()) or {}
                    for s in self._client.collection(table).stream()]
        except _TRANSIENT as error:
            raise TransientError(f"firestore scan {table}: {error}") from error

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        try:
            snapshot = self._ref(table, key).get()
        except _TRANSIENT as error:
            raise TransientError(f"firestore get {table}/{key}: {error}") from error
        return _from_firestore(snapshot.to_dict()) if snapshot.exists else None

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        try:
            self._ref(table, key).create(_to_firestore(item))
        except gexc.AlreadyExists:
            return False
        except _TRANSIENT as error:
            raise TransientError(f"firestore create {table}/{key}: {error}") from error
        return True

    def transact(self, ops: Sequence[Op]) -> bool:
        if len(ops) == 1 and isinstance(ops[0], Put):
            op = ops[0]
            if op.if_absent:
                return self.put_if_absent(op.table, op.key, op.item)
        refs = {(op.table, op.key): self._ref(op.table, op.key) for op in ops}
        last: Exception | None = None
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._jitter(0.0, min(self._backoff_cap,
                                                  self._backoff_base * 2 ** attempt)))
            try:
                outcome = self._try_once(ops, refs)
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted) as error:
                last = error  # a document changed since it was read: read again
                continue
            except _TRANSIENT as error:
                raise TransientError(f"firestore write failed: {error}") from error
            return outcome
        raise TransientError(
            f"firestore contention: {sorted(f'{t}/{k}' for t, k in refs)} changed under "
            f"{self._max_attempts} attempts in a row: {last}") from last

    def _try_once(self, ops: Sequence[Op],
                  refs: Mapping[tuple[str, str], firestore.DocumentReference]) -> bool:
        """Read, apply the shared conditions, then write every item in one atomic batch
        whose preconditions say "unchanged since read" (absent: `create`; present: the
        update time read). Optimistic, so no locks are held between read and write."""
        snapshots = {where: ref.get() for where, ref in refs.items()}
        staged = {where: _from_firestore(snap.to_dict()) if snap.exists else None
                  for where, snap in snapshots.items()}
        for op in ops:
            new = apply_op(staged[(op.table, op.key)], op)
            if new is None:
                return False  # a condition does not hold: nothing is written
            staged[(op.table, op.key)] = new
        batch = self._client.batch()
        for where, ref in refs.items():
            snapshot, item = snapshots[where], _to_firestore(staged[where] or {})
            if not snapshot.exists:
                batch.create(ref, item)
                continue
            # A full replacement: every new field set, every field that went away deleted.
            fields: dict[str, Any] = {FieldPath(name).to_api_repr(): value
                                      for name, value in item.items()}
            for name in (snapshot.to_dict() or {}):
                if name not in item:
                    fields[FieldPath(name).to_api_repr()] = firestore.DELETE_FIELD
            batch.update(ref, fields, option=self._client.write_option(
                last_update_time=snapshot.update_time))
        batch.commit()
        return True


class FirestoreDatabases:
    """The Store port over several Firestore databases, each table in the one the stack
    put it in (`adapters.gcp.topology.DataLayout`).

    Idempotency records (`processed`) go where the writes they commit with go: a saga
    step's to the database of the step's tables, everything else's to `home`. So every
    transaction the engine makes stays inside one database, which is all Firestore can
    commit atomically; one that would not is refused as a permanent error naming the
    tables (the app description and the stack disagree: fix, then redrive).
    """

    def __init__(self, stores: Mapping[str, FirestoreStore], home: str,
                 tables: Mapping[str, str], steps: Mapping[str, str]) -> None:
        unknown = sorted({home, *tables.values(), *steps.values()} - set(stores))
        if unknown:
            raise ValueError(f"no Firestore client for database(s) {unknown}")
        self._stores = dict(stores)
        self._home = home
        self._tables = dict(tables)
        self._steps = dict(steps)

    def database_of(self, table: str, key: str) -> str:
        if table == PROCESSED:
            step = step_of_key(key)
            return self._steps.get(step, self._home) if step else self._home
        return self._tables.get(table, self._home)

    def _store(self, table: str, key: str) -> FirestoreStore:
        return self._stores[self.database_of(table, key)]

    def scan(self, table: str) -> list[dict[str, Any]]:
        return self._stores[self._tables.get(table, self._home)].scan(table)

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self._store(table, key).get(table, key)

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return self._store(table, key).put_if_absent(table, key, item)

    def transact(self, ops: Sequence[Op]) -> bool:
        where = {self.database_of(op.table, op.key) for op in ops}
        if len(where) > 1:
            tables = sorted({f"{op.table} ({self.database_of(op.table, op.key)})"
                             for op in ops})
            raise PermanentError("one transaction cannot span Firestore databases: "
                                 f"{', '.join(tables)}; declare these tables together "
                                 "(one consumer or saga step) so the stack co-locates them")
        if not where:
            return True
        return self._stores[where.pop()].transact(ops)
