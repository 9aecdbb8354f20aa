"""The GCP building blocks of a stack, each a ComponentResource generated from the app.

Names and delivery settings come from `adapters.gcp.topology` (pure functions shared with
the emulator tests); this module only turns them into resources and grants. Every grant
names one exact resource (topic, subscription, function, database, workflow): no
project-wide roles without a condition, one identity per function.

Project-level grants remain only where the service has no resource-level IAM, each with
a condition naming one resource: `roles/datastore.user` (Firestore IAM is granted on
the project, narrowed to one database by a condition on its `resource.name`) and
`roles/workflows.invoker` (Workflows has no per-workflow IAM policy; the condition names
the workflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pulumi
import pulumi_gcp as gcp

from adapters.gcp import settings as env
from adapters.gcp.replay import replay_subscription, replay_subscription_request
from adapters.gcp.topology import (
    DEAD_LETTER_RETENTION_S,
    DEAD_LETTER_TOPIC_RETENTION_S,
    DataLayout,
    FunctionData,
    Route,
    Topology,
    topic_path,
)
from handlers.core.app import Consumer
from handlers.core.engine import PROCESSED
from infra.protection import DataProtection

RUNTIME: Final = "python312"
INTERNAL_ONLY: Final = "ALLOW_INTERNAL_ONLY"
#: Firestore's TTL field on idempotency records (adapters.gcp.firestore_store.TTL_FIELD;
#: not imported from there because that module needs google-cloud-firestore).
TTL_FIELD: Final = "expires_at"
PUBSUB_AGENT: Final = "service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com"
#: Project services the stack uses (Cloud Functions gen2 builds with Cloud Build into
#: Artifact Registry and runs on Cloud Run).
SERVICES: Final = (
    "pubsub.googleapis.com", "cloudfunctions.googleapis.com", "run.googleapis.com",
    "cloudbuild.googleapis.com", "artifactregistry.googleapis.com",
    "firestore.googleapis.com", "workflows.googleapis.com",
    "workflowexecutions.googleapis.com", "monitoring.googleapis.com",
    "iam.googleapis.com", "storage.googleapis.com", "cloudscheduler.googleapis.com",
)


@dataclass(frozen=True, slots=True)
class Place:
    """Where the stack lives: project id and number, region."""

    project: str
    region: str
    project_number: pulumi.Input[str]

    @property
    def pubsub_agent(self) -> pulumi.Output[str]:
        return pulumi.Output.from_input(self.project_number).apply(
            lambda n: "serviceAccount:" + PUBSUB_AGENT.format(number=n))


def _path(topic: gcp.pubsub.Topic, place: Place) -> pulumi.Output[str]:
    """`projects/P/topics/T`: the form dead-letter policies require (kept as an output of
    the topic so the subscription waits for it)."""
    return topic.name.apply(lambda name: topic_path(place.project, name))


def email_of(account: gcp.serviceaccount.Account, place: Place) -> pulumi.Output[str]:
    """A user-managed service account's email, `<account id>@<project>.iam.gservice
    account.com` by definition; derived from the account's id output so everything that
    names the account waits for it (and never depends on a computed-only attribute)."""
    return account.account_id.apply(lambda a: f"{a}@{place.project}.iam.gserviceaccount.com")


def member_of(account: gcp.serviceaccount.Account, place: Place) -> pulumi.Output[str]:
    return email_of(account, place).apply(lambda email: f"serviceAccount:{email}")


def service_uri(function: gcp.cloudfunctionsv2.Function) -> pulumi.Output[str]:
    """A gen2 function's Cloud Run service URL, `https://<name>-<hash>-<region code>.a.run.app`
    (`serviceConfig.uri`).

    The only URL to call an internal-ingress function at: Cloud Run treats requests from
    Pub/Sub push, Eventarc, Cloud Scheduler and Workflows as internal only when they are
    sent to the service's default run.app URL; at the cloudfunctions.net URL (the
    function's `url` output) they are external and refused. The same URL is the OIDC
    audience Cloud Run accepts for it.
    """
    def uri(config: gcp.cloudfunctionsv2.outputs.FunctionServiceConfig | None) -> str:
        value = config.uri if config is not None else None
        if not value:
            raise ValueError("a Cloud Functions gen2 function reported no serviceConfig.uri")
        return value
    return function.service_config.apply(uri)


# --- project services -----------------------------------------------------------------


class Services(pulumi.ComponentResource):
    """The APIs the stack needs, enabled (and left enabled on destroy: other things in
    the project may use them)."""

    def __init__(self, name: str, place: Place,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Services", name, None, opts)
        self.services = [
            gcp.projects.Service(f"{name}-{api.split('.')[0]}", project=place.project,
                                 service=api, disable_on_destroy=False,
                                 opts=pulumi.ResourceOptions(parent=self))
            for api in SERVICES
        ]
        self.register_outputs({"services": list(SERVICES)})


# --- bus ------------------------------------------------------------------------------


class Bus(pulumi.ComponentResource):
    """The event bus topic (retained, so it can be replayed with seek) and the
    notifications topic (the SNS counterpart)."""

    def __init__(self, name: str, topology: Topology, place: Place,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Bus", name, None, opts)
        retention = f"{topology.message_retention_s}s"
        self.events = gcp.pubsub.Topic(
            topology.bus_topic, name=topology.bus_topic, project=place.project,
            message_retention_duration=retention, opts=pulumi.ResourceOptions(parent=self))
        self.notifications = gcp.pubsub.Topic(
            topology.notifications_topic, name=topology.notifications_topic,
            project=place.project, message_retention_duration=retention,
            opts=pulumi.ResourceOptions(parent=self))
        # Replay by seek: a pull subscription nobody consumes, keeping acked messages.
        replay = replay_subscription_request(place.project, topology.prefix,
                                             topology.bus_topic, topology.message_retention_s)
        self.replay = gcp.pubsub.Subscription(
            replay_subscription(topology.prefix), name=replay_subscription(topology.prefix),
            project=place.project, topic=self.events.name,
            retain_acked_messages=replay["retain_acked_messages"],
            message_retention_duration=replay["message_retention_duration"],
            ack_deadline_seconds=replay["ack_deadline_seconds"],
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"events": self.events.name,
                               "notifications": self.notifications.name,
                               "replay": self.replay.name})


# --- database -------------------------------------------------------------------------


class Databases(pulumi.ComponentResource):
    """The Firestore (native mode) databases of the app's data layout, each with
    point-in-time recovery and, where idempotency records live, a TTL policy that deletes
    them once `expires_at` has passed.

    One database per data set (`adapters.gcp.topology.DataLayout`): Firestore grants stop
    at a database, so this is what lets each function be granted only its own data.
    Whether `pulumi destroy` deletes them follows `switchyard:protectData`
    (infra/protection.py).
    """

    def __init__(self, name: str, layout: DataLayout, prefix: str, place: Place,
                 protection: DataProtection,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Databases", name, None, opts)
        self.prefix = prefix
        with_records = {layout.saga.home, *layout.saga.steps.values(),
                        *(c.home for c in layout.consumers.values())}
        self.databases: dict[str, gcp.firestore.Database] = {}
        for database_id in layout.databases:
            database = gcp.firestore.Database(
                database_id, name=database_id, project=place.project,
                location_id=place.region, type="FIRESTORE_NATIVE",
                concurrency_mode="OPTIMISTIC",
                point_in_time_recovery_enablement="POINT_IN_TIME_RECOVERY_ENABLED",
                delete_protection_state=protection.firestore_delete_protection_state,
                deletion_policy=protection.firestore_deletion_policy,
                opts=protection.data_options(self))
            self.databases[database_id] = database
            if database_id in with_records:
                gcp.firestore.Field(
                    f"{database_id}-{PROCESSED}-ttl", project=place.project,
                    database=database.name, collection=PROCESSED, field=TTL_FIELD,
                    ttl_config=gcp.firestore.FieldTtlConfigArgs(),
                    # No single-field indexes on a TTL field: they cost writes and hotspot.
                    index_config=gcp.firestore.FieldIndexConfigArgs(indexes=[]),
                    # Kept with a kept database, or its idempotency records would never
                    # expire.
                    opts=protection.data_options(self))
        self.register_outputs({"databases": {d: list(t) for d, t in layout.databases.items()}})

    def grant(self, name: str, account: gcp.serviceaccount.Account, data: FunctionData,
              place: Place, opts: pulumi.ResourceOptions) -> list[gcp.projects.IAMMember]:
        """Read/write on exactly the databases holding this function's data. Firestore
        has no per-database IAM policy: the grant is a project binding whose condition
        names one database (`resource.name`), one binding per database."""
        grants = []
        for database_id in data.databases:
            resource = self.databases[database_id].name.apply(
                lambda db: f"projects/{place.project}/databases/{db}")
            grants.append(gcp.projects.IAMMember(
                f"{name}-datastore-{database_id.removeprefix(self.prefix + '-')}",
                project=place.project,
                role="roles/datastore.user", member=member_of(account, place),
                condition=gcp.projects.IAMMemberConditionArgs(
                    title=f"database-{database_id}"[:100],
                    description="Firestore IAM is per project; this names one database.",
                    expression=resource.apply(lambda r: f'resource.name == "{r}"')),
                opts=opts))
        return grants


# --- source ---------------------------------------------------------------------------


class Source(pulumi.ComponentResource):
    """A private bucket with the functions' zip (uniform access, no public access)."""

    def __init__(self, name: str, archive: Path, digest: str, place: Place,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Source", name, None, opts)
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket", name=f"{place.project}-{name}", project=place.project,
            location=place.region, uniform_bucket_level_access=True,
            public_access_prevention="enforced", force_destroy=True,
            versioning=gcp.storage.BucketVersioningArgs(enabled=False),
            opts=pulumi.ResourceOptions(parent=self))
        self.object = gcp.storage.BucketObject(
            f"{name}-zip", bucket=self.bucket.name, name=f"functions-{digest[:16]}.zip",
            source=pulumi.FileAsset(str(archive)), content_type="application/zip",
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"bucket": self.bucket.name, "object": self.object.name})


