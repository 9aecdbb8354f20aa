"""The Notifier port on Pub/Sub: the notifications topic is the SNS counterpart.

The message is the notification as JSON; the `notification_id` attribute lets every
subscriber drop duplicates (delivery is at least once, and a redelivered notification
event re-notifies with the same id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.pubsub_publisher import PubSubPublisher

ID_ATTRIBUTE: Final = "notification_id"


class PubSubNotifier:
    def __init__(self, publisher: PubSubPublisher) -> None:
        self._publisher = publisher

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        body = json.dumps(dict(message), sort_keys=True, separators=(",", ":")).encode()
        self._publisher.publish_messages([PubSubMessage(
            body, {ID_ATTRIBUTE: notification_id, "content-type": "application/json"})])
