"""Spans around every hop, behind a port: a no-op until a composition root installs a tracer.

The engine opens one span per delivery (per consumer) and per saga step or compensation,
and one per event it publishes; the front doors open one per event they accept. Spans
are linked by the W3C `traceparent` the events already carry: a span's parent is the
traceparent of what it handles, and what it emits carries the span's own context (read
with `current_traceparent`), so an order's spans share one trace id from ingress through
every saga step and notification, on every backend.

`handlers/` knows only this port. The OpenTelemetry implementation is an adapter
(`adapters.telemetry`), installed by each composition root when the standard `OTEL_*`
variables ask for it; until then `span` is a no-op that yields the parent's context and
nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar
from typing import Final, Literal, Protocol

from handlers.core.events import Event, ensure_traceparent

Kind = Literal["internal", "server", "client", "producer", "consumer"]
Value = str | bool | int | float

#: Attribute names (OpenTelemetry messaging and CloudEvents semantic conventions, and ours).
SYSTEM: Final = "messaging.system"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
DESTINATION: Final = "messaging.destination.name"
CONSUMER_GROUP: Final = "messaging.consumer.group.name"
MESSAGE_ID: Final = "messaging.message.id"
EVENT_ID: Final = "cloudevents.event_id"
EVENT_SOURCE: Final = "cloudevents.event_source"
EVENT_TYPE: Final = "cloudevents.event_type"
EVENT_SUBJECT: Final = "cloudevents.event_subject"
ATTEMPT: Final = "switchyard.delivery.attempt"
OUTCOME: Final = "switchyard.delivery.outcome"  # ok | retry | dead-letter
STATUS: Final = "switchyard.delivery.status"  # processed | duplicate | ignored
SAGA: Final = "switchyard.saga.name"
SAGA_ID: Final = "switchyard.saga.id"
STEP: Final = "switchyard.saga.step"
PHASE: Final = "switchyard.saga.phase"  # action | compensate
STEP_ATTEMPT: Final = "switchyard.saga.attempt"
STEP_OUTCOME: Final = "switchyard.saga.outcome"  # ok | failed | error
REPLAYED: Final = "switchyard.saga.replayed"


class Span(Protocol):
    @property
    def traceparent(self) -> str | None:
        """This span's context as a W3C traceparent (what emitted events carry)."""
        ...

    def set(self, key: str, value: Value) -> None: ...


class Tracer(Protocol):
    def span(self, name: str, kind: Kind, parent: str | None,
             attributes: Mapping[str, Value]) -> AbstractContextManager[Span]:
        """A span, child of the span `parent` names (a root, or the ambient span, when
        None); an exception leaving the block marks it failed and propagates."""
        ...

    def flush(self) -> None:
        """Export what is buffered (a Lambda freezes between invocations)."""
        ...


class _NoopSpan:
    __slots__ = ("traceparent",)

    def __init__(self, traceparent: str | None) -> None:
        self.traceparent = traceparent

    def set(self, key: str, value: Value) -> None:
        pass

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class NoopTracer:
    """What runs when tracing is off: nothing recorded, the parent's context passed on."""

    def span(self, name: str, kind: Kind, parent: str | None,
             attributes: Mapping[str, Value]) -> AbstractContextManager[Span]:
        return _NoopSpan(parent)

    def flush(self) -> None:
        pass


_NOOP: Final = NoopTracer()
_tracer: Tracer = _NOOP
_system = "switchyard"
_CURRENT: ContextVar[str | None] = ContextVar("switchyard_traceparent", default=None)


def install(tracer: Tracer | None, messaging_system: str = "switchyard") -> None:
    """Make `tracer` the process's tracer (None: back to the no-op). `messaging_system`
    names the transport on delivery and publish spans (`aws_sqs`, `gcp_pubsub`...)."""
    global _tracer, _system
    _tracer = tracer if tracer is not None else _NOOP
    _system = messaging_system


def enabled() -> bool:
    return _tracer is not _NOOP


def messaging_system() -> str:
    return _system


def current_traceparent() -> str | None:
    """The context of the innermost span open in this thread (None outside any, or when
    tracing is off)."""
    return _CURRENT.get()


def span(name: str, kind: Kind, parent: str | None,
         attributes: Mapping[str, Value]) -> AbstractContextManager[Span]:
    """A span of the installed tracer; inside it `current_traceparent` is its context."""
    if _tracer is _NOOP:
        return _NoopSpan(parent)
    return _current(_tracer.span(name, kind, parent, attributes))


@contextmanager
def _current(opened: AbstractContextManager[Span]) -> Iterator[Span]:
    with opened as handle:
        token = _CURRENT.set(handle.traceparent)
        try:
            yield handle
        finally:
            _CURRENT.reset(token)


def _enter_apart(stack: ExitStack, before: contextvars.Context,
                 opening: AbstractContextManager[Span]) -> Span:
    """Enter `opening` in a copy of `before` and leave it in that copy when `stack` closes."""
    context = before.copy()
    opened = context.run(opening.__enter__)
    stack.push(lambda *exc: context.run(opening.__exit__, *exc))
    return opened


def flush() -> None:
    if _tracer is not _NOOP:  # after every invocation of a cloud function
        _tracer.flush()


def event_attributes(event: Event) -> dict[str, Value]:
    found: dict[str, Value] = {MESSAGE_ID: event.id, EVENT_ID: event.id,
                               EVENT_SOURCE: event.source, EVENT_TYPE: event.type}
    if event.subject:
        found[EVENT_SUBJECT] = event.subject
    return found


@contextmanager
def ingress(events: Iterable[Event], door: str) -> Iterator[list[Event]]:
    """One producer span per event a front door accepts (`door`: http, api, send...),
    open around the block that makes it durable; yields the events carrying their span's
    context. A span continues the trace an event arrived with; a new trace otherwise.
    With tracing off: the events, each given a traceparent if it has none."""
    if _tracer is _NOOP:
        yield [ensure_traceparent(e) for e in events]
        return
    # Each span is opened in its own copy of the context as it was before the first: the
    # spans of one request are siblings, so each event without a context of its own
    # starts its own trace instead of joining the previous event's.
    before = contextvars.copy_context()
    with ExitStack() as spans:
        traced = []
        for event in events:
            opened = _enter_apart(spans, before, _tracer.span(
                f"send {event.type}", "producer", event.traceparent,
                {SYSTEM: _system, OPERATION_TYPE: "send", OPERATION_NAME: f"ingress {door}",
                 DESTINATION: "bus", **event_attributes(event)}))
            traced.append(event.with_extensions(traceparent=opened.traceparent)
                          if opened.traceparent else ensure_traceparent(event))
        yield traced
