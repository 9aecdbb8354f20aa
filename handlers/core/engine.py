"""The processing engine every backend runs: idempotent handling of events and saga steps.

An adapter (Lambda, Cloud Function, local worker) decodes a delivery into an `Event` and
calls `handle`. The engine:

1. ignores (acknowledges, logs, counts) types the consumer does not consume;
2. validates the data against the catalog (a `ValidationError` is permanent);
3. runs the handler against a `Context` that *buffers* writes and side effects;
4. commits the writes together with the idempotency record for (consumer, source, id)
   in one store transaction, so effects happen once or not at all;
5. then performs the side effects recorded with it (publish, notify, start saga) and
   marks the record done.

A crash between 4 and 5 leaves the record "committed": the redelivery finds it and
performs the recorded side effects again instead of running the handler twice. Emitted
events get ids derived from the record key, so a re-publish is a duplicate that the next
consumer drops. Saga steps go through the same path with the key (saga id, step, phase),
which is what makes a retried payment charge once.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from datetime import timedelta
from typing import Any, Final, Literal

from handlers.core import claim_check, jsonformat, tracing
from handlers.core.app import App, Saga
from handlers.core.errors import (
    ConflictError,
    PermanentError,
    StepFailed,
    TransientError,
    ValidationError,
)
from handlers.core.events import Event, attribute_problems
from handlers.core.observability import log_context, trace_id_of
from handlers.core.ports import Op, PaymentGateway, Ports, Put, Update
from handlers.core.values import valueclass

log = logging.getLogger("switchyard.engine")

#: Table of idempotency records: one per (consumer, source, id) and per saga step.
PROCESSED: Final = "processed"
#: How long idempotency records live (TTL attribute `expires_at`, epoch seconds). Longer
#: than any redelivery window and the bus archive/retention, so a replay is still deduped.
DEDUPE_TTL: Final = timedelta(days=30)
_ID_NAMESPACE: Final = uuid.UUID("6f1f0c7e-4a43-4c36-9d3f-3a1a5e0b2d11")
_MAX_RACES: Final = 5


_set: Final = object.__setattr__


@valueclass
class Outcome:
    """What delivering one event to one consumer came to."""

    status: Literal["processed", "duplicate", "ignored"]
    consumer: str
    event_id: str
    emitted: tuple[Event, ...] = ()
    detail: str = ""

    def __init__(self, status: Literal["processed", "duplicate", "ignored"], consumer: str,
                 event_id: str, emitted: tuple[Event, ...] = (), detail: str = "") -> None:
        _set(self, "status", status)
        _set(self, "consumer", consumer)
        _set(self, "event_id", event_id)
        _set(self, "emitted", emitted)
        _set(self, "detail", detail)


@valueclass
class StepOutcome:
    """What running one saga step (or its compensation) came to."""

    ok: bool
    result: Mapping[str, Any]
    reason: str = ""
    detail: str = ""
    replayed: bool = False  # the step had already run: this is its recorded result

    def __init__(self, ok: bool, result: Mapping[str, Any], reason: str = "", detail: str = "",
                 replayed: bool = False) -> None:
        _set(self, "ok", ok)
        _set(self, "result", result)
        _set(self, "reason", reason)
        _set(self, "detail", detail)
        _set(self, "replayed", replayed)


class HandlerContext:
    """What a handler sees (`handlers.core.context.Context`): the event, read access to
    stores, and buffered effects."""

    def __init__(self, app: App, ports: Ports, event: Event, scope: str, record_key: str) -> None:
        self.app = app
        self.ports = ports
        self.event = event
        self.scope = scope  # consumer name, or "saga:<name>"
        self._record_key = record_key
        self.ops: list[Op] = []
        self.emits: list[Event] = []
        self.notifications: list[dict[str, Any]] = []
        self.saga_starts: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None  # a saga step's recorded outcome

    @property
    def buckets(self) -> tuple[str, ...]:
        consumer = next((c for c in self.app.consumers if c.name == self.scope), None)
        return consumer.buckets if consumer is not None else ()

    # reads --------------------------------------------------------------
    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self.ports.store.get(table, key)

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of a table (for audits and reports, not per-event lookups)."""
        consumer = next((c for c in self.app.consumers if c.name == self.scope), None)
        if consumer is None or table not in consumer.scans:
            raise PermanentError(f"'{self.scope}' does not declare that it scans '{table}'")
        return list(self.ports.store.scan(table))

    def read_blob(self, bucket: str, key: str) -> bytes:
        """An object from a bucket this consumer declares (and so may read)."""
        consumer = next((c for c in self.app.consumers if c.name == self.scope), None)
        if consumer is None or bucket not in consumer.buckets:
            raise PermanentError(f"'{self.scope}' does not declare bucket '{bucket}'")
        if self.ports.blobs is None:
            raise PermanentError(f"this backend has no blob store for bucket '{bucket}'")
        return self.ports.blobs.read(bucket, key)

    def now_iso(self) -> str:
        return self.ports.clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # buffered writes ------------------------------------------------------
    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> None:
        self.ops.append(Put(table, key, dict(item), if_absent=True))

    def put(self, table: str, key: str, item: Mapping[str, Any]) -> None:
        self.ops.append(Put(table, key, dict(item), if_absent=False))

    def update(self, table: str, key: str, **kwargs: Any) -> None:
        self.ops.append(Update(table, key, **kwargs))

    # buffered side effects -------------------------------------------------
    def emit(self, type_: str, data: Mapping[str, Any], subject: str | None = None,
             id: str | None = None) -> Event:
        """Queue a new event (published after commit); its id is derived, not random.

        A handler may pass its own `id` when the same fact can arrive through several
        deliveries (e.g. the same file uploaded twice): equal ids make them duplicates.
        """
        spec = self.app.catalog[type_]
        self.app.catalog.check_data(type_, data)
        n = len(self.emits)
        traceparent = self.traceparent
        extensions = {"traceparent": traceparent} if traceparent else {}
        event = Event(
            id=id or str(uuid.uuid5(_ID_NAMESPACE, f"{self._record_key}#{n}")),
            source=spec.source,
            type=type_,
            data=dict(data),
            time=self.now_iso(),
            subject=subject,
            datacontenttype="application/json",
            extensions=extensions,
        )
        self.emits.append(event)
        return event

    @property
    def traceparent(self) -> str | None:
        """What emitted events and started sagas carry: the context of the delivery's or
        step's span when tracing is on, else the event's own."""
        return tracing.current_traceparent() or self.event.traceparent

    def notify(self, message: Mapping[str, Any]) -> None:
        n = len(self.notifications)
        notification_id = str(uuid.uuid5(_ID_NAMESPACE, f"{self._record_key}!{n}"))
        self.notifications.append({"id": notification_id, "message": dict(message)})

    def start_saga(self, saga_id: str, input: Mapping[str, Any]) -> None:
        self.saga_starts.append({"saga_id": saga_id, "input": dict(input)})

    def effects(self) -> dict[str, Any]:
        return {
            "emits": [jsonformat.to_dict(e) for e in self.emits],
            "notifications": self.notifications,
            "saga_starts": self.saga_starts,
            "traceparent": self.traceparent,
        }


