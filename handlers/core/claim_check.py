"""Claim check: events too big for the bus travel as a reference to their stored data.

A publisher that meets an event over its transport's limit writes the event's data to the
claim-check bucket and sends the same event (same id, type, source, subject) with no data
and two extensions: `claimcheck` (bucket/key of the payload) and `claimsize` (its bytes).
The engine resolves the reference before validation, so handlers never see the
difference. The stored payload expires by the bucket's lifecycle rule; a reference
resolved after that is a permanent error that names the payload and the expiry.

The key is derived from (source, id) and the payload's digest: re-publishing the same
event writes the same object with the same bytes, so a retried publish stores nothing
twice, while an event re-sent under the same id with other data gets an object of its own
(the first payload is never overwritten) and a reference that differs, so the engine's
fingerprint of the reference sees the conflict and refuses it like any reused id.

The stored object is the data as the event's `datacontenttype` says it is written (the
data codec, `wire.data`, the same table the HTTP and Pub/Sub bindings use): JSON text for
JSON types, the string in its charset for text types, the bytes themselves otherwise. So
check-out gives back exactly the data that was checked in, and the object in the bucket
is the payload a person or another tool would expect. Data that its content type cannot
carry exactly (a dict labelled text/plain) is refused at check-in with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from handlers.core import jsonformat
from handlers.core.errors import BlobMissing, PermanentError, ValidationError
from handlers.core.events import Event
from handlers.core.ports import BlobStore, Publisher
from handlers.core.wire import data as codec

#: CloudEvents extension attributes (lowercase alphanumerics, at most 20 characters).
CLAIM_EXTENSION: Final = "claimcheck"
SIZE_EXTENSION: Final = "claimsize"
_CONTENT_TYPE: Final = "application/json"


def event_bytes(event: Event) -> int:
    """Size of the event in the JSON format: what every transport here carries."""
    return len(jsonformat.dumps(event).encode())


def claim_key(event: Event, payload: bytes) -> str:
    content = hashlib.sha256(payload).hexdigest()
    digest = hashlib.sha256(f"{event.source}\n{event.id}\n{content}".encode()).hexdigest()
    return f"events/{digest[:2]}/{digest}.json"


def is_claimed(event: Event) -> bool:
    return CLAIM_EXTENSION in event.extensions


def check_in(event: Event, blobs: BlobStore, bucket: str) -> Event:
    """Store the event's data and return the reference event that replaces it."""
    if is_claimed(event):
        return event
    payload, problems = codec.encode(event.data, event.datacontenttype)
    if problems:
        raise ValidationError(f"event '{event.id}' cannot be claim-checked exactly", problems)
    key = claim_key(event, payload)
    blobs.write(bucket, key, payload, event.datacontenttype or _CONTENT_TYPE)
    return replace(event, data=None, extensions={
        **event.extensions, CLAIM_EXTENSION: f"{bucket}/{key}",
        SIZE_EXTENSION: str(len(payload))})


def check_out(event: Event, blobs: BlobStore | None, expire_days: int | None = None) -> Event:
    """The event with its data back; unchanged when it carries no reference."""
    if not is_claimed(event):
        return event
    reference = event.extensions[CLAIM_EXTENSION]
    bucket, _, key = reference.partition("/")
    if not bucket or not key:
        raise ValidationError(f"event '{event.id}' has a malformed {CLAIM_EXTENSION} "
                              f"reference {reference!r} (want 'bucket/key')")
    if blobs is None:
        raise PermanentError(f"event '{event.id}' is claim-checked ({reference}) but this "
                             "backend was built without a blob store")
    try:
        payload = blobs.read(bucket, key)
    except BlobMissing:
        lived = f"objects there expire after {expire_days} days" if expire_days else \
            "it may have expired"
        raise BlobMissing(f"claim-checked payload {reference} of event '{event.id}' is "
                          f"gone ({lived}); the event cannot be processed") from None
    expected = event.extensions.get(SIZE_EXTENSION)
    if expected is not None and expected != str(len(payload)):
        raise PermanentError(f"claim-checked payload {reference} is {len(payload)} bytes, "
                             f"the reference says {expected}")
    extensions = {k: v for k, v in event.extensions.items()
                  if k not in (CLAIM_EXTENSION, SIZE_EXTENSION)}
    data, problems = codec.decode(payload, event.datacontenttype)
    if problems:
        raise ValidationError(f"claim-checked payload {reference} does not read as "
                              f"{event.datacontenttype or 'JSON'}", problems)
    return replace(event, data=data, extensions=extensions)


class ClaimCheckPublisher:
    """Wraps a transport's publisher: events over `limit` bytes go by claim check.

    `limit` is the transport's own constant (EventBridge's entry limit, Pub/Sub's message
    limit, the local bus's); `size` measures an event the way that transport counts.
    """

    def __init__(self, inner: Publisher, blobs: BlobStore, bucket: str, limit: int,
                 size: Callable[[Event], int] = event_bytes) -> None:
        self._inner = inner
        self._blobs = blobs
        self._bucket = bucket
        self._limit = limit
        self._size = size
        self.checked_in = 0

    def prepare(self, events: Sequence[Event]) -> list[Event]:
        out = []
        for event in events:
            if self._size(event) > self._limit:
                event = check_in(event, self._blobs, self._bucket)
                self.checked_in += 1
            out.append(event)
        return out

    def publish(self, events: Sequence[Event]) -> None:
        self._inner.publish(self.prepare(events))
