"""The operations on a GCP stack: dead-letter pull subscriptions, replay by seek.

Dead letters are pulled from each consumer's dead-letter subscription and, unless
redriven, handed back at once (ack deadline 0): listing loses nothing. A redrive
republishes each selected message to the bus as first published (`adapters.gcp.redrive`
strips what dead-lettering added) and acks it only after the bus accepted it; the rest
are handed back. A discard records each selected letter in the audit log
(`cli.ops.audit`), then acks it on the dead-letter subscription, which removes it.
Replay seeks the stack's replay subscription (a pull subscription on the bus that retains
acked messages) to `--from`, pulls the window, and republishes what was published in it,
marked with `REPLAY_ATTRIBUTE` so a later replay skips the copies; events that fail
again are dead-lettered again (Pub/Sub does not deduplicate dead letters).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from adapters.gcp import redrive as dead_letters
from adapters.gcp.pubsub_binding import PubSubMessage, from_message
from adapters.gcp.pubsub_publisher import PubSubPublisher
from adapters.gcp.replay import REPLAY_ATTRIBUTE
from adapters.gcp.topology import subscription_path, topic_path
from adapters.stack_outputs import GcpOutputs
from cli.ops.model import (
    AuditLog,
    ConsumerStatus,
    DeadLetter,
    DiscardResult,
    OpsError,
    RedriveResult,
    ReplayResult,
    Selection,
)
from handlers.core.app import App
from handlers.core.errors import PermanentError
from handlers.core.jsonformat import to_dict

_MAX_MESSAGES: Final = 100_000
_EMPTY_PULLS: Final = 2
_EMPTY_PAUSE_S: Final = 0.05
_RECENT: Final = 5
BACKLOG_NOTE: Final = ("backlog of push subscriptions: Cloud Monitoring metric "
                       "pubsub.googleapis.com/subscription/num_undelivered_messages")


def _describe(message: PubSubMessage) -> tuple[Any, str | None, str | None]:
    """(event dict or raw text, event id, type) of a message, as well as it decodes."""
    try:
        event = from_message(message.data, message.attributes)
    except (PermanentError, ValueError):
        return (message.data.decode(errors="replace"), message.attributes.get("ce-id"),
                message.attributes.get("ce-type"))
    return to_dict(event), event.id, event.type


class GcpOps:
    def __init__(self, outputs: GcpOutputs, app: App, subscriber: Any, publisher: Any) -> None:
        self.outputs = outputs
        self.app = app
        self._subscriber = subscriber
        self._bus = PubSubPublisher(publisher, topic_path(outputs.project, outputs.bus_topic))

    @classmethod
    def connect(cls, outputs: GcpOutputs, app: App) -> GcpOps:
        # google.cloud is a namespace package shared with typed Firestore: mypy looks
        # for pubsub_v1 (which ships no types) as an attribute of it, not a module.
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        return cls(outputs, app, pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient())

    def _path(self, subscription: str) -> str:
        return subscription_path(self.outputs.project, subscription)

    # --- pulling -----------------------------------------------------------------------

    def _pull_all(self, subscription: str) -> list[Any]:
        """Every message waiting on a pull subscription, leased (received messages)."""
        out: list[Any] = []
        seen: set[str] = set()
        empty = 0
        while len(out) < _MAX_MESSAGES and empty < _EMPTY_PULLS:
            # return_immediately: a blocking pull waits out its deadline on an empty
            # subscription; an immediate one may come back empty while messages are
            # still on their way, hence a few empty answers in a row before "none left".
            # (Deprecated for consumers, whose throughput it hurts; an operator's one-off
            # look at a dead-letter queue is the case it still fits.)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                response = self._subscriber.pull(request={
                    "subscription": subscription, "max_messages": 1000,
                    "return_immediately": True}, timeout=30)
            fresh = [m for m in response.received_messages if m.ack_id not in seen]
            if not fresh:
                empty += 1
                time.sleep(_EMPTY_PAUSE_S * empty)
                continue
            empty = 0
            seen.update(m.ack_id for m in fresh)
            out.extend(fresh)
        return out

    def _hand_back(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for start in range(0, len(ack_ids), 1000):
            self._subscriber.modify_ack_deadline(request={
                "subscription": subscription, "ack_ids": list(ack_ids[start:start + 1000]),
                "ack_deadline_seconds": 0})

    def _ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for start in range(0, len(ack_ids), 1000):
            self._subscriber.acknowledge(request={
                "subscription": subscription, "ack_ids": list(ack_ids[start:start + 1000])})

    # --- dead letters ------------------------------------------------------------------

    def _letter(self, consumer: str, subscription: str, received: Any) -> tuple[
            DeadLetter, dead_letters.DeadLetter]:
        attributes = dict(received.message.attributes)
        raw = dead_letters.DeadLetter(received.ack_id,
                                      PubSubMessage(received.message.data, attributes),
                                      dead_letters.reason_of(attributes))
        event, event_id, type_ = _describe(dead_letters.original(raw.message))
        count = attributes.get(dead_letters.PLATFORM_COUNT)
        failed_at = attributes.get(dead_letters.FAILED_AT_ATTRIBUTE) or _iso(
            received.message.publish_time)
        return DeadLetter(
            consumer=consumer, event_id=event_id, type=type_, reason=raw.reason,
            attempts=int(count) if count and count.isdigit() else None, location=subscription,
            failed_at=failed_at, event=event,
            details={"message_id": received.message.message_id, "attributes": attributes}), raw

    def _leased(self, selection: Selection) -> list[tuple[str, list[tuple[
            DeadLetter, dead_letters.DeadLetter]]]]:
        names = selection.consumers([c.name for c in self.outputs.consumers])
        out = []
        for consumer in self.outputs.consumers:
            if consumer.name not in names:
                continue
            path = self._path(consumer.dead_letter_subscription)
            out.append((path, [self._letter(consumer.name, path, m)
                               for m in self._pull_all(path)]))
        return out

    def dead_letters(self, selection: Selection) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for path, letters in self._leased(selection):
            self._hand_back(path, [raw.ack_id for _, raw in letters])
            found.extend(letter for letter, _ in letters if selection.matches(letter))
        return found

    def redrive(self, selection: Selection, dry_run: bool = False) -> RedriveResult:
        redriven: list[DeadLetter] = []
        failed: list[tuple[DeadLetter, str]] = []
        for path, letters in self._leased(selection):
            chosen = [(letter, raw) for letter, raw in letters if selection.matches(letter)]
            others = [raw.ack_id for letter, raw in letters if not selection.matches(letter)]
            if dry_run:
                others += [raw.ack_id for _, raw in chosen]
                redriven.extend(letter for letter, _ in chosen)
            elif chosen:
                try:
                    # Publishes every chosen message, then acks them: never ack first.
                    dead_letters.redrive(self._subscriber, path, self._bus,
                                         [raw for _, raw in chosen])
                    redriven.extend(letter for letter, _ in chosen)
                except Exception as error:  # noqa: BLE001 - they stay dead-lettered
                    failed.extend((letter, f"{type(error).__name__}: {error}")
                                  for letter, _ in chosen)
                    others += [raw.ack_id for _, raw in chosen]
            self._hand_back(path, others)
        return RedriveResult(redriven, failed, dry_run)

    def discard(self, selection: Selection, by: str, audit: AuditLog | None = None,
                dry_run: bool = False) -> DiscardResult:
        if audit is None and not dry_run:
            raise OpsError("discarding on a deployed stack needs an audit log to record "
                           "what is deleted")
        discarded: list[DeadLetter] = []
        failed: list[tuple[DeadLetter, str]] = []
        leased = self._leased(selection)
        for index, (path, letters) in enumerate(leased):
            chosen = [(letter, raw) for letter, raw in letters if selection.matches(letter)]
            others = [raw.ack_id for letter, raw in letters if not selection.matches(letter)]
            if dry_run or not chosen:
                discarded.extend(letter for letter, _ in chosen)
                self._hand_back(path, others + [raw.ack_id for _, raw in chosen])
                continue
            assert audit is not None
            try:
                audit.record([letter for letter, _ in chosen], by, "discarded")
            except OpsError:
                # Every subscription was pulled up front: hand them all back now.
                for other_path, other_letters in leased[index:]:
                    self._hand_back(other_path, [raw.ack_id for _, raw in other_letters])
                raise
            try:
                # Acking a dead-letter subscription's message is what deletes it.
                self._ack(path, [raw.ack_id for _, raw in chosen])
                discarded.extend(letter for letter, _ in chosen)
            except Exception as error:  # noqa: BLE001 - they stay dead-lettered
                reason = f"{type(error).__name__}: {error}"
                failed.extend((letter, reason) for letter, _ in chosen)
                audit.record([letter for letter, _ in chosen], by, "failed", reason)
                others += [raw.ack_id for _, raw in chosen]
            self._hand_back(path, others)
        return DiscardResult(discarded, failed, dry_run,
                             audit.location if audit is not None else "")

    # --- status ------------------------------------------------------------------------

    def status(self) -> list[ConsumerStatus]:
        out = []
        for path, letters in self._leased(Selection()):
            self._hand_back(path, [raw.ack_id for _, raw in letters])
            consumer = letters[0][0].consumer if letters else self._consumer_of(path)
            ordered = sorted((letter for letter, _ in letters),
                             key=lambda d: d.failed_at or "", reverse=True)
            out.append(ConsumerStatus(
                consumer, None, None, len(letters),
                [f"{d.type or '?'} {d.event_id or '?'}: {d.reason}" for d in ordered[:_RECENT]],
                note=BACKLOG_NOTE))
        return out

    def _consumer_of(self, path: str) -> str:
        return next(c.name for c in self.outputs.consumers
                    if self._path(c.dead_letter_subscription) == path)

    # --- replay ------------------------------------------------------------------------

    def replay(self, start: datetime, end: datetime, types: Sequence[str] = (),
               dry_run: bool = False) -> ReplayResult:
        if start > end:
            raise OpsError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
        unknown = [t for t in types if self.app.catalog.get(t) is None]
        if unknown:
            raise OpsError(f"unknown event type(s): {', '.join(unknown)}")
        from google.protobuf import timestamp_pb2

        path = self._path(self.outputs.replay_subscription)
        when = timestamp_pb2.Timestamp()
        when.FromDatetime(start.astimezone(UTC).replace(tzinfo=None))
        self._subscriber.seek(request={"subscription": path, "time": when})
        name = f"replay-{int(time.time())}"
        selected: list[PubSubMessage] = []
        in_window: list[str] = []
        later: list[str] = []
        skipped = 0
        for received in self._pull_all(path):
            message = received.message
            published = message.publish_time
            if published.tzinfo is None:
                published = published.replace(tzinfo=UTC)
            if published > end:
                later.append(received.ack_id)
                continue
            in_window.append(received.ack_id)
            attributes = dict(message.attributes)
            _, _, type_ = _describe(PubSubMessage(message.data, attributes))
            if REPLAY_ATTRIBUTE in attributes or (types and type_ not in types):
                skipped += 1
                continue
            selected.append(PubSubMessage(message.data,
                                          {**attributes, REPLAY_ATTRIBUTE: name}))
        window = f"{start.isoformat()} .. {end.isoformat()}"
        details = {"replay": name, "selected": len(selected), "skipped": skipped,
                   "after_window": len(later)}
        if dry_run:
            self._hand_back(path, in_window + later)
            return ReplayResult(f"would republish {len(selected)} messages from {window}",
                                len(selected), True, details)
        try:
            if selected:
                self._bus.publish_messages(selected)
        except Exception:
            self._hand_back(path, in_window + later)
            raise
        # Acked messages stay retained on the replay subscription for the next seek.
        self._ack(path, in_window)
        self._hand_back(path, later)
        return ReplayResult(f"republished {len(selected)} messages from {window} "
                            f"({skipped} skipped: other types or earlier replays)",
                            len(selected), False, details)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
