"""Cloud Functions entry points (functions-framework) and the GCP composition root.

Three targets, all HTTP (the zip's `main.py` re-exports them):

- `consume`: a consumer function, named by `SWITCHYARD_CONSUMER`. Its push subscription
  POSTs the raw Pub/Sub envelope; an Eventarc trigger would POST a `messagePublished`
  CloudEvent; both are decoded by `pubsub_binding.read_push`. Status codes are the retry
  decision Pub/Sub acts on: 204 acks (success, duplicate, type not consumed here, and a
  permanent error once it is safely on the consumer's dead-letter topic with its reason,
  and, when `SWITCHYARD_MAX_DELIVERIES` is set, a transient error on the last delivery
  attempt, dead-lettered with that error rather than left to the dead_letter_policy,
  which would carry only the count); 503 nacks (transient errors, and a dead-letter
  publish that failed: nothing is lost). Data not known yet (`NotYetKnown`) is retried
  once in the same request after `adapters.soon.SOON_S`; a nack after that waits for the
  subscription's retry policy (Pub/Sub chooses redelivery delays per subscription, not
  per message or error).
- `saga_step`: what the compiled workflow calls for each step; 200 with the step outcome
  (a business failure is `ok: false`, not an HTTP error), 422 for a permanent error (the
  workflow does not retry it), 503 for a transient one (the workflow retries it).
- `ingest`: optional HTTP ingress, `POST /events` -> publish on the bus -> 202.

Clients are built lazily, once per instance, on first use.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import functions_framework

from adapters.gcp import pubsub_binding, storage_events
from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.redrive import CONSUMER_ATTRIBUTE, FAILED_AT_ATTRIBUTE, REASON_ATTRIBUTE
from adapters.gcp.settings import Settings
from adapters.soon import handle_soon
from handlers.core import http_binding, ingress_binding, tracing
from handlers.core.app import App
from handlers.core.engine import run_step
from handlers.core.errors import PermanentError, ValidationError
from handlers.core.ports import Ports
from handlers.core.wire import jsontext

log = logging.getLogger("switchyard.gcp")

#: Body of a dead letter whose original attributes leave no room for ours.
WRAPPED_CONTENT_TYPE: Final = "application/vnd.switchyard.dead-letter+json"
_ACK: Final = ("", 204)
_JSON: Final = {"content-type": "application/json"}


class _Missing:
    """A port this function was not deployed to use: fails loudly, naming the setting."""

    def __init__(self, port: str, setting: str) -> None:
        self._why = f"this function has no {port} ({setting} is not set)"

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(self._why)


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(slots=True)
class Runtime:
    app: App
    settings: Settings
    ports: Ports
    dead_letters: Any  # PubSubPublisher for this consumer's dead-letter topic, or _Missing
    bus: Any  # PubSubPublisher for the bus, or _Missing


@functools.cache
def runtime() -> Runtime:
    """The composition root: settings, clients and ports, built once per instance."""
    # google.cloud is a namespace package shared with typed Firestore: mypy looks
    # for pubsub_v1 (which ships no types) as an attribute of it, not a module.
    from google.cloud import firestore, pubsub_v1  # type: ignore[attr-defined]

    from adapters.gcp.firestore_store import FirestoreDatabases, FirestoreStore
    from adapters.gcp.pubsub_notifier import PubSubNotifier
    from adapters.gcp.pubsub_publisher import PubSubPublisher
    from adapters.gcp.topology import topic_path
    from adapters.gcp.workflows_starter import (
        RestExecutionsApi,
        WorkflowsSagaStarter,
        anonymous_session,
    )
    from adapters.telemetry import install_or_warn
    from handlers.core.app import load_app
    from handlers.payments import SimulatedPaymentGateway

    # Spans only when OTEL_* asks (README "Tracing").
    install_or_warn("gcp_pubsub", os.environ.get("K_SERVICE", "switchyard"))
    settings = Settings.from_env()
    publisher_client = pubsub_v1.PublisherClient()
    # One client per database this function's data lives in (see FirestoreDatabases).
    names = {settings.database, *settings.table_databases.values(),
             *settings.step_databases.values()}
    store = FirestoreDatabases(
        {db: FirestoreStore(firestore.Client(project=settings.project, database=db))
         for db in sorted(names)},
        settings.database, settings.table_databases, settings.step_databases)
    clock = _SystemClock()

    def publisher(topic: str | None, setting: str) -> Any:
        if not topic:
            return _Missing("topic", setting)
        return PubSubPublisher(publisher_client, topic_path(settings.project, topic))

    bus = publisher(settings.bus_topic, "SWITCHYARD_BUS_TOPIC")
    notifications = publisher(settings.notifications_topic, "SWITCHYARD_NOTIFICATIONS_TOPIC")
    sagas: Any = _Missing("saga starter", "SWITCHYARD_WORKFLOW")
    if settings.workflow:
        emulator = settings.workflows_emulator
        local: dict[str, Any] = ({"base_url": emulator, "session_factory": anonymous_session}
                                 if emulator else {})
        api = RestExecutionsApi(settings.project, settings.region, settings.workflow, **local)
        sagas = WorkflowsSagaStarter(store, clock, api)
    blobs, bus_with_claims = _storage(load_app(), settings, bus)
    ports = Ports(
        store=store, publisher=bus_with_claims, blobs=blobs,
        notifier=PubSubNotifier(notifications) if settings.notifications_topic else
        _Missing("notifier", "SWITCHYARD_NOTIFICATIONS_TOPIC"),
        sagas=sagas, clock=clock,
        payments=SimulatedPaymentGateway(store, clock, settings.decline_above_cents),
    )
    # The hosted app: `handlers.app.APP` unless $SWITCHYARD_APP names another.
    return Runtime(load_app(), settings, ports,
                   publisher(settings.dead_letter_topic, "SWITCHYARD_DEAD_LETTER_TOPIC"), bus)


def _storage(app: App, settings: Settings, bus: Any) -> tuple[Any, Any]:
    """The blob store (if this function was told about buckets) and the bus publisher,
    wrapped in a claim check when it may write the app's claim-check bucket."""
    from adapters.gcp.gcs_blob_store import API, GcsBlobStore, anonymous_session
    from handlers.core.claim_check import ClaimCheckPublisher

    if not settings.buckets:
        return None, bus
    local: dict[str, Any] = ({"session_factory": anonymous_session}
                             if settings.storage_api else {})
    blobs = GcsBlobStore(settings.buckets, base_url=settings.storage_api or API, **local)
    claims = app.claim_check_bucket()
    if claims is None or claims.name not in settings.buckets or isinstance(bus, _Missing):
        return blobs, bus
    return blobs, ClaimCheckPublisher(bus, blobs, claims.name, CLAIM_CHECK_ABOVE)