# --- functions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    entry_point: str
    account_id: str
    memory_mb: int
    timeout_s: int
    ingress: str = INTERNAL_ONLY
    max_instances: int | None = None
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    description: str = ""


class Function(pulumi.ComponentResource):
    """One Cloud Functions gen2 function with its own service account."""

    def __init__(self, name: str, spec: FunctionSpec, source: Source, place: Place,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Function", name, None, opts)
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa", account_id=spec.account_id, project=place.project,
            display_name=f"{spec.name} function",
            opts=pulumi.ResourceOptions(parent=self))
        self.function = gcp.cloudfunctionsv2.Function(
            name, name=spec.name, project=place.project, location=place.region,
            description=spec.description or None,
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime=RUNTIME, entry_point=spec.entry_point,
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                    storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=source.bucket.name, object=source.object.name))),
            service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                available_memory=f"{spec.memory_mb}M", timeout_seconds=spec.timeout_s,
                ingress_settings=spec.ingress,
                service_account_email=email_of(self.account, place),
                all_traffic_on_latest_revision=True,
                max_instance_count=spec.max_instances,
                environment_variables=dict(spec.environment)),
            opts=pulumi.ResourceOptions(parent=self))
        self.url = service_uri(self.function)
        self.email = email_of(self.account, place)
        self.register_outputs({"name": self.function.name, "url": self.url,
                               "serviceAccount": self.email})

    def allow_invoker(self, name: str, member: pulumi.Input[str], place: Place,
                      parent: pulumi.Resource) -> gcp.cloudrunv2.ServiceIamMember:
        """Let `member` invoke this function and nothing else: run.invoker on the
        function's Cloud Run service (gen2 functions are served by a service of the same
        name)."""
        return gcp.cloudrunv2.ServiceIamMember(
            name, project=place.project, location=place.region, name=self.function.name,
            role="roles/run.invoker", member=member,
            opts=pulumi.ResourceOptions(parent=parent))


