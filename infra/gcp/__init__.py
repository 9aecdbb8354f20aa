"""GCP: provisions the app on GCP (Pub/Sub, Cloud Functions gen2, Firestore, Workflows).

`deploy(app, config)` is the package's one entry point, called by `infra.program` when
`switchyard:cloud` is `gcp`. Everything is generated from the app description: one
consumer in `handlers/app.py` becomes a function, an identity, a push subscription, a
dead-letter topic with a pull subscription, grants and an alert. All resources are
children of `GcpStack`. Nothing here may import `pulumi_aws`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pulumi
import pulumi_gcp as gcp

from adapters.gcp import settings as env
from adapters.gcp import source_archive
from adapters.gcp.topology import (
    INGRESS_ENTRY,
    SAGA_ENTRY,
    FunctionData,
    Topology,
    data_layout,
    topology,
)
from adapters.gcp.workflows import saga_yaml
from adapters.stack_outputs import OUTPUT_NAME, OUTPUT_VERSION
from infra.config import ConfigError, StackConfig
from infra.gcp.components import (
    Alerts,
    Bus,
    ConsumerArgs,
    ConsumerRoute,
    Databases,
    Function,
    FunctionSpec,
    Place,
    SagaWorkflow,
    Services,
    Source,
    member_of,
)
from infra.gcp.sources import GcpSources
from infra.protection import DataProtection

if TYPE_CHECKING:
    from handlers.core.app import App

COMPONENT_TYPE: Final = "switchyard:gcp:Stack"
DEFAULT_REGION: Final = "us-central1"
#: Where the functions' zip is written before upload (git-ignored).
BUILD_DIR: Final = source_archive.ROOT / "build" / "gcp"


@dataclass(frozen=True, slots=True)
class GcpStackArgs:
    """Everything the stack needs, already validated: the app, the switchyard config and
    the provider's project and region."""

    app: App
    config: StackConfig
    project: str
    region: str
    archive: Path
    archive_sha256: str