#: Pub/Sub takes 10 MB, but events over 1 MiB go by claim check on every backend: an
#: event that travels on one cloud travels on the other (EventBridge and the local bus
#: stop at 1 MiB), and Firestore documents stop at 1 MiB too.
CLAIM_CHECK_ABOVE: Final = 1024 * 1024 - 1024


# --- consume ------------------------------------------------------------------------


def process_push(rt: Runtime, headers: Mapping[str, str], body: bytes) -> tuple[str, int]:
    """Decode and handle one push delivery; returns (body, status) for Pub/Sub."""
    consumer = rt.settings.consumer
    if not consumer:
        raise RuntimeError("SWITCHYARD_CONSUMER is not set on this function")
    # Every reader below shares one strict parse of the body (a body that is not JSON
    # is dead-lettered by whichever reader needs it first, with the parser's reason).
    parsed = jsontext.Once(body)
    mode = http_binding.content_mode(headers)  # read once, for every reader below
    try:
        # Cloud Storage notifications and Cloud Scheduler messages: normalised first.
        native = storage_events.from_cloudevent(headers, body, rt.settings.buckets, parsed) \
            if storage_events.is_storage_cloudevent(headers) or (
                mode == "structured"
                and storage_events.is_structured_storage_event(headers, body, parsed)) else \
            storage_events.from_push(body, rt.app, rt.settings.buckets, parsed)
        if native is not None:
            event, delivery = native, _delivery_of(parsed)
        else:
            event, delivery = pubsub_binding.read_push(headers, body, parsed, mode=mode)
    except ValidationError as error:
        return _dead_letter(rt, consumer, _original_message(headers, body, parsed), str(error))
    try:
        outcome = handle_soon(rt.app, consumer, event, rt.ports, attempt=delivery.attempt,
                              max_attempts=rt.settings.max_deliveries)
    except PermanentError as error:
        return _dead_letter(rt, consumer, _original_message(headers, body, parsed), str(error))
    except Exception as error:  # noqa: BLE001 - transient or unexpected: Pub/Sub retries
        limit = rt.settings.max_deliveries
        if limit and delivery.attempt and delivery.attempt >= limit:
            # Pub/Sub would move it with only a count: dead-letter it here, with the error.
            return _dead_letter(rt, consumer, _original_message(headers, body, parsed), (
                f"failed {delivery.attempt} deliveries (maxDeliveries={limit}); last error: "
                f"{type(error).__name__}: {error}"))
        log.warning("retrying delivery", extra={
            "consumer": consumer, "event_id": event.id, "attempt": delivery.attempt,
            "error": f"{type(error).__name__}: {error}"})
        return f"retry: {type(error).__name__}: {error}", 503
    if log.isEnabledFor(logging.INFO):  # one line per delivery: no fields built for none
        log.info("delivered", extra={"consumer": consumer, "event_id": event.id,
                                     "status": outcome.status, "detail": outcome.detail})
    return _ACK


