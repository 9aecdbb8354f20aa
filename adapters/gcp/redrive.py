"""List and redrive dead letters: pull a consumer's dead-letter subscription, put each
message back on the bus as it was first published, ack it only once the bus has it.

Redrive is idempotent: the message keeps its CloudEvent id, so a consumer that already
handled it drops it as a duplicate, and a crash between publish and ack only causes one
more (harmless) duplicate. What this adapter and Pub/Sub added when dead-lettering (the
reason, the consumer, CloudPubSubDeadLetter*) is stripped on the way back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.pubsub_publisher import PubSubPublisher

#: Attributes added to a message the entry dead-letters itself (Pub/Sub adds its own
#: CloudPubSubDeadLetter* attributes when it dead-letters after maxDeliveries).
REASON_ATTRIBUTE: Final = "switchyard-reason"
CONSUMER_ATTRIBUTE: Final = "switchyard-consumer"
FAILED_AT_ATTRIBUTE: Final = "switchyard-failed-at"
_ADDED_PREFIXES: Final = ("switchyard-", "CloudPubSubDeadLetter")
PLATFORM_COUNT: Final = "CloudPubSubDeadLetterSourceDeliveryCount"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    ack_id: str
    message: PubSubMessage
    reason: str  # ours, or "exceeded maxDeliveries (N attempts)" when Pub/Sub moved it


def original(message: PubSubMessage) -> PubSubMessage:
    """The message as first published (dead-letter attributes removed)."""
    return PubSubMessage(message.data, {k: v for k, v in message.attributes.items()
                                        if not k.startswith(_ADDED_PREFIXES)})


def reason_of(attributes: Mapping[str, str]) -> str:
    if REASON_ATTRIBUTE in attributes:
        return attributes[REASON_ATTRIBUTE]
    count = attributes.get(PLATFORM_COUNT)
    return f"exceeded maxDeliveries ({count} attempts)" if count else "unknown"


def pull(subscriber: Any, subscription: str, max_messages: int = 100) -> list[DeadLetter]:
    """Dead letters waiting on `subscription` (leased, not acked: listing loses nothing)."""
    response = subscriber.pull(request={"subscription": subscription,
                                        "max_messages": max_messages}, timeout=10)
    return [DeadLetter(m.ack_id, PubSubMessage(m.message.data, dict(m.message.attributes)),
                       reason_of(m.message.attributes)) for m in response.received_messages]


def redrive(subscriber: Any, subscription: str, bus: PubSubPublisher,
            letters: Sequence[DeadLetter]) -> int:
    """Republish `letters` to the bus, then ack them; returns how many went back."""
    if not letters:
        return 0
    bus.publish_messages([original(letter.message) for letter in letters])
    subscriber.acknowledge(request={"subscription": subscription,
                                    "ack_ids": [letter.ack_id for letter in letters]})
    return len(letters)
