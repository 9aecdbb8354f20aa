"""SNS topics: notifications (the Notifier port) and alarms (DLQs, stuck sagas).

Both are encrypted. The notification topic uses the AWS-managed SNS key; the alarm topic
needs its own key, because CloudWatch alarms cannot publish to a topic under the
AWS-managed key (its key policy cannot grant them).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from adapters.aws import topology
from adapters.aws.topology import Names
from infra.config import StackConfig
from infra.protection import DataProtection


class Topics(pulumi.ComponentResource):
    def __init__(self, name: str, names: Names, config: StackConfig,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:Topics", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.notifications = aws.sns.Topic(
            f"{name}-notifications", name=names.notifications_topic(),
            kms_master_key_id="alias/aws/sns", opts=child)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.alarm_key = aws.kms.Key(
            f"{name}-alarms-key", description=f"Encrypts {names.alarms_topic()}",
            enable_key_rotation=True,
            # Dev stacks: the shortest wait KMS allows once `pulumi destroy` schedules it.
            deletion_window_in_days=DataProtection(
                config.protect_data).kms_deletion_window_days,
            policy=account.account_id.apply(
                lambda a: json.dumps(topology.alarm_key_policy(a))), opts=child)
        self.alarms = aws.sns.Topic(
            f"{name}-alarms", name=names.alarms_topic(), kms_master_key_id=self.alarm_key.arn,
            opts=child)
        if config.alarm_email:
            email: pulumi.Input[str] = config.alarm_email
            if config.is_secret("alarmEmail"):
                email = pulumi.Output.secret(config.alarm_email)
            aws.sns.TopicSubscription(f"{name}-alarms-email", topic=self.alarms.arn,
                                      protocol="email", endpoint=email, opts=child)
        self.register_outputs({"notificationTopicArn": self.notifications.arn,
                               "alarmTopicArn": self.alarms.arn})
