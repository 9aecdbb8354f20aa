"""The contract suite's `Backend` on Google's emulators, hosting any app in-process.

Real (Google's own emulators and our real adapter code):

- Pub/Sub: the bus, notification and dead-letter topics and subscriptions are created from
  `adapters.gcp.topology` (the generator the stack deploys), including each route's
  `dead_letter_policy` (max_delivery_attempts = the stack's, 5 at least) and
  `retry_policy` (backoff shortened to 0 s; the emulator still spaces redeliveries by
  about 2 s). The emulator counts delivery attempts (`deliveryAttempt`) and moves a
  message to the dead-letter topic itself once they are exhausted. The functions are
  told the limit (`SWITCHYARD_MAX_DELIVERIES`), so a consumer whose last attempt fails
  dead-letters the message itself with the last error as its reason (Pub/Sub's move, the
  backstop, would carry only the count); permanent failures go there at once with their
  reason; redrive is `adapters.gcp.redrive`.
- Firestore: `FirestoreStore` on the Firestore emulator (real `create()` conflicts and
  transactions).
- Functions: each consumer's delivery goes through `adapters.gcp.entry.process_push`, each
  saga step through `entry.process_step`, seeds through `entry.process_ingest`; ports are
  composed as `entry.runtime()` composes them (one runtime per function, with the settings
  the stack gives that function).
- Sagas: the workflow compiled from the hosted app's saga (`adapters.gcp.workflows`) runs
  on workflows-emulator, calling this backend's step endpoint over HTTP; executions are
  created by the real `WorkflowsSagaStarter` / `RestExecutionsApi`.

- Sources: buckets get the names the stack gives them (`buckets.bucket_name`); each
  function gets the stack's SWITCHYARD_BUCKETS and its blob store and claim-checking bus
  publisher from `entry._storage`. `upload` is a JSON API upload, and the uploads
  bucket's notification (as infra/gcp/sources.py configures it) publishes Cloud
  Storage's `OBJECT_FINALIZE` message on the bus; `fire_schedule` publishes the Cloud
  Scheduler job's message (`storage_events.scheduler_message`). `published` reads an
  observer subscription on the bus that the stack does not have.

Driven (what the emulators cannot do here):

- Cloud Storage: the gcloud SDK has no emulator; `tests.gcp.gcs_server` serves the JSON
  API calls used, over HTTP, and publishes the notifications on the Pub/Sub emulator.
- Scheduler publish time: the emulator stamps publishTime with the wall clock, Cloud
  Scheduler publishes at the firing time; the push driver hands a firing over with the
  publishTime it would have had (see `fire_schedule`).

- Push delivery: functions run in this process (so fault variants of the app can be
  hosted without one server per variant), so the consumer subscriptions are pull
  subscriptions with the same policies, and `settle()` plays the push endpoint: it pulls,
  hands each message to the entry in the exact push envelope Pub/Sub POSTs (with
  `deliveryAttempt`), acks on a 102/200/201/202/204 answer and otherwise nacks
  (`modify_ack_deadline` 0), which is what a push subscription does with a non-2xx.
- Subscription filters: the emulator does not enforce them, so the driver applies the
  route's filter (the consumer's `ce-type`s, which the filter is generated from) and acks
  non-matching messages without delivering them, as Pub/Sub does server-side.
- Concurrency: deliveries are handed over one at a time; saga executions run in parallel
  (at most `CONCURRENT_EXECUTIONS`, see there).
- Executions API: workflows-emulator runs an execution inside the create request; Cloud
  Workflows returns at once and runs it in the background. The executions "session"
  given to `RestExecutionsApi` therefore answers `ACTIVE` at once and waits for the
  emulator in a thread, keeping each execution's final state (SUCCEEDED with its result,
  or FAILED with its error) the way `executions.get` would report it.

Isolation: every backend has its own project id, which both emulators treat as a separate
project (topics, subscriptions, Firestore database), and its own workflow file.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.api_core.exceptions import ServiceUnavailable

from adapters.gcp import buckets, entry, pubsub_binding, redrive, storage_events
from adapters.gcp.entry import Runtime
from adapters.gcp.firestore_store import FirestoreStore
from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.pubsub_notifier import PubSubNotifier
from adapters.gcp.pubsub_publisher import PubSubPublisher
from adapters.gcp.settings import Settings
from adapters.gcp.topology import (
    TYPE_ATTRIBUTE,
    Route,
    dead_letter_subscription_request,
    subscription_path,
    subscription_request,
    topic_path,
    topology,
)
from adapters.gcp.workflows import saga_yaml
from adapters.gcp.workflows_starter import RestExecutionsApi, WorkflowsSagaStarter
from handlers.core import jsonformat
from handlers.core.app import App
from handlers.core.events import Event
from handlers.core.ports import SAGAS, Ports
from handlers.orders import saga_id_for
from handlers.payments import SimulatedPaymentGateway
from tests.contract.backends import DeadLetter
from tests.gcp.conftest import REGION, Processes, free_port, start_workflows_emulator
from tests.gcp.gcs_server import FakeCloudStorage

#: Pub/Sub's push treats these as an ack; anything else is redelivered.
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
#: Pub/Sub refuses a dead-letter policy under 5 attempts (docs/failure-cases.md).
MAX_DELIVERIES = 5
_PULL_MAX = 100
#: Executions run at once. The Firestore emulator locks pessimistically and a blocked
#: transaction waits about 2 s before it is aborted; with ~10 transactions on one document
#: (case 15) it livelocks for tens of seconds and steps exhaust their retries, which
#: Firestore itself does not do. Four at once still contend on one document.
CONCURRENT_EXECUTIONS = 4
#: A pull subscription on the bus that is not part of the stack (see `published`).
OBSERVER = "contract-observer"
#: Cloud Scheduler publishes a firing this long after its scheduled time (`fire_schedule`).
SCHEDULER_LATENCY_S = 0.412
#: The jobs' retry_config.min_backoff_duration (infra/gcp/sources.py).
SCHEDULER_MIN_BACKOFF_S = 10


@dataclass
class Emulators:
    """The session's emulators, and a pool of workflows-emulators (one per live backend)."""

    pubsub_host: str
    firestore_host: str
    procs: Processes
    workdir: Path
    _idle: list[tuple[str, Path]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    @contextmanager
    def env(self) -> Iterator[None]:
        """Google clients find their emulator in the environment when they are built."""
        saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST",
                                                "FIRESTORE_EMULATOR_HOST")}
        os.environ.update(PUBSUB_EMULATOR_HOST=self.pubsub_host,
                          FIRESTORE_EMULATOR_HOST=self.firestore_host)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def acquire_workflows(self, workflow_yaml: str) -> tuple[str, Path]:
        """A workflows-emulator serving `workflow_yaml` for one backend's lifetime."""
        with self._lock:
            slot = self._idle.pop() if self._idle else None
            self._count += slot is None
            number = self._count
        if slot is None:
            path = self.workdir / f"workflow-{number}.yaml"
            path.write_text(workflow_yaml)
            slot = (start_workflows_emulator(self.procs, path, f"workflows-emulator-{number}"),
                    path)
        slot[1].write_text(workflow_yaml)  # the emulator re-reads it for every execution
        return slot

    def release_workflows(self, slot: tuple[str, Path]) -> None:
        with self._lock:
            self._idle.append(slot)


