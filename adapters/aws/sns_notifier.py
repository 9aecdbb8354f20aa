"""The Notifier port on SNS: one message per notification, its id as a message attribute.

SNS delivers at least once, and the engine may re-notify after a crash, so the id travels
with the message (`notification_id` attribute and in the body) for subscribers to drop
duplicates. A failed publish is a `TransientError`: the delivery is retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from handlers.core.errors import TransientError

#: SNS subjects are at most 100 printable ASCII characters, no line breaks.
_SUBJECT_MAX: Final = 100


def _subject(message: Mapping[str, Any]) -> str | None:
    raw = message.get("subject")
    if not isinstance(raw, str) or not raw:
        return None
    cleaned = "".join(c if 32 <= ord(c) < 127 else " " for c in raw).strip()
    return cleaned[:_SUBJECT_MAX] or None


class SnsNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self._topic = topic_arn

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        request: dict[str, Any] = {
            "TopicArn": self._topic,
            "Message": json.dumps({"notification_id": notification_id, **message},
                                  sort_keys=True, default=str),
            "MessageAttributes": {
                "notification_id": {"DataType": "String", "StringValue": notification_id},
                "channel": {"DataType": "String",
                            "StringValue": str(message.get("channel") or "log")},
            },
        }
        subject = _subject(message)
        if subject:
            request["Subject"] = subject
        try:
            self._client.publish(**request)
        except Exception as error:
            raise TransientError(f"SNS publish of notification {notification_id!r} failed: "
                                 f"{error}") from error
