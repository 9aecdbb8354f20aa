"""Buckets and schedules: the app's storage and its event sources other than producers.

Per declared bucket: a private S3 bucket (public access blocked, owner-enforced objects,
SSE-KMS by default, TLS-only bucket policy), a lifecycle rule when it expires objects
(the claim-check bucket), and EventBridge notifications when it produces events (the
uploads bucket). S3 sends those to the account's *default* bus, so a default-bus rule
forwards exactly these buckets' `Object Created` events to the app's bus (its own role
allowed only PutEvents on that bus; retry policy and a DLQ, like every async edge).

Per declared schedule: an EventBridge Scheduler schedule (UTC cron from the app
description) whose universal target puts the catalog event on the app's bus, with a
retry policy and a dead-letter queue; one role for the schedules, allowed PutEvents on
the bus and SendMessage to that DLQ only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from adapters.aws import buckets, scheduler, topology
from adapters.aws.topology import Names
from handlers.core.app import App
from infra.config import StackConfig
from infra.protection import DataProtection


def _dlq_alarm(name: str, queue: aws.sqs.Queue, what: str, alarm_topic_arn: pulumi.Input[str],
               opts: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        f"{name}-alarm", name=queue.name.apply(lambda n: f"{n}-not-empty"),
        alarm_description=f"{what} could not be delivered to the bus: inspect, fix, redrive.",
        namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": queue.name}, statistic="Maximum", period=60,
        evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching", alarm_actions=[alarm_topic_arn], opts=opts)


class Sources(pulumi.ComponentResource):
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, app: App, names: Names, config: StackConfig,
                 bus_name: pulumi.Input[str], bus_arn: pulumi.Input[str],
                 alarm_topic_arn: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:Sources", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.protect_data = config.protect_data
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        self.bucket_names, self.bucket_arns = {}, {}
        self.buckets: dict[str, aws.s3.Bucket] = {}
        for bucket in app.buckets:
            self._bucket(f"{name}-{bucket.name}", bucket, names, account, child)
        uploads = [self.bucket_names[b.name] for b in app.buckets if b.events]
        self.forward_rule = self._forward(name, names, uploads, bus_arn, alarm_topic_arn,
                                          account, child) if uploads else None
        self.schedules = self._schedules(name, app, names, bus_arn, alarm_topic_arn, account,
                                         child) if app.schedules else {}
        self.register_outputs({"bucketNames": self.bucket_names})

    def _bucket(self, name: str, bucket: Any, names: Names, account: pulumi.Output[str],
                child: pulumi.ResourceOptions) -> None:
        physical = account.apply(lambda a: buckets.bucket_name(names.prefix, bucket.name, a))
        # Dev stacks empty a bucket on destroy (S3 refuses to delete one holding objects);
        # with protectData the bucket and its objects outlive the stack.
        protection = DataProtection(self.protect_data)
        s3 = aws.s3.Bucket(name, bucket=physical, force_destroy=protection.force_destroy,
                           opts=protection.data_options(self))
        depends = protection.data_options(self, depends_on=[s3])
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=s3.id,
            block_public_acls=True, ignore_public_acls=True, block_public_policy=True,
            restrict_public_buckets=True, opts=depends)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=s3.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=depends)
        rule = buckets.ENCRYPTION["Rules"][0]
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=s3.id, rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.
                    BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm=rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]),
                    bucket_key_enabled=rule["BucketKeyEnabled"])], opts=depends)
        aws.s3.BucketPolicy(f"{name}-tls-only", bucket=s3.id, policy=s3.arn.apply(
            lambda arn: json.dumps(buckets.tls_only_policy(arn))), opts=depends)
        for lifecycle in buckets.lifecycle_rules(bucket):
            aws.s3.BucketLifecycleConfiguration(
                f"{name}-lifecycle", bucket=s3.id, rules=[
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id=lifecycle["ID"], status=lifecycle["Status"],
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                            days=lifecycle["Expiration"]["Days"]),
                        abort_incomplete_multipart_upload=aws.s3.
                        BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                            days_after_initiation=1))], opts=depends)
        if bucket.events:
            aws.s3.BucketNotification(f"{name}-notifications", bucket=s3.id, eventbridge=True,
                                      opts=depends)
        self.buckets[bucket.name] = s3
        self.bucket_names[bucket.name] = s3.bucket
        # Built from the name (S3 ARNs have no region or account): what the policies name.
        self.bucket_arns[bucket.name] = s3.bucket.apply(lambda n: f"arn:aws:s3:::{n}")

    def _forward(self, name: str, names: Names, uploads: list[pulumi.Output[str]],
                 bus_arn: pulumi.Input[str], alarm_topic_arn: pulumi.Input[str],
                 account: pulumi.Output[str], child: pulumi.ResourceOptions
                 ) -> aws.cloudwatch.EventRule:
        rule_name = buckets.forward_rule_name(names.prefix)
        rule = aws.cloudwatch.EventRule(
            f"{name}-uploads-forward", name=rule_name, event_bus_name="default",
            description="S3 Object Created of the uploads buckets -> the app's bus",
            event_pattern=pulumi.Output.all(*uploads).apply(
                lambda physical: json.dumps(buckets.upload_pattern(list(physical)))),
            opts=child)
        dlq = aws.sqs.Queue(f"{name}-uploads-forward-dlq", name=f"{rule_name}-dlq",
                            message_retention_seconds=topology.DLQ_RETENTION_S,
                            sqs_managed_sse_enabled=True, opts=child)
        dlq_policy = aws.sqs.QueuePolicy(
            f"{name}-uploads-forward-dlq-policy", queue_url=dlq.url,
            policy=pulumi.Output.all(dlq.arn, rule.arn).apply(
                lambda v: json.dumps(topology.queue_policy(v[0], [v[1]]))), opts=child)
        role = aws.iam.Role(
            f"{name}-uploads-forward-role", name=Names.role(rule_name),
            description="Lets the uploads rule put S3 events on the app's bus only",
            # Only EventBridge, delivering for this rule of this account (its target's role).
            assume_role_policy=pulumi.Output.all(account, rule.arn).apply(
                lambda v: json.dumps(topology.assume_role_policy("events.amazonaws.com",
                                                                 v[0], v[1]))),
            opts=child)
        # What the rule forwards is S3's own event, unchanged: that Source and DetailType.
        forwarded = [(buckets.S3_SOURCE, buckets.S3_OBJECT_CREATED)]
        policy = aws.iam.RolePolicy(
            f"{name}-uploads-forward-policy", role=role.id, name="least-privilege",
            policy=pulumi.Output.from_input(bus_arn).apply(
                lambda arn: json.dumps(scheduler.role_policy(arn, forwarded))), opts=child)
        retry = topology.target_retry_policy()
        aws.cloudwatch.EventTarget(
            f"{name}-uploads-forward-target", rule=rule.name, event_bus_name="default",
            target_id="app-bus", arn=bus_arn, role_arn=role.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_retry_attempts=retry["MaximumRetryAttempts"],
                maximum_event_age_in_seconds=retry["MaximumEventAgeInSeconds"]),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=dlq.arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, dlq_policy]))
        _dlq_alarm(f"{name}-uploads-forward-dlq", dlq, "An upload's S3 event",
                   alarm_topic_arn, child)
        return rule

    def _schedules(self, name: str, app: App, names: Names, bus_arn: pulumi.Input[str],
                   alarm_topic_arn: pulumi.Input[str], account: pulumi.Output[str],
                   child: pulumi.ResourceOptions) -> Mapping[str, aws.scheduler.Schedule]:
        dlq = aws.sqs.Queue(f"{name}-schedules-dlq", name=f"{names.prefix}-schedules-dlq",
                            message_retention_seconds=topology.DLQ_RETENTION_S,
                            sqs_managed_sse_enabled=True, opts=child)
        group = aws.scheduler.ScheduleGroup(f"{name}-schedules", name=f"{names.prefix}",
                                            opts=child)
        role_name = Names.role(f"{names.prefix}-schedules")
        role = aws.iam.Role(
            f"{name}-schedules-role", name=role_name,
            description="Lets the app's schedules put events on its bus only",
            # Only Scheduler, for this account's schedule group (AWS scopes the condition to
            # the group, never to one schedule).
            assume_role_policy=pulumi.Output.all(account, group.arn).apply(
                lambda v: json.dumps(topology.assume_role_policy("scheduler.amazonaws.com",
                                                                 v[0], v[1]))),
            opts=child)
        publishes = scheduler.published(app.schedules, app.catalog)
        policy = aws.iam.RolePolicy(
            f"{name}-schedules-policy", role=role.id, name="least-privilege",
            policy=pulumi.Output.all(bus_arn, dlq.arn).apply(
                lambda v: json.dumps(scheduler.role_policy(v[0], publishes, v[1]))),
            opts=child)
        _dlq_alarm(f"{name}-schedules-dlq", dlq, "A scheduled event", alarm_topic_arn, child)
        out = {}
        for schedule in app.schedules:
            spec = app.catalog[schedule.emits]
            retry = scheduler.target(schedule, app.catalog, "", "", "")["RetryPolicy"]
            out[schedule.name] = aws.scheduler.Schedule(
                f"{name}-{schedule.name}", name=f"{names.prefix}-{schedule.name}",
                group_name=group.name, description=schedule.description or None,
                schedule_expression=scheduler.expression(schedule),
                schedule_expression_timezone="UTC",
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                target=aws.scheduler.ScheduleTargetArgs(
                    arn=bus_arn, role_arn=role.arn, input=scheduler.detail_template(schedule),
                    eventbridge_parameters=aws.scheduler.ScheduleTargetEventbridgeParametersArgs(
                        source=spec.source, detail_type=spec.detail_type),
                    retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                        maximum_retry_attempts=retry["MaximumRetryAttempts"],
                        maximum_event_age_in_seconds=retry["MaximumEventAgeInSeconds"]),
                    dead_letter_config=aws.scheduler.ScheduleTargetDeadLetterConfigArgs(
                        arn=dlq.arn)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
        return out
