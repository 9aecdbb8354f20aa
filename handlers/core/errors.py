"""Errors that encode retry semantics.

Every backend decides what to do with a failure from its class alone:
`PermanentError` is dead-lettered at once with its reason, `TransientError` is retried by
the platform up to `maxDeliveries` and then dead-lettered by the platform.
"""

from __future__ import annotations

from collections.abc import Iterable


class SwitchyardError(Exception):
    """Base of every error Switchyard raises on purpose."""


class PermanentError(SwitchyardError):
    """Retrying cannot help (bad input, schema violation, conflicting duplicate)."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        if self.problems:
            message = f"{message}: " + "; ".join(self.problems)
        super().__init__(message)

    @property
    def reason(self) -> str:
        return str(self)


class ValidationError(PermanentError):
    """Input is malformed; `problems` names every problem found, not just the first."""


class UnknownEventType(PermanentError):
    """The type is not in the catalog."""


class ConflictError(PermanentError):
    """Same idempotency key, different payload: refusing it protects the first effect."""


class BlobMissing(PermanentError):
    """An object is not in its bucket (never written, or expired by its lifecycle rule)."""


class TransientError(SwitchyardError):
    """Worth retrying with backoff (throttling, timeouts, contention, not-yet-visible data)."""


class NotYetKnown(TransientError):
    """Data this event depends on has not arrived yet (a trigger that overtook its order).

    Usually settled within milliseconds, so backends retry it first after a short delay
    (tens of milliseconds) and then back off like any other transient error, where the
    platform lets them choose the delay.
    """


class StepFailed(SwitchyardError):
    """A saga step failed for a business reason: no retry, run the compensations."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
