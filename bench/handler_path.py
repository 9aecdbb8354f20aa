"""Figure 5: CPU per event of the handler path through each cloud adapter, and its store ops.

The real adapter entry decodes a real delivery (an SQS record carrying the EventBridge
event on AWS, a Pub/Sub push envelope on GCP), runs the engine and the handler, and
writes through in-memory ports, so what is timed is our code and nothing on a network.
The baseline, measured in the same run, is the engine and handler alone on already
decoded events: the difference is what the adapter costs.

The store is wrapped to count reads, writes and transactions per event; `switchyard
cost` prices those counts, so its per-event database usage is measured, not assumed.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.memory import MemoryStore, memory_ports
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED, NOTIFICATION_SENT, ORDER_CREATED
from handlers.core.engine import handle
from handlers.core.events import Event
from handlers.core.ports import Op, Ports

#: The consumers' share of deliveries in this workload (one of each, round robin).
CONSUMER_OF = {ORDER_CREATED: "orders", INVENTORY_UPDATED: "inventory",
               NOTIFICATION_SENT: "notifications"}


@dataclass
class CountingStore(MemoryStore):
    """A MemoryStore that counts what a cloud database would bill."""

    reads: int = 0
    writes: int = 0
    transactions: int = 0
    # Writes inside multi-item transactions: DynamoDB bills them twice (TransactWriteItems)
    # and Firestore reads each such document in the transaction first.
    transactional_writes: int = 0
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        MemoryStore.__init__(self)

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        self.reads += 1
        return super().get(table, key)

    def transact(self, ops: Sequence[Op]) -> bool:
        self.transactions += 1
        self.writes += len(ops)
        if len(ops) > 1:
            self.transactional_writes += len(ops)
        return super().transact(ops)


def _ports() -> tuple[Ports, CountingStore]:
    base = memory_ports()
    store = CountingStore()
    from handlers.payments import SimulatedPaymentGateway

    ports = Ports(store=store, publisher=base.publisher, notifier=base.notifier,
                  sagas=base.sagas, clock=base.clock,
                  payments=SimulatedPaymentGateway(store, base.clock, 100_000))
    return ports, store


def workload(n: int, tag: str) -> list[Event]:
    """`n` valid events, a third each for orders, inventory and notifications."""
    events: list[Event] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            events.append(Event.new("orders", ORDER_CREATED, {
                "order_id": f"{tag}-{i}", "customer_id": f"c{i % 97}",
                "items": [{"item_id": f"item-{i % 50}", "quantity": 1, "price": 10.0}],
                "total": 10.0}))
        elif kind == 1:
            events.append(Event.new("inventory", INVENTORY_UPDATED, {
                "item_id": f"item-{i % 50}", "quantity": 5, "action": "restock"}))
        else:
            events.append(Event.new("notifications", NOTIFICATION_SENT, {
                "recipient": f"ops-{i % 13}", "channel": "log", "message": f"notice {i}"}))
    return events


def _aws_runner(events: list[Event]) -> tuple[Callable[[], None], CountingStore]:
    from adapters.aws import lambda_entry
    from adapters.aws.runtime import AwsRuntime, reset_runtime
    from adapters.aws.settings import Settings
    from handlers.core.eventbridge_binding import to_put_events_entry

    ports, store = _ports()
    runtimes = {}
    for consumer in CONSUMER_OF.values():
        rt = AwsRuntime(Settings(consumer=consumer, max_deliveries=5), app=APP)
        rt.__dict__["ports"] = ports  # cached_property: the memory ports replace AWS clients
        rt.__dict__["store"] = store
        runtimes[consumer] = rt
    batches = []
    for n, event in enumerate(events):
        entry = to_put_events_entry(event, APP.catalog)
        delivered = {"version": "0", "id": f"eb-{n}", "detail-type": entry["DetailType"],
                     "source": entry["Source"], "account": "123456789012",
                     "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
                     "detail": json.loads(entry["Detail"])}
        record = {"messageId": f"m-{n}", "body": json.dumps(delivered),
                  "attributes": {"ApproximateReceiveCount": "1"}}
        batches.append((runtimes[CONSUMER_OF[event.type]], {"Records": [record]}))

    def run() -> None:
        for rt, batch in batches:
            reset_runtime(rt)
            answer = lambda_entry.sqs_handler(batch)
            if answer.get("batchItemFailures"):
                raise AssertionError(f"bench event failed on AWS: {answer}")
        reset_runtime(None)

    return run, store


def _gcp_runner(events: list[Event]) -> tuple[Callable[[], None], CountingStore]:
    from adapters.gcp import entry
    from adapters.gcp.pubsub_binding import push_envelope, to_message
    from adapters.gcp.settings import Settings

    ports, store = _ports()
    runtimes = {
        consumer: entry.Runtime(APP, Settings(project="bench", consumer=consumer), ports,
                                None, ports.publisher)
        for consumer in CONSUMER_OF.values()
    }
    deliveries = []
    for n, event in enumerate(events):
        body = json.dumps(push_envelope(to_message(event), message_id=str(n),
                                        attempt=1)).encode()
        deliveries.append((runtimes[CONSUMER_OF[event.type]], body))
    headers = {"Content-Type": "application/json"}

    def run() -> None:
        for rt, body in deliveries:
            answer, status = entry.process_push(rt, headers, body)
            if status >= 300:
                raise AssertionError(f"bench event failed on GCP: {status} {answer}")

    return run, store


def _baseline_runner(events: list[Event]) -> tuple[Callable[[], None], CountingStore]:
    ports, store = _ports()

    def run() -> None:
        for event in events:
            handle(APP, CONSUMER_OF[event.type], event, ports)

    return run, store


RUNNERS: Mapping[str, Callable[[list[Event]], tuple[Callable[[], None], CountingStore]]] = {
    "engine only": _baseline_runner,
    "aws": _aws_runner,
    "gcp": _gcp_runner,
}


def measure(events_per_run: int = 600, repeats: int = 5) -> dict[str, dict[str, float]]:
    """Median CPU microseconds per event, and store ops per event, for each runner."""
    logging.disable(logging.CRITICAL)  # the entries log every delivery; not what is timed
    try:
        samples: dict[str, list[float]] = {name: [] for name in RUNNERS}
        counts: dict[str, dict[str, float]] = {}
        # Round-robin: each repeat runs every runner once, so drift in the machine's load
        # (other processes, frequency changes) hits all of them alike.
        for r in range(repeats + 1):
            for name, build in RUNNERS.items():
                events = workload(events_per_run, f"{name}-{r}")
                run, store = build(events)
                started = time.process_time()
                run()
                elapsed = time.process_time() - started
                if r == 0:
                    continue  # warm-up: first-use imports and caches
                samples[name].append(elapsed / events_per_run * 1e6)
                counts[name] = {
                    "reads": store.reads / events_per_run,
                    "writes": store.writes / events_per_run,
                    "transactions": store.transactions / events_per_run,
                    "transactional_writes": store.transactional_writes / events_per_run}
        base = samples["engine only"]
        # Each round's ratio to the engine alone in that same round, then their median:
        # steadier under a loaded machine than a ratio of two medians.
        return {name: {"cpu_us": statistics.median(samples[name]),
                       "ratio": statistics.median(a / b for a, b in
                                                  zip(samples[name], base, strict=True)),
                       **counts[name]}
                for name in RUNNERS}
    finally:
        logging.disable(logging.NOTSET)