class StepHandlerContext(HandlerContext):
    """A saga step's context (`handlers.core.context.StepContext`): the saga state so far
    and the step's idempotency key."""

    def __init__(self, app: App, ports: Ports, event: Event, saga_id: str, step: str,
                 phase: str, state: Mapping[str, Any], record_key: str) -> None:
        super().__init__(app, ports, event, f"saga:{app.saga.name}", record_key)
        self.saga_id = saga_id
        self.step = step
        self.phase = phase
        self.state = state
        self.idempotency_key = f"{saga_id}:{step}:{phase}"

    @property
    def payments(self) -> PaymentGateway:
        return self.ports.payments

    def result_of(self, step: str) -> Mapping[str, Any]:
        return self.state.get("results", {}).get(step) or {}


def dedupe_key(consumer: str, event: Event) -> str:
    return f"{consumer}|{event.source}|{event.id}"


def step_key(saga_id: str, step: str, phase: str) -> str:
    return f"step|{saga_id}|{step}|{phase}"


def step_of_key(key: str) -> str | None:
    """The step named in a `step_key` (saga ids may contain '|'), None for other keys."""
    if not key.startswith("step|"):
        return None
    parts = key.rsplit("|", 2)
    return parts[1] if len(parts) == 3 and parts[0] != "step" else None


