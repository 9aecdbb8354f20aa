"""The Store port on Firestore (native mode): one collection per table, one document per key.

- `put_if_absent` is `DocumentReference.create()`: Firestore refuses it atomically with
  `AlreadyExists`, which becomes `False` here (nothing vendor-shaped leaks inward).
- `transact` reads every document in a Firestore transaction, applies the shared condition
  semantics of `handlers.core.ports.apply_op`, and writes all or nothing. Firestore retries
  the transaction on contention; when it gives up that is a `TransientError`.
- `expires_at` (epoch seconds in the engine's idempotency records) is stored as a
  Timestamp, because Firestore TTL policies only delete documents whose TTL field is a
  Timestamp; it is read back as epoch seconds, so callers never notice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.cloud import firestore

from handlers.core.errors import TransientError
from handlers.core.ports import Op, Put, apply_op

#: The field Firestore's TTL policy watches (infra/gcp sets the policy on it).
TTL_FIELD: Final = "expires_at"
#: Errors worth retrying: the platform redelivers, the orchestrator retries the step.
_TRANSIENT: Final = (gexc.Aborted, gexc.DeadlineExceeded, gexc.ServiceUnavailable,
                     gexc.TooManyRequests, gexc.InternalServerError, gexc.ResourceExhausted)
_SAFE: Final = "|:@-_.~+=,"


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

    def __init__(self, client: firestore.Client, *, max_attempts: int = 5) -> None:
        self._client = client
        self._max_attempts = max_attempts

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
        # All reads happen before any write, as Firestore transactions require.
        refs = {(op.table, op.key): self._ref(op.table, op.key) for op in ops}

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> bool:
            staged: dict[tuple[str, str], dict[str, Any] | None] = {}
            for where, ref in refs.items():
                snapshot = ref.get(transaction=transaction)
                staged[where] = _from_firestore(snapshot.to_dict()) if snapshot.exists else None
            for op in ops:
                new = apply_op(staged[(op.table, op.key)], op)
                if new is None:
                    return False  # nothing written: the transaction commits no change
                staged[(op.table, op.key)] = new
            for where, ref in refs.items():
                transaction.set(ref, _to_firestore(staged[where] or {}))
            return True

        try:
            return bool(run(self._client.transaction(max_attempts=self._max_attempts)))
        except _TRANSIENT as error:
            raise TransientError(f"firestore transaction gave up: {error}") from error
        except ValueError as error:
            # google-cloud-firestore reports "Failed to commit transaction in N attempts"
            # as ValueError after retrying contention itself.
            if "attempts" in str(error):
                raise TransientError(f"firestore contention: {error}") from error
            raise