def _topic_publisher(name: str, topic: gcp.pubsub.Topic, member: pulumi.Input[str],
                     parent: pulumi.Resource) -> gcp.pubsub.TopicIAMMember:
    return gcp.pubsub.TopicIAMMember(name, project=topic.project, topic=topic.name,
                                     role="roles/pubsub.publisher", member=member,
                                     opts=pulumi.ResourceOptions(parent=parent))


# --- consumers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerArgs:
    consumer: Consumer
    route: Route
    bus: Bus
    databases: Databases
    data: FunctionData
    source: Source
    memory_mb: int
    timeout_s: int
    max_instances: int | None
    environment: Mapping[str, pulumi.Input[str]]
    workflow_grant: pulumi.Input[str] | None = None  # workflow resource name, if it starts sagas


class ConsumerRoute(pulumi.ComponentResource):
    """A consumer end to end: function + identity, push subscription with OIDC, retry and
    dead-letter policies, the dead-letter topic with a pull subscription, and the grants
    that make dead-lettering work (the Pub/Sub service agent)."""

    def __init__(self, name: str, args: ConsumerArgs, place: Place,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Consumer", name, None, opts)
        route, consumer, bus = args.route, args.consumer, args.bus
        here = pulumi.ResourceOptions(parent=self)

        self.dead_letter_topic = gcp.pubsub.Topic(
            route.dead_letter_topic, name=route.dead_letter_topic, project=place.project,
            message_retention_duration=f"{DEAD_LETTER_TOPIC_RETENTION_S}s", opts=here)
        self.dead_letter_subscription = gcp.pubsub.Subscription(
            f"{route.dead_letter_subscription}-pull", name=route.dead_letter_subscription,
            project=place.project, topic=self.dead_letter_topic.name,
            ack_deadline_seconds=60, message_retention_duration=f"{DEAD_LETTER_RETENTION_S}s",
            retain_acked_messages=False,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=here)

        environment = {**args.environment, env.CONSUMER: consumer.name,
                       env.DEAD_LETTER_TOPIC: route.dead_letter_topic,
                       # The last attempt dead-letters with its error as the reason;
                       # Pub/Sub's own dead-lettering after as many attempts has none.
                       env.MAX_DELIVERIES: str(route.max_delivery_attempts)}
        self.function = Function(
            route.function,
            FunctionSpec(name=route.function, entry_point="consume",
                         account_id=route.account_id, memory_mb=args.memory_mb,
                         timeout_s=args.timeout_s, max_instances=args.max_instances,
                         environment=environment, description=consumer.description),
            args.source, place, opts=here)
        member = member_of(self.function.account, place)
        args.databases.grant(name, self.function.account, args.data, place, here)
        _topic_publisher(f"{name}-dlq-publisher", self.dead_letter_topic, member, self)
        if consumer.emits:
            _topic_publisher(f"{name}-bus-publisher", bus.events, member, self)
        if consumer.notifies:
            _topic_publisher(f"{name}-notifications-publisher", bus.notifications, member,
                             self)
        if consumer.starts_saga and args.workflow_grant is not None:
            gcp.projects.IAMMember(
                f"{name}-workflow-invoker", project=place.project,
                role="roles/workflows.invoker", member=member,
                condition=gcp.projects.IAMMemberConditionArgs(
                    title="this-workflow-only",
                    expression=pulumi.Output.from_input(args.workflow_grant).apply(
                        lambda r: f'resource.name == "{r}"')),
                opts=here)

        # Pub/Sub pushes as this identity, which may invoke this one function only.
        self.invoker = gcp.serviceaccount.Account(
            f"{name}-push-sa", account_id=route.invoker_account_id, project=place.project,
            display_name=f"Pub/Sub push to {route.function}", opts=here)
        invoker_member = member_of(self.invoker, place)
        self.function.allow_invoker(f"{name}-push-invoker", invoker_member, place, self)
        # The service agent mints the OIDC tokens for the push identity.
        gcp.serviceaccount.IAMMember(
            f"{name}-push-token-creator", service_account_id=self.invoker.name,
            role="roles/iam.serviceAccountTokenCreator", member=place.pubsub_agent, opts=here)

        self.subscription = gcp.pubsub.Subscription(
            route.subscription, name=route.subscription, project=place.project,
            topic=bus.events.name, filter=route.filter,
            ack_deadline_seconds=route.ack_deadline_seconds,
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=self.function.url,
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=email_of(self.invoker, place),
                    audience=self.function.url)),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=f"{route.minimum_backoff_s}s",
                maximum_backoff=f"{route.maximum_backoff_s}s"),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=_path(self.dead_letter_topic, place),
                max_delivery_attempts=route.max_delivery_attempts),
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=here)

        # Without these, Pub/Sub cannot forward to the dead-letter topic nor ack the
        # source message, and a poison message loops forever.
        _topic_publisher(f"{name}-agent-dlq-publisher", self.dead_letter_topic,
                         place.pubsub_agent, self)
        gcp.pubsub.SubscriptionIAMMember(
            f"{name}-agent-subscriber", project=place.project,
            subscription=self.subscription.name, role="roles/pubsub.subscriber",
            member=place.pubsub_agent, opts=here)

        self.register_outputs({
            "subscription": self.subscription.name,
            "deadLetterTopic": self.dead_letter_topic.name,
            "deadLetterSubscription": self.dead_letter_subscription.name,
            "function": self.function.function.name,
            "url": self.function.url,
        })


