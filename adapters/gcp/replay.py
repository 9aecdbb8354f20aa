"""Resources the operations commands rely on that no consumer route owns, as plain data.

GCP replays through one pull subscription on the bus topic that nobody consumes: it
retains acknowledged messages, so `seek` to a time marks everything published since as
undelivered again, and `switchyard replay` pulls that window and republishes it. The
stack (`infra/gcp`) and the emulator tests create it from `replay_subscription_request`.
No SDK here.
"""

from __future__ import annotations

from typing import Any, Final

#: Pub/Sub's limits on a subscription's message retention.
MIN_RETENTION_S: Final = 10 * 60
MAX_RETENTION_S: Final = 7 * 86400
#: Attribute set on every message `replay` republishes (the replay's name), so a later
#: replay skips it: its original is in the window too.
REPLAY_ATTRIBUTE: Final = "switchyard-replay"


def replay_subscription(prefix: str) -> str:
    return f"{prefix}-replay"


def replay_retention_s(retention_s: int) -> int:
    return max(MIN_RETENTION_S, min(MAX_RETENTION_S, retention_s))


def replay_subscription_request(project: str, prefix: str, bus_topic: str,
                                retention_s: int) -> dict[str, Any]:
    """CreateSubscription (google-cloud-pubsub dict form) of the replay subscription."""
    return {
        "name": f"projects/{project}/subscriptions/{replay_subscription(prefix)}",
        "topic": f"projects/{project}/topics/{bus_topic}",
        "retain_acked_messages": True,
        "message_retention_duration": f"{replay_retention_s(retention_s)}s",
        # Never expires: nobody pulls it between replays, which would count as idle.
        "expiration_policy": {},
        "ack_deadline_seconds": 60,
    }
