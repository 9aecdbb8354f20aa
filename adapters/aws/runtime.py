"""Composition root for Lambda: settings, boto3 clients and ports, built once per container.

Nothing is created at import: the first invocation builds the `AwsRuntime` (`runtime()`),
and each client on first use, so a function only creates the clients it needs and a
cold start pays for them once. Tests build an `AwsRuntime` with their own session/settings.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from adapters.aws.dynamodb_store import DynamoDBStore
from adapters.aws.eventbridge_limits import MAX_DELIVERABLE_BYTES, entry_size
from adapters.aws.eventbridge_publisher import EventBridgePublisher
from adapters.aws.s3_blob_store import S3BlobStore
from adapters.aws.settings import Settings
from adapters.aws.sns_notifier import SnsNotifier
from adapters.aws.stepfunctions_starter import StepFunctionsStarter
from handlers.core.app import App, load_app
from handlers.core.claim_check import ClaimCheckPublisher
from handlers.core.eventbridge_binding import to_put_events_entry
from handlers.core.ports import Ports
from handlers.payments import SimulatedPaymentGateway


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Lazy:
    """Stands in for a port and builds it on first use: a consumer that never notifies
    never needs (or is granted) the topic, so its absence must not fail the cold start."""

    def __init__(self, build: Any) -> None:
        self._build = build
        self._target: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._target is None:
            self._target = self._build()
        return getattr(self._target, name)


class AwsRuntime:
    def __init__(self, settings: Settings, app: App | None = None,
                 session: Any = None) -> None:
        # The hosted app: `handlers.app.APP` unless $SWITCHYARD_APP names another.
        self.app = app if app is not None else load_app()
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = {}
        self._client_lock = threading.Lock()

    @cached_property
    def session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    def client(self, service: str) -> Any:
        """One client per service for the container's lifetime."""
        with self._client_lock:
            if service not in self._clients:
                self._clients[service] = self._new_client(service)
            return self._clients[service]

    def _new_client(self, service: str) -> Any:
        from botocore.config import Config

        # Standard retry mode backs off on throttling before our own error handling sees it.
        config = Config(retries={"mode": "standard", "max_attempts": 4},
                        connect_timeout=5, read_timeout=10)
        if service == "dynamodb":
            # The resource's client (de)serialises plain Python values for us.
            return self.session.resource("dynamodb", config=config).meta.client
        return self.session.client(service, config=config)

    @cached_property
    def store(self) -> DynamoDBStore:
        return DynamoDBStore(self.client("dynamodb"), self.settings.table)

    @cached_property
    def blobs(self) -> S3BlobStore | None:
        if not self.settings.buckets:
            return None
        return S3BlobStore(self.client("s3"), self.settings.buckets)

    def publisher(self) -> EventBridgePublisher | ClaimCheckPublisher:
        """PutEvents onto the bus; events over EventBridge's entry limit go by claim check
        when this function may write the app's claim-check bucket."""
        inner = EventBridgePublisher(self.client("events"), self.settings.require("bus_name"),
                                     self.app.catalog)
        claims = self.app.claim_check_bucket()
        if claims is None or claims.name not in self.settings.buckets or self.blobs is None:
            return inner
        catalog = self.app.catalog
        return ClaimCheckPublisher(inner, self.blobs, claims.name, MAX_DELIVERABLE_BYTES,
                                   lambda e: entry_size(to_put_events_entry(e, catalog)))

    @cached_property
    def ports(self) -> Ports:
        clock = SystemClock()
        settings = self.settings
        return Ports(
            store=self.store,
            publisher=_Lazy(self.publisher),
            notifier=_Lazy(lambda: SnsNotifier(
                self.client("sns"), settings.require("notification_topic_arn"))),
            sagas=_Lazy(lambda: StepFunctionsStarter(
                self.client("stepfunctions"), settings.require("state_machine_arn"),
                self.store)),
            clock=clock,
            payments=SimulatedPaymentGateway(self.store, clock, settings.decline_above_cents),
            blobs=self.blobs,
        )


_lock = threading.Lock()
_runtime: AwsRuntime | None = None


def runtime() -> AwsRuntime:
    """The container's runtime, created on the first invocation."""
    global _runtime
    built = _runtime
    if built is not None:  # every invocation after the first: no lock to take
        return built
    with _lock:
        if _runtime is None:
            # Spans only when OTEL_* asks (README "Tracing"); otherwise nothing is imported.
            from adapters.telemetry import install_or_warn

            install_or_warn("aws_sqs", os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "switchyard"))
            _runtime = AwsRuntime(Settings.from_env())
        return _runtime


def reset_runtime(new: AwsRuntime | None = None) -> None:
    """Replace the container's runtime (tests; a fresh container in effect)."""
    global _runtime
    with _lock:
        _runtime = new