# --- saga -----------------------------------------------------------------------------


class SagaWorkflow(pulumi.ComponentResource):
    """The saga step function and the Cloud Workflows workflow compiled from the saga,
    with its own identity that may invoke the step function only."""

    def __init__(self, name: str, topology: Topology, step_function: Function,
                 source_yaml: pulumi.Output[str], place: Place,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Saga", name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        self.account = gcp.serviceaccount.Account(
            f"{name}-workflow-sa", account_id=topology.workflow_account_id,
            project=place.project, display_name=f"{topology.workflow} workflow", opts=here)
        step_function.allow_invoker(f"{name}-workflow-invoker",
                                    member_of(self.account, place), place, self)
        self.workflow = gcp.workflows.Workflow(
            topology.workflow, name=topology.workflow, project=place.project,
            region=place.region, description="Order saga, compiled from handlers/saga.py",
            service_account=email_of(self.account, place), source_contents=source_yaml,
            call_log_level="LOG_ERRORS_ONLY", deletion_protection=False,
            opts=pulumi.ResourceOptions(parent=self))
        self.resource_name = self.workflow.name.apply(
            lambda w: f"projects/{place.project}/locations/{place.region}/workflows/{w}")
        self.register_outputs({"workflow": self.workflow.name,
                               "serviceAccount": email_of(self.account, place)})


