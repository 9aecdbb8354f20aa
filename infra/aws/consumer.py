"""One consumer's route: rule -> queue (+ DLQ, alarm) -> event source mapping -> function.

Everything is derived from the `Consumer` in the app description through
`adapters.aws.topology`, the same functions the moto end-to-end tests build from.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from adapters.aws import topology
from handlers.core.app import Consumer
from infra.aws.function import FunctionArgs, LambdaFunction, StackContext
from infra.config import StackConfig


@dataclass(frozen=True)
class ConsumerArgs:
    stack: StackContext
    consumer: Consumer
    notification_topic_arn: pulumi.Input[str]
    state_machine_arn: pulumi.Input[str]


class ConsumerRoute(pulumi.ComponentResource):
    def __init__(self, name: str, args: ConsumerArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:Consumer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        consumer, names, config = args.consumer, args.stack.names, args.stack.config
        spec = topology.queue_spec(config.max_deliveries, config.timeout_s)

        self.dlq = aws.sqs.Queue(
            f"{name}-dlq", name=names.dlq(consumer.name),
            message_retention_seconds=spec.dlq_retention_s,
            sqs_managed_sse_enabled=spec.sse, opts=child)
        self.queue = aws.sqs.Queue(
            f"{name}-queue", name=names.queue(consumer.name),
            visibility_timeout_seconds=spec.visibility_timeout_s,
            message_retention_seconds=spec.retention_s,
            sqs_managed_sse_enabled=spec.sse,
            redrive_policy=self.dlq.arn.apply(spec.redrive_policy), opts=child)
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow", queue_url=self.dlq.url,
            redrive_allow_policy=self.queue.arn.apply(spec.redrive_allow_policy), opts=child)

        self.rule = aws.cloudwatch.EventRule(
            f"{name}-rule", name=names.rule(consumer.name), event_bus_name=args.stack.bus_name,
            description=f"Events consumed by '{consumer.name}'",
            event_pattern=pulumi.Output.all(*_uploads(args.stack)).apply(
                lambda uploads: json.dumps(topology.event_pattern(args.stack.app, consumer,
                                                                  list(uploads)))),
            opts=child)
        retry = topology.target_retry_policy()
        # Queue policies first: EventBridge must be allowed to send before it targets.
        queue_policy = aws.sqs.QueuePolicy(
            f"{name}-queue-policy", queue_url=self.queue.url,
            policy=pulumi.Output.all(self.queue.arn, self.rule.arn).apply(
                lambda v: json.dumps(topology.queue_policy(v[0], [v[1]]))), opts=child)
        dlq_policy = aws.sqs.QueuePolicy(
            f"{name}-dlq-policy", queue_url=self.dlq.url,
            policy=pulumi.Output.all(self.dlq.arn, self.rule.arn).apply(
                lambda v: json.dumps(topology.queue_policy(v[0], [v[1]]))), opts=child)
        self.target = aws.cloudwatch.EventTarget(
            f"{name}-target", rule=self.rule.name, event_bus_name=args.stack.bus_name,
            target_id=f"{consumer.name}-queue", arn=self.queue.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_retry_attempts=retry["MaximumRetryAttempts"],
                maximum_event_age_in_seconds=retry["MaximumEventAgeInSeconds"]),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=self.dlq.arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[queue_policy, dlq_policy]))

        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-dlq-alarm", name=f"{names.dlq(consumer.name)}-not-empty",
            alarm_description=f"Events for '{consumer.name}' are dead-lettered: list them with "
                              "their reason (message attributes), fix, then redrive.",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.dlq.name}, statistic="Maximum", period=60,
            evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[args.stack.alarm_topic_arn],
            ok_actions=[args.stack.alarm_topic_arn], opts=child)

        function_name = names.function(consumer.name)
        settings = pulumi.Output.all(
            table_names=args.stack.table_names, bus_name=args.stack.bus_name,
            notification_topic_arn=args.notification_topic_arn,
            state_machine_arn=args.state_machine_arn, queue_url=self.queue.url,
            dlq_url=self.dlq.url, bucket_names=dict(args.stack.bucket_names),
        ).apply(lambda v: topology.consumer_settings(
            consumer, _wiring(v, config, args.stack.claims_bucket), v["queue_url"],
            v["dlq_url"]).environment())
        self.function = LambdaFunction(function_name, FunctionArgs(
            name=function_name, handler=topology.SQS_HANDLER,
            description=consumer.description or f"Consumer '{consumer.name}'",
            code=args.stack.code, code_sha256=args.stack.code_sha256, memory_mb=config.memory_mb,
            timeout_s=config.timeout_s, log_retention_days=config.log_retention_days,
            tracing=config.tracing_environment(), layers=config.tracing_layers(),
            environment=settings,
            grant_inputs={
                "queue_arn": self.queue.arn, "dlq_arn": self.dlq.arn,
                "table_arns": args.stack.table_arns, "bus_arn": args.stack.bus_arn,
                "topic_arn": args.notification_topic_arn,
                "state_machine_arn": args.state_machine_arn,
                "bucket_arns": dict(args.stack.bucket_arns),
            },
            grants=functools.partial(topology.consumer_grants, consumer,
                                     catalog=args.stack.app.catalog,
                                     claims_bucket=args.stack.claims_bucket)), opts=child)

        # The consumer's own declaration wins over the stack-wide default.
        max_concurrency = consumer.max_concurrency or config.max_concurrency
        batch_size = consumer.batch_size or config.batch_size
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{name}-source", event_source_arn=self.queue.arn,
            function_name=self.function.function.arn, batch_size=batch_size,
            # Batches over 10 need a batching window (an SQS event source rule).
            maximum_batching_window_in_seconds=1 if batch_size > 10 else None,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=max_concurrency) if max_concurrency else None,
            opts=child)
        self.register_outputs({"queueUrl": self.queue.url, "dlqUrl": self.dlq.url,
                               "ruleArn": self.rule.arn,
                               "functionArn": self.function.function.arn})


def _uploads(stack: StackContext) -> list[pulumi.Input[str]]:
    """S3 names of the buckets whose uploads are events (matched in S3's own shape)."""
    return [stack.bucket_names[b.name] for b in stack.app.buckets
            if b.events and b.name in stack.bucket_names]


def _wiring(values: Mapping[str, Any], config: StackConfig,
            claims_bucket: str | None = None) -> topology.Wiring:
    return topology.Wiring(
        bucket_names=values.get("bucket_names") or {}, claims_bucket=claims_bucket,
        table_names=values["table_names"], bus_name=values["bus_name"],
        notification_topic_arn=values["notification_topic_arn"],
        state_machine_arn=values["state_machine_arn"],
        decline_above_cents=int(config.payment_decline_above * 100),
        max_deliveries=config.max_deliveries)
