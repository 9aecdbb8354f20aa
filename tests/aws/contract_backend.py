"""The contract suite's `Backend` on AWS stand-ins: a `MotoStack` driven like Lambda would.

Dead letters are read the way an operator would: the consumers' DLQs (each message's
reason and delivery count are message attributes) and the saga executions that failed
(the NeedsAttention state's cause). Redrive sends each dead-lettered message back to its
consumer's queue once; the DLQ messages are moved into a ledger when listed, so a second
redrive finds nothing to send.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import boto3

from adapters.aws.dynamodb_store import from_dynamo
from adapters.aws.eventbridge_limits import AWS_MAX_ENTRIES
from adapters.aws.eventbridge_publisher import EventBridgePublisher
from adapters.aws.stepfunctions_starter import execution_name
from adapters.aws.topology import KEY_ATTRIBUTE
from handlers.core.app import App
from handlers.core.eventbridge_binding import to_put_events_entry
from handlers.core.events import Event
from handlers.orders import saga_id_for
from tests.aws.moto_stack import REGION, MotoStack
from tests.contract.backends import DeadLetter


@dataclass
class _Dead:
    consumer: str
    body: str
    event_id: str | None
    reason: str
    attempts: int
    redriven: bool = False


class AwsBackend:
    name = "aws"

    def __init__(self, app: App, prefix: str, max_deliveries: int = 3) -> None:
        self.max_deliveries = max_deliveries
        self.stack = MotoStack.create(app, prefix=prefix, max_deliveries=max_deliveries)
        self._exit = ExitStack()
        self._exit.enter_context(self.stack.lambda_service())
        self._ledger: list[_Dead] = []
        self._observed: list[dict[str, Any]] = []

    def _events(self) -> Any:
        # A client per call: producers may publish from several threads at once.
        return boto3.session.Session(region_name=REGION).client("events")

    def publish(self, events: Sequence[Event]) -> None:
        bus = self.stack.names.bus()
        self.publish_entries([to_put_events_entry(e, self.stack.app.catalog, bus)
                              for e in events])

    def publish_entries(self, entries: Sequence[dict[str, Any]]) -> None:
        client, bus = self._events(), self.stack.names.bus()
        for start in range(0, len(entries), AWS_MAX_ENTRIES):
            batch = [{**e, "EventBusName": bus} for e in entries[start:start + AWS_MAX_ENTRIES]]
            assert client.put_events(Entries=batch)["FailedEntryCount"] == 0

    def settle(self) -> None:
        self.stack.run_until_quiet(timeout=120)

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self.stack.item("orders", order_id)

    def available(self, item_id: str) -> int:
        return int((self.stack.item("inventory", item_id) or {}).get("available", 0))

    def _collect(self) -> None:
        for consumer, url in self.stack.dlq_urls.items():
            for message in self.stack.drain(url):
                attributes = {k: v.get("StringValue", "")
                              for k, v in message.get("MessageAttributes", {}).items()}
                event_id = self.stack.event_id(message["Body"])
                attempts = int(attributes.get("receive_count") or
                               self.stack.receives[(consumer, event_id)])
                reason = attributes.get("reason") or \
                    f"moved by the queue's redrive after {attempts} receives"
                self._ledger.append(_Dead(consumer, message["Body"],
                                          None if event_id == "?" else event_id, reason,
                                          attempts))

    def dead_letters(self) -> list[DeadLetter]:
        self._collect()
        dead = [DeadLetter(d.consumer, d.event_id, d.reason, d.attempts)
                for d in self._ledger if not d.redriven]
        sfn = self.stack.client("stepfunctions")
        for execution in sfn.list_executions(stateMachineArn=self.stack.state_machine_arn,
                                             statusFilter="FAILED")["executions"]:
            details = sfn.describe_execution(executionArn=execution["executionArn"])
            dead.append(DeadLetter(f"saga:{self.stack.app.saga.name}", execution["name"],
                                   details.get("cause", ""), 1))
        return dead

    def redrive(self) -> int:
        self._collect()
        sqs = self.stack.client("sqs")
        sent = 0
        for dead in self._ledger:
            if not dead.redriven:
                sqs.send_message(QueueUrl=self.stack.queue_urls[dead.consumer],
                                 MessageBody=dead.body)
                dead.redriven = True
                sent += 1
        return sent

    def deliveries(self, consumer: str, event_id: str) -> int:
        return self.stack.receives[(consumer, event_id)]

    def payments(self) -> list[dict[str, Any]]:
        items = self.stack.scan("payments")
        return [from_dynamo({k: v for k, v in i.items() if k != KEY_ATTRIBUTE}) for i in items]

    def saga_status(self, order_id: str) -> str:
        sfn = self.stack.client("stepfunctions")
        name = execution_name(saga_id_for(order_id))
        found = [e for e in sfn.list_executions(
            stateMachineArn=self.stack.state_machine_arn)["executions"] if e["name"] == name]
        if not found:
            return "absent"
        execution = sfn.describe_execution(executionArn=found[0]["executionArn"])
        if execution["status"] == "SUCCEEDED":
            return str(json.loads(execution["output"])["status"])
        return {"FAILED": "failed", "RUNNING": "running"}.get(execution["status"],
                                                             execution["status"].lower())

    def deliver_batch(self, consumer: str, events: Sequence[Event]) -> list[str]:
        """A batch is what the SQS event source mapping hands the consumer's Lambda: the
        records of one receive (up to 10), answered with `batchItemFailures`; the failed
        messages are left on the queue (visibility reset), the rest deleted."""
        assert len(events) <= 10, "an SQS batch holds at most 10 records"
        self.publish(events)
        sqs, url = self.stack.client("sqs"), self.stack.queue_urls[consumer]
        ids = {e.id for e in events}
        messages: list[dict[str, Any]] = []
        for _ in range(20):  # one receive may return fewer than are waiting
            messages += sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10 - len(messages), AttributeNames=["All"],
                MessageAttributeNames=["All"]).get("Messages", [])
            if len(messages) == len(ids):
                break
        records = [self.stack._record(m, consumer) for m in messages]
        by_message = {r["messageId"]: self.stack.event_id(r["body"]) for r in records}
        assert set(by_message.values()) == ids, f"batch is not the published events: {messages}"
        for event_id in by_message.values():
            self.stack.receives[(consumer, event_id)] += 1
        answer = self.stack.invoke(self.stack.names.function(consumer), {"Records": records})
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [by_message[m] for m in (r["messageId"] for r in records) if m in failed]

    def publish_with_failures(self, events: Sequence[Event], refuse: Sequence[int]
                              ) -> Counter[str]:
        """Through `EventBridgePublisher` (what the functions publish with), on a client
        whose PutEvents answers `InternalFailure` for the refused entries the first time,
        as EventBridge does per entry, and hands the rest to moto's bus."""
        client = _RefusingEvents(self._events())
        publisher = EventBridgePublisher(client, self.stack.names.bus(), self.stack.app.catalog,
                                         sleep=lambda _: None)
        entries = publisher.entries(events)
        client.ids = {e["Detail"]: ev.id for e, ev in zip(entries, events, strict=True)}
        client.refuse = {entries[i]["Detail"] for i in refuse}
        publisher.publish(events)
        return client.sent

    def upload(self, name: str, content: bytes) -> None:
        uploads = next(b.name for b in self.stack.app.buckets if b.events)
        self.stack.client("s3").put_object(Bucket=self.stack.bucket_names[uploads], Key=name,
                                           Body=content, ContentType="text/csv")

    def fire_schedule(self, name: str, scheduled_time: str) -> None:
        from adapters.aws import scheduler

        schedule = next(s for s in self.stack.app.schedules if s.name == name)
        target = scheduler.target(schedule, self.stack.app.catalog, self.stack.bus_arn,
                                  "role", "dlq")
        # What EventBridge Scheduler's universal target does at a firing.
        self.publish_entries([{**target["EventBridgeParameters"],
                               "Detail": scheduler.render(target["Input"], scheduled_time)}])

    def producer(self) -> Any:
        from adapters.aws.runtime import AwsRuntime
        from adapters.aws.settings import Settings

        claims = self.stack.app.claim_check_bucket()
        buckets = {claims.name: self.stack.bucket_names[claims.name]} if claims else {}
        return AwsRuntime(Settings(bus_name=self.stack.names.bus(), buckets=buckets),
                          self.stack.app, self.stack.session).publisher()

    def blob_keys(self, bucket: str) -> list[str]:
        answer = self.stack.client("s3").list_objects_v2(Bucket=self.stack.bucket_names[bucket])
        return sorted(o["Key"] for o in answer.get("Contents", []))

    def published(self, type_: str) -> list[dict[str, Any]]:
        self._observed.extend(self.stack.observed())
        from handlers.core import jsonformat
        from handlers.core.eventbridge_binding import from_eventbridge_event

        out = []
        for body in self._observed:
            try:
                event = from_eventbridge_event(body, self.stack.app.catalog)
            except Exception:  # noqa: BLE001 - SNS notifications share the observer queue
                continue
            if event.type == type_:
                out.append(jsonformat.to_dict(event))
        return out

    def item(self, table: str, key: str) -> dict[str, Any] | None:
        return self.stack.item(table, key)

    def close(self) -> None:
        self._exit.close()


class _RefusingEvents:
    """An EventBridge client that fails chosen PutEvents entries once, counting sends."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.ids: dict[str, str] = {}
        self.refuse: set[str] = set()
        self.sent: Counter[str] = Counter()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        results: list[dict[str, Any] | None] = []
        forward = []
        for entry in Entries:
            self.sent[self.ids[entry["Detail"]]] += 1
            if entry["Detail"] in self.refuse:
                self.refuse.discard(entry["Detail"])
                results.append({"ErrorCode": "InternalFailure",
                                "ErrorMessage": "injected: entry refused once"})
            else:
                results.append(None)
                forward.append(entry)
        accepted = iter(self._client.put_events(Entries=forward)["Entries"] if forward else [])
        merged = [r if r is not None else next(accepted) for r in results]
        return {"FailedEntryCount": sum(1 for r in merged if r.get("ErrorCode")),
                "Entries": merged}
