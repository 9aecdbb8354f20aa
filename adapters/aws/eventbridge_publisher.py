"""The Publisher port on EventBridge: PutEvents in batches, re-sending only what failed.

PutEvents is not all-or-nothing: it answers 200 with `FailedEntryCount` and an error per
failed entry. Re-sending the whole batch would publish the accepted entries twice, so only
the failed ones are retried (with backoff), and only while their error code is one AWS
documents as retryable; if some still fail, `publish` raises `TransientError` so the
platform retries the delivery (the consumers' dedupe absorbs whatever was accepted), and
`put` hands them back with their error codes, for callers that report per event.
Sizes are checked before anything is sent, so an oversize event is refused whole, with the
event and the limit named, instead of half a batch going out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from adapters.aws.eventbridge_limits import (
    AWS_MAX_ENTRIES,
    MAX_DELIVERABLE_BYTES,
    MAX_ENTRY_BYTES,
    entry_size,
)
from handlers.core.app import Catalog
from handlers.core.errors import PermanentError, TransientError
from handlers.core.eventbridge_binding import to_put_events_entry
from handlers.core.events import Event
from handlers.core.values import valueclass

MAX_ATTEMPTS: Final = 4
BASE_DELAY_S: Final = 0.1
#: The PutEventsResultEntry error codes AWS's API reference lists as retryable. The others
#: (AccessDeniedException, InvalidArgument, MalformedDetail, NotAuthorizedForSource...)
#: fail the same way every time, so their entries are reported at once, not re-sent.
RETRYABLE_CODES: Final = frozenset({"InternalFailure", "ThrottlingException"})


@valueclass
class FailedEntry:
    """An event EventBridge did not take, with the error it gave (or the call's error)."""

    event: Event
    code: str
    message: str

    def __init__(self, event: Event, code: str, message: str) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "message", message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


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
        failed = self.put(events)
        if failed:
            raise TransientError(
                f"PutEvents: {len(failed)} of {len(events)} entries still failing after "
                f"{self._max_attempts} attempts: {'; '.join(str(f) for f in failed)}")

    def put(self, events: Sequence[Event]) -> list[FailedEntry]:
        """Send `events` in batches of `AWS_MAX_ENTRIES`; the ones still refused after
        every attempt, with their errors (empty when all were accepted). Sizes are checked
        first: `EntryTooLarge` means nothing was sent."""
        entries = self.entries(events)
        failed: list[FailedEntry] = []
        for start in range(0, len(entries), AWS_MAX_ENTRIES):
            end = start + AWS_MAX_ENTRIES
            failed.extend(self._send(events[start:end], entries[start:end]))
        return failed

    def _send(self, events: Sequence[Event], batch: list[dict[str, Any]]
              ) -> list[FailedEntry]:
        pending = list(range(len(batch)))
        errors: dict[int, tuple[str, str]] = {}
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._base_delay * 2 ** (attempt - 1))
            try:
                answer = self._client.put_events(Entries=[batch[i] for i in pending])
            except Exception as error:  # throttled, unavailable, timed out: all worth a retry
                errors.update((i, _call_error(error)) for i in pending)
                continue
            if not answer.get("FailedEntryCount"):
                for i in pending:
                    errors.pop(i, None)
                break
            retry = []
            # Results are positional: entry i of the answer is entry i of the request.
            for i, result in zip(pending, answer.get("Entries", []), strict=True):
                code = result.get("ErrorCode")
                if not code:
                    errors.pop(i, None)
                    continue
                errors[i] = (str(code), str(result.get("ErrorMessage") or ""))
                if code in RETRYABLE_CODES:
                    retry.append(i)
            pending = retry
            if not pending:
                break
        return [FailedEntry(events[i], *errors[i]) for i in sorted(errors)]


def _call_error(error: Exception) -> tuple[str, str]:
    """(code, message) of a failed call: AWS's error code when botocore has one."""
    response = getattr(error, "response", None)
    details = response.get("Error") if isinstance(response, Mapping) else None
    if isinstance(details, Mapping) and details.get("Code"):
        return str(details["Code"]), str(details.get("Message") or "")
    return type(error).__name__, str(error)