def handle(app: App, consumer_name: str, event: Event, ports: Ports, *,
           attempt: int | None = None, max_attempts: int | None = None) -> Outcome:
    """Process one delivery of `event` for one consumer, exactly once in effect.

    Raises PermanentError (dead-letter now) or TransientError (retry later). `attempt`
    (1 for the first delivery) and the backend's `max_attempts`, when it knows them, only
    label the delivery's span: a failure on the last attempt is dead-lettered, not retried.
    """
    with log_context(trace_id=trace_id_of(event.traceparent), event_id=event.id,
                     event_type=event.type, consumer=consumer_name):
        if not tracing.enabled():
            return _handle(app, consumer_name, event, ports)
        attributes = {tracing.SYSTEM: tracing.messaging_system(),
                      tracing.OPERATION_TYPE: "process", tracing.OPERATION_NAME: "process",
                      tracing.DESTINATION: consumer_name, tracing.CONSUMER_GROUP: consumer_name,
                      **tracing.event_attributes(event)}
        if attempt is not None:
            attributes[tracing.ATTEMPT] = attempt
        with tracing.span(f"process {consumer_name}", "consumer", event.traceparent,
                          attributes) as span:
            try:
                outcome = _handle(app, consumer_name, event, ports)
            except PermanentError:
                span.set(tracing.OUTCOME, "dead-letter")
                raise
            except Exception:
                last = attempt is not None and max_attempts is not None \
                    and attempt >= max_attempts
                span.set(tracing.OUTCOME, "dead-letter" if last else "retry")
                raise
            span.set(tracing.OUTCOME, "ok")
            span.set(tracing.STATUS, outcome.status)
            return outcome


def _handle(app: App, consumer_name: str, event: Event, ports: Ports) -> Outcome:
    consumer = app.consumer(consumer_name)
    if event.type not in consumer.consumes:
        known = app.catalog.get(event.type) is not None
        detail = "not consumed here" if known else "unknown event type"
        log.warning("ignored event", extra={"why": detail})
        return Outcome("ignored", consumer_name, event.id, detail=f"{event.type}: {detail}")
    fingerprint = jsonformat.fingerprint(event)
    if claim_check.is_claimed(event):
        # A redelivery of a claim-checked event that was fully processed is a no-op even
        # after its payload expired: look at the record before fetching the payload.
        done = ports.store.get(PROCESSED, dedupe_key(consumer_name, event))
        if done is not None and done.get("status") == "done" \
                and done.get("fingerprint") == fingerprint:
            return Outcome("duplicate", consumer_name, event.id)
    claims = app.claim_check_bucket()
    event = claim_check.check_out(event, ports.blobs, claims.expire_days if claims else None)
    app.catalog.check_data(event.type, event.data)
    key = dedupe_key(consumer_name, event)

    def run() -> HandlerContext:
        ctx = HandlerContext(app, ports, event, consumer_name, key)
        consumer.handler(ctx)
        return ctx

    record, duplicate, emitted = _execute_once(ports, key, fingerprint, run)
    return Outcome("duplicate" if duplicate else "processed", consumer_name, event.id, emitted)


def run_step(app: App, ports: Ports, saga_id: str, step_name: str, phase: str,
             state: Mapping[str, Any]) -> StepOutcome:
    """Run one saga step (`phase` "action" or "compensate") at most once in effect.

    A business failure (StepFailed) is recorded too, so a retry gets the same answer.
    Transient errors propagate for the orchestrator's retry policy.
    """
    with log_context(trace_id=trace_id_of(state.get("traceparent")), saga_id=saga_id,
                     step=step_name, phase=phase):
        if not tracing.enabled():
            return _run_step(app, ports, saga_id, step_name, phase, state)
        attributes: dict[str, tracing.Value] = {
            tracing.SAGA: app.saga.name, tracing.SAGA_ID: saga_id, tracing.STEP: step_name,
            tracing.PHASE: phase}
        if isinstance(state.get("attempt"), int):
            attributes[tracing.STEP_ATTEMPT] = state["attempt"] + 1
        name = f"saga {step_name}" if phase == "action" else f"compensate {step_name}"
        with tracing.span(name, "internal", state.get("traceparent"), attributes) as span:
            try:
                outcome = _run_step(app, ports, saga_id, step_name, phase, state)
            except Exception:
                span.set(tracing.STEP_OUTCOME, "error")
                raise
            span.set(tracing.STEP_OUTCOME, "ok" if outcome.ok else "failed")
            span.set(tracing.REPLAYED, outcome.replayed)
            return outcome


def _run_step(app: App, ports: Ports, saga_id: str, step_name: str, phase: str,
              state: Mapping[str, Any]) -> StepOutcome:
    saga: Saga = app.saga
    step = saga.step(step_name)
    fn = step.action if phase == "action" else step.compensate
    if fn is None:
        return StepOutcome(True, {})
    key = step_key(saga_id, step_name, phase)
    trigger = Event(id=key, source=f"saga/{saga.name}", type=f"saga.{step_name}.{phase}",
                    extensions=_trace(state))
    fingerprint = hashlib.sha256(key.encode()).hexdigest()

    def run() -> HandlerContext:
        ctx = StepHandlerContext(app, ports, trigger, saga_id, step_name, phase, state, key)
        try:
            result = fn(ctx) or {}
            ctx.result = {"ok": True, "result": dict(result)}
        except StepFailed as failure:
            # Business failure: keep the side effects it declared (e.g. a "declined"
            # event) but none of its writes.
            ctx.ops.clear()
            ctx.result = {"ok": False, "reason": failure.reason, "detail": failure.detail}
        return ctx

    record, replayed, _ = _execute_once(ports, key, fingerprint, run)
    outcome = record["result"]
    return StepOutcome(outcome["ok"], outcome.get("result", {}), outcome.get("reason", ""),
                       outcome.get("detail", ""), replayed)


