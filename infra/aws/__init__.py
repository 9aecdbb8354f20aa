"""AWS: provisions the app on AWS (EventBridge, SQS, Lambda, DynamoDB, SNS, Step Functions).

`deploy(app, config)` is the package's one entry point, called by `infra.program` when
`switchyard:cloud` is `aws`. Everything is a child of one `AwsStack` component and is
generated from the app description: a route (rule, queue, DLQ, alarm, function) per
consumer, a table per declared table, the saga compiled to a state machine. Nothing here
may import `pulumi_gcp`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from adapters.aws.topology import Names
from adapters.stack_outputs import OUTPUT_NAME, OUTPUT_VERSION
from infra.aws.api import IngestApi, IngestArgs
from infra.aws.bus import EventBus
from infra.aws.consumer import ConsumerArgs, ConsumerRoute
from infra.aws.function import StackContext
from infra.aws.packaging import write_zip
from infra.aws.saga import SagaStateMachine
from infra.aws.sources import Sources
from infra.aws.tables import Tables
from infra.aws.topics import Topics
from infra.config import StackConfig
from infra.protection import DataProtection

if TYPE_CHECKING:
    from handlers.core.app import App

COMPONENT_TYPE = "switchyard:aws:Stack"


class AwsStack(pulumi.ComponentResource):
    """Everything one stack deploys on AWS, as children of one component."""

    def __init__(
        self,
        name: str,
        app: App,
        config: StackConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.cloud = "aws"
        names = Names(config.prefix)
        names.check(app, config.api)
        child = pulumi.ResourceOptions(parent=self)
        archive = write_zip()
        if archive.bytecode.startswith("none"):
            pulumi.log.warn(f"Lambda archive without bytecode ({archive.bytecode})")
        code = pulumi.FileArchive(str(archive.path))

        self.bus = EventBus(f"{name}-events", names, config.archive_days, opts=child)
        self.tables = Tables(f"{name}-tables", app, names, DataProtection(config.protect_data),
                             opts=child)
        self.topics = Topics(f"{name}-topics", names, config, opts=child)
        bus_name, bus_arn = self.bus.bus.name, self.bus.bus.arn
        self.sources = Sources(f"{name}-sources", app, names, config, bus_name, bus_arn,
                               self.topics.alarms.arn, opts=child)

        stack = StackContext(
            app=app, config=config, names=names, bus_name=bus_name, bus_arn=bus_arn,
            table_names=self.tables.names, table_arns=self.tables.arns, code=code,
            code_sha256=archive.sha256_base64, alarm_topic_arn=self.topics.alarms.arn,
            bucket_names=self.sources.bucket_names, bucket_arns=self.sources.bucket_arns)
        self.saga = SagaStateMachine(f"{name}-saga", stack, opts=child)
        self.consumers = {
            consumer.name: ConsumerRoute(f"{name}-{consumer.name}", ConsumerArgs(
                stack=stack, consumer=consumer,
                notification_topic_arn=self.topics.notifications.arn,
                state_machine_arn=self.saga.state_machine.arn), opts=child)
            for consumer in app.consumers
        }
        self.api = IngestApi(f"{name}-ingest", IngestArgs(
            config=config, names=names, bus_name=bus_name, bus_arn=bus_arn, code=code,
            code_sha256=archive.sha256_base64, catalog=app.catalog), opts=child) \
            if config.api else None

        self.outputs: dict[str, pulumi.Input[object]] = {
            "cloud": self.cloud,
            "busName": bus_name,
            "busArn": bus_arn,
            "queueUrls": {n: c.queue.url for n, c in self.consumers.items()},
            "dlqUrls": {n: c.dlq.url for n, c in self.consumers.items()},
            "tableNames": self.tables.names,
            "stateMachineArn": self.saga.state_machine.arn,
            "notificationTopicArn": self.topics.notifications.arn,
            "alarmTopicArn": self.topics.alarms.arn,
            "lambdaBytecode": archive.bytecode,
        }
        if self.sources.bucket_names:
            self.outputs["bucketNames"] = self.sources.bucket_names
        if self.api is not None:
            self.outputs["apiUrl"] = self.api.url
        # What `switchyard dlq|replay|status` read (adapters.stack_outputs), in one output.
        self.outputs[OUTPUT_NAME] = {
            "version": OUTPUT_VERSION, "cloud": self.cloud, "prefix": config.prefix,
            "busName": bus_name, "busArn": bus_arn,
            "archiveName": self.bus.archive.name, "archiveArn": self.bus.archive.arn,
            "stateMachineArn": self.saga.state_machine.arn,
            "consumers": {n: {"queueUrl": c.queue.url, "dlqUrl": c.dlq.url,
                              "ruleArn": c.rule.arn,
                              # The rule target's dead-letter queue: the consumer's DLQ.
                              "targetDlqUrl": c.dlq.url}
                          for n, c in self.consumers.items()},
        }
        self.register_outputs({"prefix": config.prefix, **self.outputs})


def deploy(app: App, config: StackConfig) -> None:
    """Provision `app` on AWS as described by `config`."""
    stack = AwsStack(config.prefix, app, config)
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