# --- alerts ---------------------------------------------------------------------------


class Alerts(pulumi.ComponentResource):
    """An alert on every dead-letter backlog and on sagas that need attention, mailed to
    `alarmEmail` when it is set."""

    def __init__(self, name: str, dead_letter_subscriptions: Mapping[str, str],
                 workflow: str, place: Place, email: pulumi.Input[str] | None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:gcp:Alerts", name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        channels: list[pulumi.Input[str]] = []
        if email is not None:
            self.channel = gcp.monitoring.NotificationChannel(
                f"{name}-email", project=place.project, type="email",
                display_name=f"{name} alarms", labels={"email_address": email}, opts=here)
            channels.append(self.channel.id)
        self.policies = []
        for consumer, subscription in dead_letter_subscriptions.items():
            self.policies.append(self._policy(
                f"{name}-{consumer}-dlq", f"{subscription}: dead letters waiting", (
                    'resource.type = "pubsub_subscription" AND '
                    f'resource.labels.subscription_id = "{subscription}" AND '
                    'metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"'),
                "ALIGN_MAX", place, channels,
                "Events were dead-lettered. List them by pulling the subscription; "
                "redrive after a fix by re-publishing them to the bus."))
        self.policies.append(self._policy(
            f"{name}-saga-attention", f"{workflow}: saga needs attention", (
                'resource.type = "workflows.googleapis.com/Workflow" AND '
                f'resource.labels.workflow_id = "{workflow}" AND '
                'metric.type = "workflows.googleapis.com/finished_execution_count" AND '
                'metric.labels.status = "FAILED"'),
            "ALIGN_COUNT", place, channels,
            "A saga execution failed: a compensation kept failing. See the execution."))
        self.register_outputs({"policies": [p.display_name for p in self.policies]})

    def _policy(self, name: str, title: str, metric_filter: str, aligner: str, place: Place,
                channels: list[pulumi.Input[str]], doc: str) -> gcp.monitoring.AlertPolicy:
        return gcp.monitoring.AlertPolicy(
            name, project=place.project, display_name=title, combiner="OR",
            conditions=[gcp.monitoring.AlertPolicyConditionArgs(
                display_name=title,
                condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                    filter=metric_filter, comparison="COMPARISON_GT", threshold_value=0,
                    duration="60s",
                    aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                        alignment_period="60s", per_series_aligner=aligner)]))],
            notification_channels=channels or None,
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=doc, mime_type="text/markdown"),
            opts=pulumi.ResourceOptions(parent=self))