@dataclass
class _Execution:
    name: str
    saga_id: str
    done: Future[tuple[int, str]]

    def state(self) -> str:
        if not self.done.done():
            return "ACTIVE"
        status, _ = self.done.result()
        return "SUCCEEDED" if status == 200 else "FAILED"

    def result(self) -> Any:
        return json.loads(self.done.result()[1])

    def error(self) -> str:
        """The raised error's message, as `executions.get` shows it in `error.payload`."""
        text = self.done.result()[1]
        try:
            payload = json.loads(text)["error"]["payload"]
        except (ValueError, KeyError, TypeError):
            return text
        return str(payload.get("message", payload)) if isinstance(payload, dict) else str(payload)


class _Response:
    """What `RestExecutionsApi` reads from an HTTP response."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        self.status_code = status_code
        self.content = json.dumps(body).encode()
        self.text = self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


class _AsyncExecutions:
    """The Workflow Executions service in front of workflows-emulator: `create` answers
    at once with an ACTIVE execution, the emulator runs it meanwhile (see module doc)."""

    def __init__(self) -> None:
        import requests

        self._http = requests.Session()
        self._pool = ThreadPoolExecutor(max_workers=CONCURRENT_EXECUTIONS,
                                        thread_name_prefix="workflows")
        self._lock = threading.Lock()
        self.executions: dict[str, _Execution] = {}

    def post(self, url: str, json: dict[str, Any], timeout: float) -> _Response:  # noqa: A002
        saga_id = str(_json_loads(json["argument"]).get("saga_id"))
        # The execution's resource name, as executions.create answers it.
        name = f"{url.split('/v1/', 1)[-1]}/{uuid.uuid4().hex}"

        def run() -> tuple[int, str]:
            try:
                answer = self._http.post(url, json=json, timeout=max(timeout, 120))
            except Exception as error:  # noqa: BLE001 - the execution failed to run
                return 599, f"{type(error).__name__}: {error}"
            return answer.status_code, answer.text

        with self._lock:
            self.executions[name] = _Execution(name, saga_id, self._pool.submit(run))
        return _Response(200, {"name": name, "state": "ACTIVE"})

    def running(self) -> bool:
        with self._lock:
            return any(not e.done.done() for e in self.executions.values())

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()


def _json_loads(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _StepServer:
    """The saga step function: HTTP in front of `entry.process_step`."""

    def __init__(self, runtime: Runtime) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                payload, status, headers = entry.process_step(runtime, body)
                data = payload.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RefusingPublisher:
    """A Pub/Sub publisher client that fails chosen messages once, counting sends."""

    def __init__(self, client: Any, refuse: set[str]) -> None:
        self._client = client
        self._refuse = refuse
        self.sent: Counter[str] = Counter()

    def publish(self, topic: str, data: bytes, ordering_key: str = "", **attrs: str) -> Any:
        event_id = attrs.get("ce-id", "?")
        self.sent[event_id] += 1
        if event_id in self._refuse:
            self._refuse.discard(event_id)
            failed: Future[str] = Future()
            failed.set_exception(ServiceUnavailable("injected: message refused once"))
            return failed
        return self._client.publish(topic, data, ordering_key=ordering_key, **attrs)


class GcpBackend:
    name = "gcp"

    def __init__(self, app: App, emulators: Emulators, max_deliveries: int = MAX_DELIVERIES
                 ) -> None:
        from google.cloud import firestore, pubsub_v1

        self.app = app
        self.max_deliveries = max_deliveries
        self.project = f"contract-{uuid.uuid4().hex[:12]}"
        self.topology = topology(app, "sy", max_deliveries=max_deliveries, timeout_s=30,
                                 min_backoff_s=0, max_backoff_s=0)
        self._emulators = emulators
        with emulators.env():
            self._publisher_client = pubsub_v1.PublisherClient()
            self._subscriber = pubsub_v1.SubscriberClient()
            self._firestore = firestore.Client(project=self.project)
        self.store = FirestoreStore(self._firestore)
        self._create_topology()
        self.bus = self._publisher(self.topology.bus_topic)
        self.storage = FakeCloudStorage(self._publisher_client)
        self.bucket_names = {b.name: buckets.bucket_name("sy", b.name, self.project)
                             for b in app.buckets}
        self._create_sources()
        self._observed: list[dict[str, Any]] = []
        self._publish_times: dict[str, str] = {}  # message id -> the firing's publish time
        self._firings: Counter[tuple[str, str]] = Counter()
        self.executions = _AsyncExecutions()
        self.receives: Counter[tuple[str, str]] = Counter()
        self._attempts: dict[tuple[str, str], int] = {}
        self._redelivery_due: dict[str, str] = {}  # nacked message id -> consumer
        self._dead_letter_due: Counter[tuple[str, str]] = Counter()
        self._dead_seen: set[str] = set()
        self._step_server = _StepServer(self._runtime(None))
        self._workflows = emulators.acquire_workflows(
            saga_yaml(app.saga, self._step_server.url, timeout_s=60))
        self._functions = {r.consumer: self._runtime(r) for r in self.topology.routes}
        self._ingress = self._runtime(None, ingress=True)
        self._types = {c.name: frozenset(c.consumes) for c in app.consumers}

    # --- building -------------------------------------------------------------------------

    def _publisher(self, topic: str) -> PubSubPublisher:
        return PubSubPublisher(self._publisher_client, topic_path(self.project, topic))

    def _create_topology(self) -> None:
        top = self.topology
        for topic in (top.bus_topic, top.notifications_topic,
                      *(r.dead_letter_topic for r in top.routes)):
            self._publisher_client.create_topic(request={"name": topic_path(self.project,
                                                                            topic)})
        for route in top.routes:
            self._subscriber.create_subscription(
                request=dead_letter_subscription_request(route, self.project))
            request = subscription_request(route, self.project, top.bus_topic,
                                           push_endpoint="http://driven-in-process/")
            del request["push_config"]  # pulled and pushed by settle() (module doc)
            self._subscriber.create_subscription(request=request)
        # Not part of the stack: sees every message on the bus, for `published()`.
        self._subscriber.create_subscription(request={
            "name": subscription_path(self.project, OBSERVER),
            "topic": topic_path(self.project, top.bus_topic)})

    def _create_sources(self) -> None:
        """The buckets and the uploads bucket's notification, as infra/gcp/sources.py
        declares them (Cloud Scheduler jobs have nothing to create: `fire_schedule`
        publishes what a job publishes)."""
        for bucket in self.app.buckets:
            self.storage.create_bucket(self.bucket_names[bucket.name])
            if bucket.events:
                self.storage.add_notification(
                    self.bucket_names[bucket.name],
                    topic_path(self.project, self.topology.bus_topic),
                    event_types=(storage_events.OBJECT_FINALIZE,), payload_format="JSON_API_V1",
                    custom_attributes=storage_events.notification_attributes())

    def _buckets_for(self, route: Route | None, ingress: bool) -> dict[str, str]:
        """SWITCHYARD_BUCKETS as infra/gcp gives it: a consumer's own buckets
        (`buckets.settings_json`), the claim-check bucket to the saga steps if the saga
        publishes, nothing to the ingress function."""
        if route is not None:
            return _json_loads(buckets.settings_json(self.app, self.app.consumer(route.consumer),
                                                     self.bucket_names))
        claims = buckets.claims_name(self.app)
        if ingress or not (claims and self.app.saga.emits):
            return {}
        return {claims: self.bucket_names[claims]}

    def _runtime(self, route: Route | None, ingress: bool = False) -> Runtime:
        """What `entry.runtime()` builds for the function serving `route` (None: the saga
        step and ingress functions), with this backend's project and emulators."""
        top = self.topology
        consumer = self.app.consumer(route.consumer) if route else None
        starts_saga = bool(consumer and consumer.starts_saga)
        settings = Settings(
            project=self.project, region=REGION, consumer=route.consumer if route else None,
            bus_topic=top.bus_topic, notifications_topic=top.notifications_topic,
            dead_letter_topic=route.dead_letter_topic if route else None,
            workflow=top.workflow if starts_saga else None,
            workflows_emulator=self._workflows[0] if starts_saga else None,
            max_deliveries=route.max_delivery_attempts if route else None,
            buckets=self._buckets_for(route, ingress), storage_api=self.storage.url)
        clock = _SystemClock()
        sagas: Any = entry._Missing("saga starter", "SWITCHYARD_WORKFLOW")
        if starts_saga:
            api = RestExecutionsApi(self.project, REGION, top.workflow,
                                    base_url=self._workflows[0],
                                    session_factory=lambda: self.executions)
            sagas = WorkflowsSagaStarter(self.store, clock, api)
        # The blob store and the claim-checking bus publisher, composed by the entry itself.
        blobs, publisher = entry._storage(self.app, settings, self.bus)
        ports = Ports(store=self.store, publisher=publisher, blobs=blobs,
                      notifier=PubSubNotifier(self._publisher(top.notifications_topic)),
                      sagas=sagas, clock=clock,
                      payments=SimulatedPaymentGateway(self.store, clock,
                                                       settings.decline_above_cents))
        dead = (self._publisher(route.dead_letter_topic) if route else
                entry._Missing("topic", "SWITCHYARD_DEAD_LETTER_TOPIC"))
        return Runtime(self.app, settings, ports, dead, self.bus)

    # --- producing ------------------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        self.bus.publish(events)

    def publish_entries(self, entries: Sequence[dict[str, Any]]) -> None:
        """Through the ingress function, which takes PutEvents bodies as they are."""
        body = json.dumps({"Entries": list(entries)}).encode()
        answer, status, _ = entry.process_ingest(self._ingress, "POST", "/events",
                                                 {"content-type": "application/json"}, body)
        assert status == 202, answer

    # --- delivering -----------------------------------------------------------------------

    def _pull(self, subscription: str) -> list[Any]:
        # Without return_immediately the emulator holds an empty pull for 2 s; the flag is
        # deprecated for production pullers (who should wait), not for a test driver.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            response = self._subscriber.pull(request={
                "subscription": subscription_path(self.project, subscription),
                "max_messages": _PULL_MAX, "return_immediately": True}, timeout=10)
        return list(response.received_messages)

    def _settle_ack(self, subscription: str, ack_ids: list[str], nack_ids: list[str]) -> None:
        path = subscription_path(self.project, subscription)
        if ack_ids:
            self._subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
        if nack_ids:
            self._subscriber.modify_ack_deadline(request={
                "subscription": path, "ack_ids": nack_ids, "ack_deadline_seconds": 0})

    def push(self, route: Route, received: Any) -> bool:
        """Deliver one pulled message to the route's function as a push would; True if
        the function's answer acks it."""
        message = received.message
        attributes = dict(message.attributes)
        event_id = attributes.get("ce-id", "?")
        envelope = {
            "message": {"data": base64.b64encode(message.data).decode("ascii"),
                        "attributes": attributes, "messageId": message.message_id,
                        "publishTime": self._publish_times.get(
                            message.message_id, message.publish_time.isoformat())},
            "subscription": subscription_path(self.project, route.subscription),
            "deliveryAttempt": received.delivery_attempt or 1,
        }
        key = (route.consumer, event_id)
        self.receives[key] += 1
        self._attempts[key] = received.delivery_attempt or 1
        _, status = entry.process_push(self._functions[route.consumer],
                                       {"content-type": "application/json"},
                                       json.dumps(envelope).encode())
        return status in ACK_STATUSES

    def pump_once(self) -> int:
        """One pull of every consumer subscription; returns how many messages moved."""
        moved = 0
        for route in self.topology.routes:
            pulled = self._pull(route.subscription)
            acks, nacks = [], []
            for received in pulled:
                self._redelivery_due.pop(received.message.message_id, None)
                wanted = received.message.attributes.get(TYPE_ATTRIBUTE) in \
                    self._types[route.consumer]
                if not wanted or self.push(route, received):
                    acks.append(received.ack_id)
                    continue
                nacks.append(received.ack_id)
                if (received.delivery_attempt or 1) < route.max_delivery_attempts:
                    self._redelivery_due[received.message.message_id] = route.consumer
                else:  # Pub/Sub forwards it to the dead-letter topic itself
                    self._dead_letter_due[(route.consumer,
                                           received.message.attributes.get("ce-id", "?"))] += 1
            self._settle_ack(route.subscription, acks, nacks)
            moved += len(pulled)
        return moved

    def _watch_dead_letters(self) -> None:
        """Count the messages Pub/Sub has moved to a dead-letter topic since last time
        (peeked: released again at once, so nothing is taken away)."""
        for route in self.topology.routes:
            pulled = self._pull(route.dead_letter_subscription)
            for received in pulled:
                if received.message.message_id in self._dead_seen:
                    continue
                self._dead_seen.add(received.message.message_id)
                key = (route.consumer, received.message.attributes.get("ce-id", "?"))
                if self._dead_letter_due[key] > 0:
                    self._dead_letter_due[key] -= 1
            self._settle_ack(route.dead_letter_subscription, [],
                             [received.ack_id for received in pulled])

    def settle(self, timeout: float = 120.0) -> None:
        """Deliver until quiet: no execution running, nothing pulled, no nacked message
        still to be offered again and none still to reach its dead-letter topic (the
        emulator spaces redeliveries by the retry policy, a second or two)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = self.executions.running()
            moved = self.pump_once()
            if +self._dead_letter_due:
                self._watch_dead_letters()
            if not (busy or moved or self._redelivery_due or +self._dead_letter_due):
                return
            if not moved:
                time.sleep(0.05)
        raise TimeoutError(f"gcp backend not quiet after {timeout}s: waiting for "
                           f"{len(self._redelivery_due)} redeliveries, dead letters "
                           f"{dict(+self._dead_letter_due)}")

    # --- looking --------------------------------------------------------------------------

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self.store.get("orders", order_id)

    def available(self, item_id: str) -> int:
        return int((self.store.get("inventory", item_id) or {}).get("available", 0))

    def _pull_all(self, subscription: str) -> list[redrive.DeadLetter]:
        """Every message waiting on `subscription`, leased until acked or released.

        `redrive.pull` is what an operator's tool calls; it waits for messages, so here the
        same listing is done with an immediate answer to keep an empty DLQ cheap."""
        letters: list[redrive.DeadLetter] = []
        while more := self._pull(subscription):
            letters.extend(redrive.DeadLetter(m.ack_id, PubSubMessage(
                m.message.data, dict(m.message.attributes)), redrive.reason_of(
                m.message.attributes)) for m in more)
        return letters

    def dead_letters(self) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        for route in self.topology.routes:
            letters = self._pull_all(route.dead_letter_subscription)
            for letter in letters:
                attributes = letter.message.attributes
                event_id = attributes.get("ce-id")
                count = attributes.get(redrive.PLATFORM_COUNT)
                attempts = int(count) if count else \
                    self._attempts.get((route.consumer, str(event_id)), 1)
                dead.append(DeadLetter(route.consumer, event_id, letter.reason, attempts))
            # Listing takes nothing away: every letter goes back on the subscription.
            self._settle_ack(route.dead_letter_subscription, [],
                             [letter.ack_id for letter in letters])
        for execution in list(self.executions.executions.values()):
            if execution.done.done() and execution.state() == "FAILED":
                dead.append(DeadLetter(f"saga:{self.app.saga.name}", execution.saga_id,
                                       execution.error(), 1))
        return dead

    def redrive(self) -> int:
        sent = 0
        for route in self.topology.routes:
            path = subscription_path(self.project, route.dead_letter_subscription)
            sent += redrive.redrive(self._subscriber, path, self.bus,
                                    self._pull_all(route.dead_letter_subscription))
        return sent

    def deliveries(self, consumer: str, event_id: str) -> int:
        return self.receives[(consumer, event_id)]

    def payments(self) -> list[dict[str, Any]]:
        return [d.to_dict() or {} for d in self._firestore.collection("payments").stream()]

    def saga_status(self, order_id: str) -> str:
        start = self.store.get(SAGAS, saga_id_for(order_id))
        execution = self.executions.executions.get(str((start or {}).get("execution")))
        if execution is None:
            return "absent"
        state = execution.state()
        if state == "SUCCEEDED":
            return str(execution.result()["status"])
        return {"FAILED": "failed", "ACTIVE": "running"}[state]

    def deliver_batch(self, consumer: str, events: Sequence[Event]) -> list[str]:
        """A push subscription hands a function one message per request, so the batch here
        is what a pull subscriber gets: the messages of one pull (gathered over a few
        pulls if the emulator splits them), each acked or nacked on its own, which is
        Pub/Sub's native form of a partial batch response."""
        self.publish(events)
        route = self.topology.route(consumer)
        ids = {e.id for e in events}
        batch: dict[str, Any] = {}
        for _ in range(50):
            for received in self._pull(route.subscription):
                batch[received.message.attributes.get("ce-id", "?")] = received
            if len(batch) >= len(ids):
                break
            time.sleep(0.02)
        assert set(batch) == ids, f"batch is not the published events: {sorted(batch)}"
        failed = [event_id for event_id in (e.id for e in events)
                  if not self.push(route, batch[event_id])]
        for event_id in failed:
            self._redelivery_due[batch[event_id].message.message_id] = consumer
        self._settle_ack(route.subscription,
                         [batch[i].ack_id for i in ids if i not in failed],
                         [batch[i].ack_id for i in failed])
        return failed

    def publish_with_failures(self, events: Sequence[Event], refuse: Sequence[int]
                              ) -> Counter[str]:
        """Through `PubSubPublisher` (what the functions publish with), on a client whose
        publish future fails for the refused messages the first time (UNAVAILABLE), as
        the Pub/Sub client reports a message its batch could not deliver."""
        client = _RefusingPublisher(self._publisher_client, {events[i].id for i in refuse})
        PubSubPublisher(client, topic_path(self.project, self.topology.bus_topic),
                        sleep=lambda _: None).publish(events)
        return client.sent

    # --- event sources and patterns -------------------------------------------------------

    def upload(self, name: str, content: bytes) -> None:
        """A simple upload through the JSON API, as `gcloud storage cp` or a client library
        does; Cloud Storage (the stand-in) then publishes the bucket's notification."""
        import requests

        uploads = next(b.name for b in self.app.buckets if b.events)
        answer = requests.post(
            f"{self.storage.url}/upload/storage/v1/b/{self.bucket_names[uploads]}/o",
            params={"uploadType": "media", "name": name}, data=content,
            headers={"content-type": "text/csv"}, timeout=30)
        assert answer.status_code == 200, answer.text

    def fire_schedule(self, name: str, scheduled_time: str) -> None:
        """Publish what the schedule's Cloud Scheduler job publishes (infra/gcp/sources.py:
        `storage_events.scheduler_message`) on the bus.

        The adapter takes the slot from the message's publishTime, which Pub/Sub stamps
        and the emulator stamps with the wall clock. Cloud Scheduler publishes at the
        firing time, so the push driver hands this message over with the publishTime it
        would have: the scheduled time plus dispatch latency, and for a repeated firing of
        the same slot (the job's retry after a publish whose answer was lost) its first
        retry backoff later (the job's `min_backoff_duration`, 10 s)."""
        schedule = next((s for s in self.app.schedules if s.name == name), None)
        if schedule is None:
            raise KeyError(f"no schedule named {name!r} (have: "
                           f"{', '.join(s.name for s in self.app.schedules) or 'none'})")
        message = storage_events.scheduler_message(schedule.name, schedule.emits)
        repeat = self._firings[(name, scheduled_time)]
        self._firings[(name, scheduled_time)] += 1
        at = datetime.fromisoformat(scheduled_time.replace("Z", "+00:00")) + \
            timedelta(seconds=SCHEDULER_LATENCY_S + SCHEDULER_MIN_BACKOFF_S * repeat)
        message_id = self._publisher_client.publish(
            topic_path(self.project, self.topology.bus_topic),
            base64.b64decode(message["data"]), **message["attributes"]).result(timeout=30)
        self._publish_times[message_id] = at.isoformat().replace("+00:00", "Z")

    def producer(self) -> Any:
        """What `entry.runtime()` composes for a function that may write the claim-check
        bucket: `ClaimCheckPublisher` over `PubSubPublisher`, with `GcsBlobStore`."""
        claims = buckets.claims_name(self.app)
        settings = Settings(project=self.project, bus_topic=self.topology.bus_topic,
                            buckets={claims: self.bucket_names[claims]} if claims else {},
                            storage_api=self.storage.url)
        return entry._storage(self.app, settings, self.bus)[1]

    def blob_keys(self, bucket: str) -> list[str]:
        """The bucket's listing, through the JSON API."""
        import requests

        answer = requests.get(f"{self.storage.url}/storage/v1/b/{self.bucket_names[bucket]}/o",
                              timeout=30)
        assert answer.status_code == 200, answer.text
        return sorted(str(o["name"]) for o in answer.json().get("items", []))

    def published(self, type_: str) -> list[dict[str, Any]]:
        """Every CloudEvent seen on the bus (observer subscription), decoded as the
        consumers decode it; bucket notifications and scheduler messages, which are not
        CloudEvents until a function normalises them, are left out."""
        while pulled := self._pull(OBSERVER):
            for received in pulled:
                attributes = dict(received.message.attributes)
                if storage_events.SCHEDULE_ATTRIBUTE in attributes or \
                        {"eventType", "bucketId"} <= attributes.keys():
                    continue  # a Cloud Scheduler message or a Cloud Storage notification
                event = pubsub_binding.from_message(received.message.data, attributes)
                self._observed.append(jsonformat.to_dict(event))
            self._settle_ack(OBSERVER, [r.ack_id for r in pulled], [])
        seen: set[str] = set()
        out = []
        for body in self._observed:  # Pub/Sub may redeliver: one entry per message
            key = json.dumps(body, sort_keys=True)
            if body.get("type") == type_ and key not in seen:
                seen.add(key)
                out.append(body)
        return out

    def item(self, table: str, key: str) -> dict[str, Any] | None:
        return self.store.get(table, key)

    def close(self) -> None:
        self.storage.close()
        self.executions.close()
        self._step_server.close()
        self._emulators.release_workflows(self._workflows)
        self._subscriber.close()
        self._publisher_client.transport.close()
        self._firestore.close()
