"""The local runtime's settings, in one typed place (the CLI fills them from its flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from handlers.payments import DEFAULT_DECLINE_ABOVE_CENTS

DEFAULT_DB: Final = "switchyard.db"


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    max_deliveries: int = 5
    visibility_timeout: float = 30.0
    #: Multiplies every retry/backoff delay: 1.0 in production, small in demos and tests.
    retry_scale: float = 1.0
    saga_lease: float = 30.0
    decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS
    poll_interval: float = 0.2
    #: Where buckets live (one folder each); default: `<database>.blobs` beside the db.
    blob_dir: str | None = None
    #: The watched uploads folder (the app's bucket with `events`); default: in blob_dir.
    uploads_dir: str | None = None
    #: Fire schedules every this many seconds instead of on their cron (demos, tests).
    schedule_every: float | None = None
    #: How often the timer looks at uploads and schedules.
    sources_interval: float = 1.0
    #: Worker processes that run deliveries' handlers ahead of the write lock
    #: (`adapters.local.offload`); 0: every delivery runs in the runtime's own process.
    processes: int = 0

    def __post_init__(self) -> None:
        if self.max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {self.max_deliveries}")
        if self.processes < 0:
            raise ValueError(f"processes must be >= 0, got {self.processes}")
