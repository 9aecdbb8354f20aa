"""The Publisher port on Pub/Sub: events go to the bus topic in binary mode (`ce-*`).

Every message is checked against Pub/Sub's limits before anything is sent, so an event
that can never be published is refused with a clear permanent error instead of failing
half a batch. Messages are published concurrently; when some fail, only those are sent
again (a re-sent event keeps its id, so a duplicate is dropped by the consumer anyway).
`publish` raises `TransientError` for what still fails; `put` hands those events back with
their errors, for callers that report per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from adapters.gcp import pubsub_binding
from adapters.gcp.pubsub_binding import PubSubMessage
from handlers.core.errors import PermanentError, TransientError
from handlers.core.events import Event

_ATTEMPTS: Final = 3
_BACKOFF_S: Final = 0.2
_RESULT_TIMEOUT_S: Final = 30.0
#: What the Pub/Sub API takes in one publish request, topic name and framing included:
#: the client library refuses (synchronously) a message whose request would exceed it,
#: so a message within MAX_MESSAGE_BYTES by data plus attributes can still be too big.
MAX_REQUEST_BYTES: Final = 10 * 1000 * 1000


def request_size(topic: str, message: PubSubMessage) -> int:
    """Bytes of the publish request carrying `message` alone, as the client counts them."""
    from google.pubsub_v1 import types

    request = types.PublishRequest(topic=topic, messages=[types.PubsubMessage(
        data=message.data, attributes=dict(message.attributes))])
    return int(types.PublishRequest.pb(request).ByteSize())


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """An event Pub/Sub did not accept after every attempt, with the last error."""

    event: Event
    error: str


class _Future(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...


class PublisherClient(Protocol):
    """The slice of `google.cloud.pubsub_v1.PublisherClient` this adapter uses."""

    def publish(self, topic: str, data: bytes, ordering_key: str = "",
                **attrs: str) -> _Future: ...


def encode_all(events: Sequence[Event]) -> list[PubSubMessage]:
    """Encode every event, or raise one PermanentError naming every event over a limit."""
    messages: list[PubSubMessage] = []
    problems: list[str] = []
    for event in events:
        message = pubsub_binding.to_message(event)
        problems.extend(f"event '{event.id}': {p}"
                        for p in pubsub_binding.limit_problems(message))
        messages.append(message)
    if problems:
        raise PermanentError("refusing to publish", problems)
    return messages


class PubSubPublisher:
    """Publish events to one topic; `ordering_key` picks a key per event ("" = none).

    Handlers never assume order (failure case 4, docs/failure-cases.md), so the default
    sends no ordering key; a caller that wants per-subject order passes
    `ordering_key=lambda e: e.subject or ""` and a client created with message ordering
    enabled.
    """

    def __init__(self, client: PublisherClient, topic_path: str, *,
                 ordering_key: Callable[[Event], str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._topic = topic_path
        self._ordering_key = ordering_key
        self._sleep = sleep

    def _keys(self, events: Sequence[Event]) -> list[str]:
        return [self._ordering_key(e) if self._ordering_key else "" for e in events]

    def publish(self, events: Sequence[Event]) -> None:
        self.publish_messages(encode_all(events), self._keys(events))

    def put(self, events: Sequence[Event]) -> list[FailedMessage]:
        """Publish `events`; the ones still not accepted after every attempt, with their
        errors (empty when all were). Limits are checked first: a `PermanentError` means
        nothing was sent."""
        errors = self._publish(encode_all(events), self._keys(events))
        return [FailedMessage(events[i], errors[i]) for i in sorted(errors)]

    def publish_messages(self, messages: Sequence[PubSubMessage],
                         keys: Sequence[str] | None = None) -> None:
        errors = self._publish(messages, keys)
        if errors:
            raise TransientError(
                f"{len(errors)} of {len(messages)} messages not accepted by {self._topic} "
                f"after {_ATTEMPTS} attempts: "
                + "; ".join(f"#{i}: {errors[i]}" for i in sorted(errors)))

    def _publish(self, messages: Sequence[PubSubMessage],
                 keys: Sequence[str] | None) -> dict[int, str]:
        """Index -> last error of each message still not accepted after every attempt."""
        too_big = [f"message #{i}{_named(m)} makes a {size}-byte publish request, over "
                   f"Pub/Sub's limit of {MAX_REQUEST_BYTES} bytes"
                   for i, m in enumerate(messages)
                   if (size := request_size(self._topic, m)) > MAX_REQUEST_BYTES]
        if too_big:
            raise PermanentError("refusing to publish; nothing was sent", too_big)
        pending = list(range(len(messages)))
        keys = list(keys) if keys is not None else [""] * len(messages)
        errors: dict[int, str] = {}
        for attempt in range(_ATTEMPTS):
            if attempt:
                self._sleep(_BACKOFF_S * 2 ** (attempt - 1))
            errors = {}
            futures = []
            for i in pending:
                try:
                    futures.append((i, self._client.publish(
                        self._topic, messages[i].data, ordering_key=keys[i],
                        **dict(messages[i].attributes))))
                except Exception as error:  # noqa: BLE001 - refused at once: resend that one
                    errors[i] = f"{type(error).__name__}: {error}"
            for i, future in futures:
                try:
                    future.result(timeout=_RESULT_TIMEOUT_S)
                except Exception as error:  # noqa: BLE001 - any failure: resend that one
                    errors[i] = f"{type(error).__name__}: {error}"
            pending = sorted(errors)
            if not pending:
                break
        return errors


def _named(message: PubSubMessage) -> str:
    event_id = message.attributes.get(pubsub_binding.PREFIX + "id")
    return f" (event '{event_id}')" if event_id else ""
