"""One more try, a moment later, for data that is not known yet.

A trigger can overtake the event it depends on (`NotYetKnown`); the missing data is
usually there milliseconds later. The clouds choose redelivery delays per queue or per
subscription, in seconds, not per error, so the cloud entries try once more inside the
same invocation after `SOON_S` before handing the failure back to the platform. (The
local broker chooses its own short first delay instead.)
"""

from __future__ import annotations

import time
from typing import Final

from handlers.core.app import App
from handlers.core.engine import Outcome, handle
from handlers.core.errors import NotYetKnown
from handlers.core.events import Event
from handlers.core.ports import Ports

#: The pause before the one in-invocation retry of data not known yet.
SOON_S: Final = 0.05


def handle_soon(app: App, consumer: str, event: Event, ports: Ports, *,
                attempt: int | None = None, max_attempts: int | None = None) -> Outcome:
    """`handle`, tried once more after `SOON_S` when the event's data is not known yet;
    a second `NotYetKnown` propagates like any transient error."""
    try:
        return handle(app, consumer, event, ports, attempt=attempt, max_attempts=max_attempts)
    except NotYetKnown:
        time.sleep(SOON_S)
        return handle(app, consumer, event, ports, attempt=attempt, max_attempts=max_attempts)