def _trace(state: Mapping[str, Any]) -> dict[str, str]:
    traceparent = state.get("traceparent")
    return {"traceparent": traceparent} if traceparent else {}


def _execute_once(ports: Ports, key: str, fingerprint: str, run: Callable[[], HandlerContext]
                  ) -> tuple[dict[str, Any], bool, tuple[Event, ...]]:
    """Run `run` unless `key` is recorded; commit its writes with the record; then effects.
    Returns the record, whether it was already there, and the events it emits."""
    store = ports.store
    for _ in range(_MAX_RACES):
        record = store.get(PROCESSED, key)
        if record is not None:
            if record.get("fingerprint") != fingerprint:
                raise ConflictError(
                    f"idempotency key {key!r} was already used for a different payload; "
                    "refusing to apply it again"
                )
            emitted = _recorded_emits(record)
            if record.get("status") != "done":
                _perform_effects(ports, key, record, emitted)
            return record, True, emitted
        ctx = run()
        record = {
            "fingerprint": fingerprint,
            "status": "committed" if ports.atomic is None else "done",
            "effects": ctx.effects(),
            "result": ctx.result,
            "expires_at": int((ports.clock.now() + DEDUPE_TTL).timestamp()),
        }
        writes = [*ctx.ops, Put(PROCESSED, key, record, if_absent=True)]
        # The events just built are the ones the record describes: no round trip through
        # its dicts (`_perform_effects` checks them as reading them back would).
        emitted = tuple(ctx.emits)
        if ports.atomic is not None:
            # Writes, record and effects commit together or not at all.
            with ports.atomic():
                if store.transact(writes):
                    _perform_effects(ports, key, record, emitted, mark_done=False)
                    return record, False, emitted
        elif store.transact(writes):
            _perform_effects(ports, key, record, emitted)
            return record, False, emitted
        # A condition failed: a concurrent duplicate committed first, or the data the
        # handler read changed under it (e.g. stock). Re-read and run again.
    raise TransientError(f"contention on {key!r}: gave up after {_MAX_RACES} tries")


def _recorded_emits(record: Mapping[str, Any]) -> tuple[Event, ...]:
    return tuple(jsonformat.from_dict(e) for e in record["effects"]["emits"])


def _check_emits(events: tuple[Event, ...]) -> None:
    """The attribute checks (and `ValidationError`) of `jsonformat.from_dict`, which
    reading the events back from their record's dicts would make."""
    for event in events:
        problems = attribute_problems(event.attributes())
        if problems:
            raise ValidationError("invalid CloudEvent", [f"event: {p}" for p in problems])


def _perform_effects(ports: Ports, key: str, record: Mapping[str, Any],
                     emitted: tuple[Event, ...], mark_done: bool = True) -> None:
    effects = record["effects"]
    if emitted:
        _check_emits(emitted)
        _publish(ports, list(emitted))
    for note in effects["notifications"]:
        ports.notifier.notify(note["id"], note["message"])
    for start in effects["saga_starts"]:
        ports.sagas.start(start["saga_id"], start["input"], effects.get("traceparent"))
    if mark_done:
        ports.store.transact([Update(PROCESSED, key, set={"status": "done"})])


def _publish(ports: Ports, events: list[Event]) -> None:
    """Publish emitted events, with one producer span each (children of the span that
    emitted them, as their traceparent says) around the batch."""
    if not tracing.enabled():
        ports.publisher.publish(events)
        return
    with ExitStack() as spans:
        for event in events:
            spans.enter_context(tracing.span(
                f"send {event.type}", "producer", event.traceparent,
                {tracing.SYSTEM: tracing.messaging_system(), tracing.OPERATION_TYPE: "send",
                 tracing.OPERATION_NAME: "publish", tracing.DESTINATION: "bus",
                 **tracing.event_attributes(event)}))
        ports.publisher.publish(events)


__all__ = [
    "PROCESSED", "HandlerContext", "StepHandlerContext", "Outcome", "StepOutcome", "handle",
    "run_step",
    "PermanentError", "TransientError",
]