def _delivery_of(parsed: jsontext.Once) -> pubsub_binding.Delivery:
    """Delivery facts of a push whose payload is not one of our events (best effort)."""
    envelope, problem = parsed.parse()
    if problem:
        return pubsub_binding.Delivery(None, None, None)
    try:
        message = envelope.get("message") or {}
        attempt = envelope.get("deliveryAttempt")
        return pubsub_binding.Delivery(
            message.get("messageId"), envelope.get("subscription"),
            int(attempt) if attempt is not None else None)
    except (ValueError, AttributeError, TypeError):
        return pubsub_binding.Delivery(None, None, None)


def _original_message(headers: Mapping[str, str], body: bytes,
                      parsed: jsontext.Once) -> PubSubMessage:
    """The message as published, recovered from the push as far as it can be."""
    envelope, problem = parsed.parse()
    if problem:  # unreadable: keep the whole request body instead
        return PubSubMessage(body, {})
    try:
        if http_binding.content_mode(headers) is not None:  # Eventarc: envelope in data
            envelope = envelope.get("data", envelope)
        message = envelope["message"]
        data = base64.b64decode(message.get("data", ""), validate=False)
        attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
        return PubSubMessage(data, attributes)
    except Exception:  # noqa: BLE001 - unreadable: keep the whole request body instead
        return PubSubMessage(body, {})


