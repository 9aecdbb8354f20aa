"""OpenTelemetry behind the core's tracing port, configured only by the `OTEL_*` variables.

Each composition root (the CLI, the Lambda entry, the Cloud Functions entry) calls
`install_from_env` once. Tracing is on when `OTEL_TRACES_EXPORTER` names an exporter
(`otlp`, `console`, or one an installed package registers), or when it is unset and an
OTLP endpoint is (`OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`, as the SDK's
default exporter is OTLP). Otherwise, and with `none` or `OTEL_SDK_DISABLED=true`, it
stays off and this module imports nothing of OpenTelemetry: the cold start and the
per-event cost are what they were without it.

What the SDK reads itself is left to it: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*` and the OTLP exporter's `OTEL_EXPORTER_OTLP_*`
(endpoint, headers, timeout, compression). The OTLP exporter speaks http/protobuf (the
`otel` extra's `opentelemetry-exporter-otlp-proto-http`).

A long-running process that shows its own spans (`switchyard serve`, whose console shows
an order's) also asks to keep the most recent ones in memory (`keep_spans`); `recent_spans`
returns that store, None when tracing is off or nothing is kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Final

from handlers.core import tracing

if TYPE_CHECKING:
    from adapters.local.recent_spans import RecentSpans

log = logging.getLogger("switchyard.telemetry")

#: OpenTelemetry's SpanKind member for each kind of the port.
_KINDS: Final = {"internal": "INTERNAL", "server": "SERVER", "client": "CLIENT",
                 "producer": "PRODUCER", "consumer": "CONSUMER"}
_OTLP_PROTOCOLS: Final = ("http/protobuf", "")
_installed: tracing.Tracer | None = None
_recent: RecentSpans | None = None


class SettingsError(ValueError):
    """An `OTEL_*` value this process cannot honour (one line, naming it)."""


def exporters(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for ([] when tracing is off)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not named:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or \
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    return [n for n in (part.strip() for part in named.split(",")) if n and n != "none"]


class _Span:
    __slots__ = ("_span", "traceparent")

    def __init__(self, span: Any) -> None:
        self._span = span
        context = span.get_span_context()
        self.traceparent = (f"00-{context.trace_id:032x}-{context.span_id:016x}-"
                            f"{int(context.trace_flags):02x}") if context.is_valid else None

    def set(self, key: str, value: tracing.Value) -> None:
        self._span.set_attribute(key, value)


class OtelTracer:
    """The port over an OpenTelemetry `TracerProvider` (the global one when None)."""

    def __init__(self, provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider if provider is not None else trace.get_tracer_provider()
        self._tracer = self._provider.get_tracer("switchyard")
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {name: getattr(trace.SpanKind, member) for name, member in _KINDS.items()}

    def span(self, name: str, kind: tracing.Kind, parent: str | None,
             attributes: Mapping[str, tracing.Value]) -> AbstractContextManager[tracing.Span]:
        return self._span(name, kind, parent, attributes)

    @contextmanager
    def _span(self, name: str, kind: tracing.Kind, parent: str | None,
              attributes: Mapping[str, tracing.Value]) -> Iterator[tracing.Span]:
        # A malformed traceparent extracts to an empty context: the span starts a trace.
        context = self._propagator.extract({"traceparent": parent}) if parent else None
        with self._tracer.start_as_current_span(name, context=context, kind=self._kinds[kind],
                                                attributes=dict(attributes)) as span:
            yield _Span(span)

    def flush(self) -> None:
        flush = getattr(self._provider, "force_flush", None)
        if flush is not None:
            flush()


def install_from_env(env: Mapping[str, str] | None = None, *,
                     messaging_system: str = "switchyard",
                     service_name: str = "switchyard", keep_spans: int = 0) -> bool:
    """Install an OpenTelemetry tracer when the environment asks for one; True if on.

    With `keep_spans`, the last that many spans to end are also kept in memory (see
    `recent_spans`). Once per process: a second call keeps the first tracer. Raises
    `SettingsError` for an exporter or protocol it cannot provide (the caller decides:
    the CLI stops with one line; a function logs it and runs untraced rather than refuse
    events)."""
    global _installed, _recent
    env = os.environ if env is None else env
    names = exporters(env)
    if not names:
        return False
    if _installed is not None:
        tracing.install(_installed, messaging_system)
        return True
    try:
        provider = _provider(env, names, service_name)
        if keep_spans > 0:
            from adapters.local.recent_spans import RecentSpans

            _recent = RecentSpans(keep_spans)
            provider.add_span_processor(_recent)
    except ImportError as error:
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER={','.join(names)} needs OpenTelemetry, which is not "
            f"installed ({error.name}): install the 'otel' extra, e.g. "
            "`pip install -e '.[otel]'`") from None
    from opentelemetry import trace

    trace.set_tracer_provider(provider)
    _installed = OtelTracer(provider)
    tracing.install(_installed, messaging_system)
    return True


def recent_spans() -> RecentSpans | None:
    """The spans this process keeps (installed with `keep_spans`), or None."""
    return _recent


def _provider(env: Mapping[str, str], names: list[str], service_name: str) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if not env.get("OTEL_SERVICE_NAME") and \
            "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER
    for name in names:
        if name == "console":
            # Synchronous: a terminal sees each span as it ends, and nothing waits in a
            # buffer when the process stops.
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(_exporter(env, name)))
    return provider


def _exporter(env: Mapping[str, str], name: str) -> Any:
    if name == "otlp":
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip().lower()
        if protocol not in _OTLP_PROTOCOLS:
            raise SettingsError(f"OTLP protocol {protocol!r} is not supported here: use "
                                "http/protobuf (the default)")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, headers...
    # Anything else: an exporter an installed package registers, as the SDK finds them.
    from importlib.metadata import entry_points

    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise SettingsError(f"OTEL_TRACES_EXPORTER: no span exporter named {name!r} "
                            "(use otlp, console or none)")
    return next(iter(found)).load()()


def install_or_warn(messaging_system: str, service_name: str) -> bool:
    """`install_from_env` for a deployed function: a setting it cannot honour is logged
    and the function runs untraced (events are never refused for want of spans)."""
    try:
        return install_from_env(messaging_system=messaging_system, service_name=service_name)
    except SettingsError as error:
        log.error("tracing is off: %s", error)
        return False
