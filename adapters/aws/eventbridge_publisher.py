"""The Publisher port on EventBridge: PutEvents in batches, re-sending only what failed.

PutEvents is not all-or-nothing: it answers 200 with `FailedEntryCount` and an error per
failed entry. Re-sending the whole batch would publish the accepted entries twice, so only
the failed ones are retried (with backoff); if some still fail, `TransientError` makes the
platform retry the delivery, and the consumers' dedupe absorbs whatever was accepted.
Sizes are checked before anything is sent, so an oversize event is refused whole, with the
event and the limit named, instead of half a batch going out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from handlers.core.app import Catalog
from handlers.core.errors import PermanentError, TransientError
from handlers.core.eventbridge_binding import (
    AWS_MAX_ENTRIES,
    MAX_DELIVERABLE_BYTES,
    MAX_ENTRY_BYTES,
    entry_size,
    to_put_events_entry,
)
from handlers.core.events import Event

MAX_ATTEMPTS: Final = 4
BASE_DELAY_S: Final = 0.1


class EntryTooLarge(PermanentError):
    """An event is over EventBridge's entry size limit: retrying cannot help."""


class EventBridgePublisher:
    def __init__(self, client: Any, bus_name: str, catalog: Catalog, *,
                 max_attempts: int = MAX_ATTEMPTS, base_delay_s: float = BASE_DELAY_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._bus = bus_name
        self._catalog = catalog
        self._max_attempts = max_attempts
        self._base_delay = base_delay_s
        self._sleep = sleep

    def entries(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """PutEvents entries for `events`; `EntryTooLarge` naming each one over the limit."""
        entries = [to_put_events_entry(e, self._catalog, self._bus) for e in events]
        too_big = [
            f"event '{event.id}' ({event.type}) is {entry_size(entry)} bytes"
            for event, entry in zip(events, entries, strict=True)
            if entry_size(entry) > MAX_DELIVERABLE_BYTES
        ]
        if too_big:
            raise EntryTooLarge(
                f"over {MAX_DELIVERABLE_BYTES} bytes, the largest entry a consumer's SQS queue "
                f"can take inside EventBridge's envelope (PutEvents allows {MAX_ENTRY_BYTES}); "
                "nothing was sent", too_big)
        return entries

    def publish(self, events: Sequence[Event]) -> None:
        entries = self.entries(events)
        for start in range(0, len(entries), AWS_MAX_ENTRIES):
            self._send(entries[start:start + AWS_MAX_ENTRIES])

    def _send(self, batch: list[dict[str, Any]]) -> None:
        pending = batch
        errors: list[str] = []
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._base_delay * 2 ** (attempt - 1))
            try:
                answer = self._client.put_events(Entries=pending)
            except Exception as error:  # throttled, unavailable, timed out: all worth a retry
                errors = [f"{type(error).__name__}: {error}"]
                continue
            results = answer.get("Entries", [])
            if not answer.get("FailedEntryCount"):
                return
            # Results are positional: entry i of the answer is entry i of the request.
            failed = [(entry, result) for entry, result in zip(pending, results, strict=True)
                      if result.get("ErrorCode")]
            errors = [f"{r.get('ErrorCode')}: {r.get('ErrorMessage', '')}" for _, r in failed]
            pending = [entry for entry, _ in failed]
        raise TransientError(f"PutEvents: {len(pending)} of {len(batch)} entries still failing "
                             f"after {self._max_attempts} attempts: {'; '.join(errors)}")
