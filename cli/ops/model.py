"""What every backend's operations answer with, whatever the platform underneath.

A `DeadLetter` is one event that a consumer could not process, with why and how often
it was tried; a `Selection` picks dead letters (by consumer, type, reason, event ids) for
`dlq list|show|redrive|discard|purge`; `ConsumerStatus` is one line of `switchyard status`. Backends
(`cli.ops.aws`, `gcp`, `local`) implement the `Backend` protocol.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

_RELATIVE: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    consumer: str
    event_id: str | None
    type: str | None
    reason: str
    attempts: int | None
    #: Where it sits, in the platform's terms (DLQ URL, dead-letter subscription, dlq row).
    location: str
    failed_at: str | None = None
    #: The dead-lettered event (a CloudEvent dict) or, if it does not decode, the raw body.
    event: Any = None
    #: Platform metadata kept for `show` (message attributes, message id...).
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operation applies to; an unset field matches everything."""

    consumer: str | None = None
    type: str | None = None
    reason: str | None = None
    event_id: str | None = None
    #: Any of these event ids (`dlq discard ID...`); empty: no constraint.
    event_ids: tuple[str, ...] = ()

    @property
    def filtered(self) -> bool:
        """Whether anything narrows it (an empty selection matches every dead letter)."""
        return any((self.consumer, self.type, self.reason, self.event_id, self.event_ids))

    def consumers(self, names: Sequence[str]) -> list[str]:
        if self.consumer is None:
            return list(names)
        if self.consumer not in names:
            raise OpsError(f"unknown consumer '{self.consumer}' (the stack has "
                           f"{', '.join(sorted(names))})")
        return [self.consumer]

    def matches(self, letter: DeadLetter) -> bool:
        return ((self.consumer is None or letter.consumer == self.consumer)
                and (self.type is None or letter.type == self.type)
                and (self.reason is None or self.reason.lower() in letter.reason.lower())
                and (self.event_id is None or letter.event_id == self.event_id)
                and (not self.event_ids or letter.event_id in self.event_ids))


@dataclass(frozen=True, slots=True)
class RedriveResult:
    redriven: list[DeadLetter]
    #: Matching letters that could not be put back (they stay dead-lettered), with why.
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class DiscardResult:
    discarded: list[DeadLetter]
    #: Matching letters that could not be deleted (they stay dead-lettered), with why.
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    dry_run: bool = False
    #: Where the record of what was discarded is kept (a table or an audit file).
    record: str = ""


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    consumer: str
    #: Messages waiting for the consumer; None when the platform cannot say from here.
    backlog: int | None
    in_flight: int | None
    dead_letters: int
    recent_failures: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    #: What was (or, on a dry run, would be) put back on the bus, or the platform's answer.
    description: str
    replayed: int | None
    dry_run: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class OpsError(Exception):
    """An operation cannot be done as asked (bad filter, missing resource...)."""


class PlatformError(OpsError):
    """The platform cannot be reached or refuses (credentials, permissions, network):
    the request was fine, so the command fails with exit 1, not as a usage error."""


class AuditLog(Protocol):
    """Where a cloud backend records each dead letter it discards, before deleting it."""

    location: str

    def record(self, letters: Sequence[DeadLetter], by: str, outcome: str,
               error: str | None = None) -> None: ...


class Backend(Protocol):
    def dead_letters(self, selection: Selection) -> list[DeadLetter]: ...

    def redrive(self, selection: Selection, dry_run: bool = False) -> RedriveResult: ...

    def discard(self, selection: Selection, by: str, audit: AuditLog | None = None,
                dry_run: bool = False) -> DiscardResult: ...

    def status(self) -> list[ConsumerStatus]: ...

    def replay(self, start: datetime, end: datetime, types: Sequence[str] = (),
               dry_run: bool = False) -> ReplayResult: ...


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC if no offset) or a duration ago: `90s`, `15m`, `2h`, `1d`."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise OpsError(f"not a time: {text!r} (give ISO 8601, e.g. 2026-01-31T12:00:00Z, "
                       "or a duration ago, e.g. 30m, 2h, 1d)") from error
    return value if value.tzinfo else value.replace(tzinfo=UTC)
