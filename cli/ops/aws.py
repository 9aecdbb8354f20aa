"""The operations on an AWS stack: SQS dead-letter queues, EventBridge archive replay.

Dead letters are read by receiving them with a visibility timeout (nothing is deleted
by looking; what is not redriven is made visible again at once). Their reason comes from
the message attributes: the Lambda entry's (`reason`, `error_type`, `receive_count`),
EventBridge's when a rule target could not deliver (`ERROR_CODE`, `ERROR_MESSAGE`,
`RETRY_ATTEMPTS`), or none when the queue's own redrive moved a message after
maxReceiveCount. A redrive sends the body back to the consumer's queue, then deletes it
from the DLQ: a crash in between leaves it in both, and the consumer's idempotency record
makes the second delivery a no-op. A discard records each selected letter in the audit
log (`cli.ops.audit`) and then deletes it from its DLQ (SQS DeleteMessage). Replay is
EventBridge's `StartReplay` from the archive, to the rules of the consumers of the
selected types; events that fail again are dead-lettered again (SQS does not deduplicate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from adapters.stack_outputs import AwsConsumer, AwsOutputs
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
from handlers.core.eventbridge_binding import from_eventbridge_event
from handlers.core.jsonformat import to_dict

#: How long listed messages stay invisible to others while one command looks at them.
LEASE_S: Final = 30
_RECENT: Final = 5
_MAX_LETTERS: Final = 10_000
_EMPTY_POLLS: Final = 3
#: EventBridge's attributes on a message its target could not deliver.
_EB_ERROR: Final = ("ERROR_CODE", "ERROR_MESSAGE")


class AwsOps:
    def __init__(self, outputs: AwsOutputs, app: App, client: Callable[[str], Any]) -> None:
        self.outputs = outputs
        self.app = app
        self._client = client

    @classmethod
    def connect(cls, outputs: AwsOutputs, app: App) -> AwsOps:
        import boto3

        session = boto3.session.Session(region_name=outputs.region)
        return cls(outputs, app, session.client)

    def _consumers(self, selection: Selection) -> list[AwsConsumer]:
        names = selection.consumers([c.name for c in self.outputs.consumers])
        return [c for c in self.outputs.consumers if c.name in names]

    @staticmethod
    def _dlq_urls(consumer: AwsConsumer) -> list[str]:
        urls = [consumer.dlq_url]
        if consumer.target_dlq_url and consumer.target_dlq_url not in urls:
            urls.append(consumer.target_dlq_url)
        return urls

    # --- dead letters ----------------------------------------------------------------

    def _receive_all(self, url: str) -> list[dict[str, Any]]:
        """Every message in a queue, leased for `LEASE_S` (receives until none is left)."""
        sqs = self._client("sqs")
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        empty = 0
        # Short polls sample a subset of SQS's servers and may come back empty while
        # messages wait elsewhere: only a few empty answers in a row mean "none left".
        while len(out) < _MAX_LETTERS and empty < _EMPTY_POLLS:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=LEASE_S,
                AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                empty += 1
                continue
            empty = 0
            seen.update(m["MessageId"] for m in fresh)
            out.extend(fresh)
        return out

    def _release(self, url: str, messages: Sequence[dict[str, Any]]) -> None:
        """Make leased messages visible again at once (looking loses nothing)."""
        sqs = self._client("sqs")
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)])

    def _letter(self, consumer: str, url: str, message: dict[str, Any]) -> DeadLetter:
        attributes = {k: v.get("StringValue") for k, v in
                      message.get("MessageAttributes", {}).items()}
        system = message.get("Attributes", {})
        event: Any = message["Body"]
        event_id = type_ = None
        try:
            decoded = from_eventbridge_event(json.loads(message["Body"]), self.app.catalog)
            event, event_id, type_ = to_dict(decoded), decoded.id, decoded.type
        except (ValueError, PermanentError):
            pass
        if "reason" in attributes:
            reason = str(attributes["reason"])
            attempts = attributes.get("receive_count")
        elif any(k in attributes for k in _EB_ERROR):
            reason = (f"EventBridge could not deliver to the queue: "
                      f"{attributes.get('ERROR_CODE')}: {attributes.get('ERROR_MESSAGE')}")
            attempts = attributes.get("RETRY_ATTEMPTS")
        else:
            reason = "moved by the queue's redrive policy after maxReceiveCount receives " \
                     "(the function crashed or timed out)"
            attempts = None
        sent = system.get("SentTimestamp")
        return DeadLetter(
            consumer=consumer, event_id=event_id, type=type_, reason=reason,
            attempts=int(attempts) if attempts and str(attempts).isdigit() else None,
            location=url, event=event,
            failed_at=datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat() if sent else None,
            details={"message_id": message["MessageId"], "attributes": attributes,
                     "receive_count": system.get("ApproximateReceiveCount")})

    def _leased(self, selection: Selection
                ) -> list[tuple[str, str, list[dict[str, Any]], list[DeadLetter]]]:
        out = []
        for consumer in self._consumers(selection):
            for url in self._dlq_urls(consumer):
                messages = self._receive_all(url)
                out.append((consumer.name, url, messages,
                            [self._letter(consumer.name, url, m) for m in messages]))
        return out

    def dead_letters(self, selection: Selection) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for _, url, messages, letters in self._leased(selection):
            self._release(url, messages)
            found.extend(letter for letter in letters if selection.matches(letter))
        return found

    def redrive(self, selection: Selection, dry_run: bool = False) -> RedriveResult:
        sqs = self._client("sqs")
        queue_of = {c.name: c.queue_url for c in self.outputs.consumers}
        redriven: list[DeadLetter] = []
        failed: list[tuple[DeadLetter, str]] = []
        for consumer, url, messages, letters in self._leased(selection):
            keep = []
            for message, letter in zip(messages, letters, strict=True):
                if dry_run or not selection.matches(letter):
                    keep.append(message)
                    if selection.matches(letter):
                        redriven.append(letter)
                    continue
                try:
                    # The body exactly as EventBridge delivered it; our dead-letter
                    # attributes are not carried back.
                    sqs.send_message(QueueUrl=queue_of[consumer], MessageBody=message["Body"])
                    self._delete(url, message)
                except Exception as error:  # noqa: BLE001 - report it, keep the rest going
                    failed.append((letter, f"{type(error).__name__}: {error}"))
                    keep.append(message)
                    continue
                redriven.append(letter)
            self._release(url, keep)
        return RedriveResult(redriven, failed, dry_run)

    def discard(self, selection: Selection, by: str, audit: AuditLog | None = None,
                dry_run: bool = False) -> DiscardResult:
        if audit is None and not dry_run:
            raise OpsError("discarding on a deployed stack needs an audit log to record "
                           "what is deleted")
        discarded: list[DeadLetter] = []
        failed: list[tuple[DeadLetter, str]] = []
        leased = self._leased(selection)
        for index, (_, url, messages, letters) in enumerate(leased):
            chosen = [(m, d) for m, d in zip(messages, letters, strict=True)
                      if selection.matches(d)]
            keep = [m for m, d in zip(messages, letters, strict=True)
                    if not selection.matches(d)]
            if dry_run or not chosen:
                discarded.extend(d for _, d in chosen)
                self._release(url, keep + [m for m, _ in chosen])
                continue
            assert audit is not None
            try:
                audit.record([d for _, d in chosen], by, "discarded")  # before any delete
            except OpsError:
                # Every queue was leased up front: hand back this one and the rest now,
                # not when the lease runs out.
                for _, other_url, other_messages, _ in leased[index:]:
                    self._release(other_url, other_messages)
                raise
            for message, letter in chosen:
                try:
                    self._delete(url, message)
                except Exception as error:  # noqa: BLE001 - report it, keep the rest going
                    reason = f"{type(error).__name__}: {error}"
                    failed.append((letter, reason))
                    audit.record([letter], by, "failed", reason)
                    keep.append(message)
                    continue
                discarded.append(letter)
            self._release(url, keep)
        return DiscardResult(discarded, failed, dry_run,
                             audit.location if audit is not None else "")

    def _delete(self, url: str, message: dict[str, Any]) -> None:
        self._client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    # --- status ----------------------------------------------------------------------

    def _depth(self, url: str) -> tuple[int, int]:
        attributes = self._client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def status(self) -> list[ConsumerStatus]:
        out = []
        for consumer in self.outputs.consumers:
            backlog, in_flight = self._depth(consumer.queue_url)
            dead = sum(sum(self._depth(url)) for url in self._dlq_urls(consumer))
            recent: list[str] = []
            if dead:
                letters = self.dead_letters(Selection(consumer=consumer.name))
                letters.sort(key=lambda d: d.failed_at or "", reverse=True)
                recent = [f"{d.type or '?'} {d.event_id or '?'}: {d.reason}"
                          for d in letters[:_RECENT]]
            out.append(ConsumerStatus(consumer.name, backlog, in_flight, dead, recent))
        return out

    # --- replay ----------------------------------------------------------------------

    def replay(self, start: datetime, end: datetime, types: Sequence[str] = (),
               dry_run: bool = False, wait_s: float = 600.0) -> ReplayResult:
        if start > end:
            raise OpsError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
        rules = self._rules_for(types)
        name = f"{self.outputs.prefix}-{int(time.time())}"[:64]
        destination: dict[str, Any] = {"Arn": self.outputs.bus_arn}
        if rules is not None:
            destination["FilterArns"] = rules
        request = {"ReplayName": name, "EventSourceArn": self.outputs.archive_arn,
                   "EventStartTime": start, "EventEndTime": end, "Destination": destination,
                   "Description": "switchyard replay" + (f" of {', '.join(types)}"
                                                         if types else "")}
        window = f"{start.isoformat()} .. {end.isoformat()}"
        to = "every rule" if rules is None else f"rules {', '.join(rules)}"
        if dry_run:
            return ReplayResult(f"would start replay {name} of archive "
                                f"{self.outputs.archive_name} for {window} to {to}", None, True,
                                {"request": {**request, "EventStartTime": start.isoformat(),
                                             "EventEndTime": end.isoformat()}})
        events = self._client("events")
        events.start_replay(**request)
        deadline = time.monotonic() + wait_s
        state = events.describe_replay(ReplayName=name)
        while state["State"] in ("STARTING", "RUNNING") and time.monotonic() < deadline:
            time.sleep(2)
            state = events.describe_replay(ReplayName=name)
        if state["State"] == "FAILED":
            raise OpsError(f"replay {name} failed: {state.get('StateReason', 'no reason')}")
        return ReplayResult(f"replay {name} of {window} to {to}: {state['State']}", None,
                            False, {"replay": name, "state": state["State"]})

    def _rules_for(self, types: Sequence[str]) -> list[str] | None:
        """Rule ARNs of the consumers of `types` (None: every rule). EventBridge replays
        to rules, so a consumer of one selected type also gets its other archived types
        of the window: harmless, it has processed them already."""
        if not types:
            return None
        unknown = [t for t in types if self.app.catalog.get(t) is None]
        if unknown:
            raise OpsError(f"unknown event type(s): {', '.join(unknown)}")
        wanted = {c.name for t in types for c in self.app.routes(t)}
        if not wanted:
            raise OpsError(f"no consumer consumes {', '.join(types)}: nothing to replay")
        rules = [c.rule_arn for c in self.outputs.consumers if c.name in wanted]
        if not all(rules):
            raise OpsError("the stack outputs name no rule ARNs (ruleArn): redeploy, or "
                           "replay without --type")
        return sorted(r for r in rules if r)