class GcpStack(pulumi.ComponentResource):
    """Everything one stack deploys on GCP, as children of one component."""

    def __init__(self, name: str, args: GcpStackArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.cloud = "gcp"
        app, config = args.app, args.config
        self.topology: Topology = topology(
            app, config.prefix, max_deliveries=config.max_deliveries,
            timeout_s=config.timeout_s, retention_days=config.archive_days)
        top = self.topology
        here = pulumi.ResourceOptions(parent=self)
        project_number = gcp.organizations.get_project_output(
            project_id=args.project, opts=pulumi.InvokeOutputOptions(parent=self)).number
        place = Place(args.project, args.region, project_number)

        services = Services(f"{name}-services", place, opts=here)
        # Every other resource waits for the APIs: a transformation is inherited by all
        # descendants of the components it is given to, unlike depends_on.
        after_services = services.services
        here = pulumi.ResourceOptions(parent=self,
                                      transformations=[_depends_on(after_services)])
        bus = Bus(f"{name}-bus", top, place, opts=here)
        self.layout = data_layout(app, config.prefix)
        protection = DataProtection(config.protect_data)
        databases = Databases(f"{name}-firestore", self.layout, config.prefix, place,
                              protection, opts=here)
        source = Source(f"{name}-source", args.archive, args.archive_sha256, place, opts=here)

        sources = GcpSources(f"{name}-sources", app, config.prefix, place, bus.events,
                             protection, opts=here)
        common: dict[str, pulumi.Input[str]] = {
            env.PROJECT: args.project, env.REGION: args.region,
            env.BUS_TOPIC: top.bus_topic, env.NOTIFICATIONS_TOPIC: top.notifications_topic,
            env.DECLINE_ABOVE_CENTS: str(int(config.payment_decline_above * 100)),
            # OTEL_* when the stack turns tracing on (README "Tracing").
            **config.tracing_environment(),
        }
        max_instances = config.max_concurrency

        # Saga: the step function, then the workflow compiled against its URL.
        steps = Function(top.saga_function, FunctionSpec(
            name=top.saga_function, entry_point=SAGA_ENTRY, account_id=top.saga_account_id,
            memory_mb=config.memory_mb, timeout_s=config.timeout_s,
            max_instances=max_instances,
            environment={**common, **_data_environment(self.layout.saga, databases),
                         env.BUCKETS: sources.environment(None)},
            description=f"Steps of the {app.saga.name} saga, called by its workflow."),
            source, place, opts=here)
        databases.grant(f"{name}-saga", steps.account, self.layout.saga, place, here)
        sources.grant(f"{name}-saga", None, member_of(steps.account, place))
        gcp.pubsub.TopicIAMMember(
            f"{name}-saga-bus-publisher", project=args.project, topic=bus.events.name,
            role="roles/pubsub.publisher",
            member=member_of(steps.account, place), opts=here)
        source_yaml = steps.url.apply(
            lambda url: saga_yaml(app.saga, url, timeout_s=config.timeout_s + 30))
        saga = SagaWorkflow(f"{name}-saga", top, steps, source_yaml, place, opts=here)

        self.consumers: dict[str, ConsumerRoute] = {}
        for consumer in app.consumers:
            environment = {**common, **_data_environment(self.layout.consumers[consumer.name],
                                                          databases),
                           env.BUCKETS: sources.environment(consumer.name)}
            if consumer.starts_saga:
                environment[env.WORKFLOW] = top.workflow
            self.consumers[consumer.name] = ConsumerRoute(
                f"{name}-{consumer.name}",
                ConsumerArgs(consumer=consumer, route=top.route(consumer.name), bus=bus,
                             databases=databases, data=self.layout.consumers[consumer.name],
                             source=source, memory_mb=config.memory_mb,
                             timeout_s=config.timeout_s,
                             # A consumer's own cap wins over the stack's, as on AWS.
                             max_instances=consumer.max_concurrency or max_instances,
                             environment=environment,
                             workflow_grant=saga.resource_name if consumer.starts_saga
                             else None),
                place, opts=here)

        for consumer_name, route in self.consumers.items():
            sources.grant(f"{name}-{consumer_name}", consumer_name,
                          member_of(route.function.account, place))

        self.api: Function | None = None
        if config.api:
            # Authenticated HTTPS: reachable from outside, but only callers granted
            # run.invoker on it (nobody by default, never allUsers) get through.
            self.api = Function(top.ingress_function, FunctionSpec(
                name=top.ingress_function, entry_point=INGRESS_ENTRY,
                account_id=top.ingress_account_id, memory_mb=config.memory_mb,
                timeout_s=config.timeout_s, ingress="ALLOW_ALL",
                max_instances=max_instances, environment=common,
                description="POST /events: CloudEvents or PutEvents in, 202 out."),
                source, place, opts=here)
            gcp.pubsub.TopicIAMMember(
                f"{name}-ingress-bus-publisher", project=args.project, topic=bus.events.name,
                role="roles/pubsub.publisher",
                member=member_of(self.api.account, place),
                opts=here)

        email: Any = config.alarm_email
        if email is not None and config.is_secret("alarmEmail"):
            email = pulumi.Output.secret(email)
        Alerts(f"{name}-alerts",
               {r.consumer: r.dead_letter_subscription for r in top.routes},
               top.workflow, place, email, opts=here)

        self.outputs: dict[str, Any] = {
            "busTopic": bus.events.name,
            "notificationsTopic": bus.notifications.name,
            "subscriptions": {c: r.subscription.name for c, r in self.consumers.items()},
            "deadLetterTopics": {c: r.dead_letter_topic.name
                                 for c, r in self.consumers.items()},
            "deadLetterSubscriptions": {c: r.dead_letter_subscription.name
                                        for c, r in self.consumers.items()},
            "functionUrls": {**{c: r.function.url for c, r in self.consumers.items()},
                             "saga": steps.url},
            "workflow": saga.workflow.name,
            "databases": {d: list(t) for d, t in self.layout.databases.items()},
            "sourceBucket": source.bucket.name,
        }
        if sources.bucket_names:
            self.outputs["bucketNames"] = sources.bucket_names
        if self.api is not None:
            self.outputs["apiUrl"] = self.api.url
        # What `switchyard dlq|replay|status` read (adapters.stack_outputs), in one output.
        self.outputs[OUTPUT_NAME] = {
            "version": OUTPUT_VERSION, "cloud": self.cloud, "prefix": config.prefix,
            "project": args.project, "busTopic": bus.events.name,
            "replaySubscription": bus.replay.name, "workflow": saga.workflow.name,
            "consumers": {c: {"subscription": r.subscription.name,
                              "deadLetterTopic": r.dead_letter_topic.name,
                              "deadLetterSubscription": r.dead_letter_subscription.name}
                          for c, r in self.consumers.items()},
        }
        self.register_outputs({"cloud": self.cloud, "prefix": config.prefix, **self.outputs})


def _data_environment(data: FunctionData, databases: Databases
                      ) -> dict[str, pulumi.Input[str]]:
    """Where a function's tables and idempotency records live (adapters.gcp.settings).

    Built from the databases' name outputs, so the function waits for its databases."""
    names = pulumi.Output.all(*[databases.databases[d].name for d in data.databases])
    return {key: names.apply(functools.partial(_constant, value))
            for key, value in data.environment().items()}


def _constant(value: str, _ready: object) -> str:
    """`value`, once the outputs it is applied to have resolved (an ordering, not data)."""
    return value


def _depends_on(resources: Sequence[pulumi.Resource]) -> pulumi.ResourceTransformation:
    def transform(args: pulumi.ResourceTransformationArgs
                  ) -> pulumi.ResourceTransformationResult | None:
        if not isinstance(args.resource, pulumi.CustomResource):
            return None
        opts = pulumi.ResourceOptions.merge(args.opts,
                                            pulumi.ResourceOptions(depends_on=list(resources)))
        return pulumi.ResourceTransformationResult(args.props, opts)
    return transform


def _provider_location() -> tuple[str, str]:
    """gcp:project and gcp:region, which the switchyard config does not own.

    Without gcp:project the provider's own default applies (GOOGLE_PROJECT, gcloud's
    config...), asked for through `getProject`; without gcp:region, us-central1.
    """
    provider = pulumi.Config("gcp")
    project = provider.get("project") or gcp.organizations.get_project().project_id
    if not project:
        raise ConfigError(pulumi.get_stack(), [
            "no GCP project: set one with `pulumi config set gcp:project <id>`"])
    return str(project), provider.get("region") or DEFAULT_REGION


def deploy(app: App, config: StackConfig) -> None:
    """Provision `app` on GCP as described by `config`."""
    project, region = _provider_location()
    archive, digest = source_archive.write(BUILD_DIR)
    stack = GcpStack(config.prefix, GcpStackArgs(app, config, project, region, archive,
                                                 digest))
    pulumi.export("cloud", stack.cloud)
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
