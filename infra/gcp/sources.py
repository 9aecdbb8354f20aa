"""Buckets and schedules on GCP, generated from the app description.

Per bucket: a Cloud Storage bucket with uniform bucket-level access, public access
prevention enforced and (for the claim-check bucket) a lifecycle rule deleting objects
after `expire_days`. The uploads bucket notifies the bus topic (`OBJECT_FINALIZE`,
`JSON_API_V1`) with a `ce-type` attribute, so the file processor's existing filtered push
subscription (retry + dead-letter topic) delivers it; the Cloud Storage service agent is
granted publisher on the bus. Per schedule: a Cloud Scheduler job publishing to the bus
with retries (its messages carry `ce-type` and the schedule's name; the adapter turns
the publish time into the slot). Bucket IAM is per function: objectViewer on what it
reads, objectCreator on the claim-check bucket for functions that publish.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

from adapters.gcp import buckets, storage_events
from handlers.core.app import App
from infra.gcp.components import Place
from infra.protection import DataProtection

#: Cloud Storage's service agent (publishes the bucket notifications), by definition.
STORAGE_AGENT = "service-{number}@gs-project-accounts.iam.gserviceaccount.com"


class GcpSources(pulumi.ComponentResource):
    def __init__(self, name: str, app: App, prefix: str, place: Place,
                 bus_topic: gcp.pubsub.Topic, protection: DataProtection,
                 opts: pulumi.ResourceOptions | None = None
                 ) -> None:
        super().__init__("switchyard:gcp:Sources", name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        self.app, self.place = app, place
        self.bucket_names: dict[str, str] = {
            b.name: buckets.bucket_name(prefix, b.name, place.project) for b in app.buckets}
        self.buckets: dict[str, gcp.storage.Bucket] = {}
        for bucket in app.buckets:
            lifecycle = [gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type=r["action"]["type"]),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    age=r["condition"]["age"])) for r in buckets.lifecycle_rules(bucket)]
            self.buckets[bucket.name] = gcp.storage.Bucket(
                f"{name}-{bucket.name}", name=self.bucket_names[bucket.name],
                project=place.project, location=place.region,
                uniform_bucket_level_access=True, public_access_prevention="enforced",
                # Dev stacks empty a bucket on destroy (Cloud Storage refuses to delete one
                # holding objects); with protectData the bucket outlives the stack.
                force_destroy=protection.force_destroy, lifecycle_rules=lifecycle or None,
                opts=protection.data_options(self))
        uploads = [b for b in app.buckets if b.events]
        if uploads:
            publisher = gcp.pubsub.TopicIAMMember(
                f"{name}-storage-agent-publisher", project=place.project,
                topic=bus_topic.name, role="roles/pubsub.publisher",
                member=pulumi.Output.from_input(place.project_number).apply(
                    lambda n: "serviceAccount:" + STORAGE_AGENT.format(number=n)), opts=here)
            for bucket in uploads:
                gcp.storage.Notification(
                    f"{name}-{bucket.name}-finalized", bucket=self.buckets[bucket.name].name,
                    payload_format="JSON_API_V1", topic=bus_topic.id,
                    event_types=[storage_events.OBJECT_FINALIZE],
                    custom_attributes=storage_events.notification_attributes(),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[publisher]))
        self.jobs: dict[str, gcp.cloudscheduler.Job] = {}
        if app.schedules:
            for schedule in app.schedules:
                message = storage_events.scheduler_message(schedule.name, schedule.emits)
                self.jobs[schedule.name] = gcp.cloudscheduler.Job(
                    f"{name}-{schedule.name}", name=f"{prefix}-{schedule.name}",
                    project=place.project, region=place.region,
                    description=schedule.description or None, schedule=schedule.cron,
                    time_zone="Etc/UTC",
                    retry_config=gcp.cloudscheduler.JobRetryConfigArgs(
                        retry_count=buckets.SCHEDULER_RETRIES, min_backoff_duration="10s",
                        max_backoff_duration="300s", max_doublings=4),
                    pubsub_target=gcp.cloudscheduler.JobPubsubTargetArgs(
                        topic_name=bus_topic.id, data=message["data"],
                        attributes=message["attributes"]),
                    opts=here)
        self.register_outputs({"bucketNames": self.bucket_names})

    def environment(self, consumer_name: str | None) -> str:
        """SWITCHYARD_BUCKETS for one consumer (None: the saga steps)."""
        if consumer_name is None:
            claims = buckets.claims_name(self.app)
            return "{}" if not (claims and self.app.saga.emits) else \
                f'{{"{claims}":"{self.bucket_names[claims]}"}}'
        return buckets.settings_json(self.app, self.app.consumer(consumer_name),
                                     self.bucket_names)

    def grant(self, name: str, consumer_name: str | None, member: pulumi.Input[str]) -> None:
        """Bucket IAM for one function's service account: exactly its buckets."""
        here = pulumi.ResourceOptions(parent=self)
        if consumer_name is None:
            claims = buckets.claims_name(self.app)
            read: list[str] = []
            write = [claims] if claims and self.app.saga.emits else []
        else:
            read, write = buckets.access(self.app, self.app.consumer(consumer_name))
        roles: Mapping[str, list[str]] = {buckets.READER_ROLE: read, buckets.WRITER_ROLE: write}
        for role, names in roles.items():
            for bucket in names:
                gcp.storage.BucketIAMMember(
                    f"{name}-{bucket}-{role.rsplit('.', 1)[-1]}",
                    bucket=self.buckets[bucket].name, role=role, member=member, opts=here)