def _dead_letter(rt: Runtime, consumer: str, original: PubSubMessage,
                 reason: str) -> tuple[str, int]:
    reason_value = reason.encode()[:pubsub_binding.MAX_ATTRIBUTE_VALUE_BYTES].decode(
        errors="ignore")
    ours = {REASON_ATTRIBUTE: reason_value, CONSUMER_ATTRIBUTE: consumer,
            FAILED_AT_ATTRIBUTE: datetime.now(UTC).isoformat()}
    letter = PubSubMessage(original.data, {**original.attributes, **ours})
    if pubsub_binding.limit_problems(letter):
        wrapped = {"attributes": dict(original.attributes), "reason": reason,
                   "data_base64": base64.b64encode(original.data).decode()}
        letter = PubSubMessage(json.dumps(wrapped).encode(),
                               {**ours, "content-type": WRAPPED_CONTENT_TYPE})
    try:
        rt.dead_letters.publish_messages([letter])
    except Exception as error:  # noqa: BLE001 - not acked, so Pub/Sub delivers it again
        log.error("dead-letter publish failed", extra={"consumer": consumer, "error": str(error)})
        return f"dead-letter publish failed: {error}", 503
    log.error("dead-lettered", extra={"consumer": consumer, "reason": reason})
    return _ACK


def _flushed(answer: Any) -> Any:
    """The answer, once the request's spans are exported: the instance may get no CPU
    after it answers."""
    tracing.flush()
    return answer


@functions_framework.http
def consume(request: Any) -> tuple[str, int]:
    return _flushed(process_push(runtime(), dict(request.headers), request.get_data()))


# --- saga steps -----------------------------------------------------------------------


def process_step(rt: Runtime, body: bytes) -> tuple[str, int, dict[str, str]]:
    """Run one saga step for the workflow; see the module docstring for status codes."""
    try:
        request = json.loads(body)
    except ValueError as error:
        return json.dumps({"error": f"body is not JSON: {error}"}), 422, _JSON
    problems = [f"'{name}' must be a {kind.__name__}"
                for name, kind in (("saga_id", str), ("step", str), ("phase", str),
                                   ("state", dict))
                if not isinstance(request, dict) or not isinstance(request.get(name), kind)]
    if not problems and request["phase"] not in ("action", "compensate"):
        problems.append("'phase' must be 'action' or 'compensate'")
    if problems:
        return json.dumps({"error": "invalid step request", "problems": problems}), 422, _JSON
    try:
        outcome = run_step(rt.app, rt.ports, request["saga_id"], request["step"],
                           request["phase"], request["state"])
    except PermanentError as error:
        return json.dumps({"error": str(error)}), 422, _JSON
    except Exception as error:  # noqa: BLE001 - the workflow's retry policy decides
        return json.dumps({"error": f"{type(error).__name__}: {error}"}), 503, _JSON
    return json.dumps({"ok": outcome.ok, "result": dict(outcome.result),
                       "reason": outcome.reason, "detail": outcome.detail,
                       "replayed": outcome.replayed}), 200, _JSON


@functions_framework.http
def saga_step(request: Any) -> tuple[str, int, dict[str, str]]:
    return _flushed(process_step(runtime(), request.get_data()))


# --- ingress --------------------------------------------------------------------------


def process_ingest(rt: Runtime, method: str, path: str, headers: Mapping[str, str],
                   body: bytes) -> tuple[str, int, dict[str, str]]:
    if path.rstrip("/") not in ("/events", ""):
        return json.dumps({"error": f"no route {path}"}), 404, _JSON
    if method != "POST":
        return json.dumps({"error": "use POST /events"}), 405, _JSON
    try:
        events = ingress_binding.decode_request(headers, body, rt.app.catalog)
        with tracing.ingress(events, "http") as events:
            rt.bus.publish(events)
    except PermanentError as error:
        problems = list(getattr(error, "problems", ())) or [str(error)]
        return json.dumps(ingress_binding.refused(problems)), 400, _JSON
    except Exception as error:  # noqa: BLE001 - the producer may retry
        return json.dumps({"error": f"{type(error).__name__}: {error}"}), 503, _JSON
    return json.dumps(ingress_binding.accepted(events)), 202, _JSON


@functions_framework.http
def ingest(request: Any) -> tuple[str, int, dict[str, str]]:
    return _flushed(process_ingest(runtime(), request.method, request.path,
                                   dict(request.headers), request.get_data()))
