"""`switchyard send --stack S` on AWS: PutEvents on the stack's EventBridge bus.

Events go through the same `EventBridgePublisher` the functions publish with, so the
wire shape (our `{metadata, data}` envelope, DetailType from the catalog), the entry size
limit, batches of `AWS_MAX_ENTRIES` and the partial-failure handling are the functions'
own: only failed entries are re-sent, and only while AWS's error code says a retry can
help. Entries name the bus by its ARN (PutEvents takes a name or an ARN), so they go to
the stack's bus and no other, whatever bus an input entry's `EventBusName` named.

The client is built like `cli.ops.aws`: a boto3 session in the bus's region with the
caller's usual credentials (environment, profile, SSO...). Credentials are looked up
before anything is sent, so "no credentials" is said once, not per entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.aws.eventbridge_publisher import EntryTooLarge, EventBridgePublisher
from adapters.stack_outputs import AwsOutputs
from cli.ops.send import CannotSend, NotSent, SendError, install_hint, problems_of
from handlers.core.app import Catalog
from handlers.core.errors import ValidationError
from handlers.core.events import Event

NO_CREDENTIALS = ("no AWS credentials found: configure them as for the AWS CLI "
                  "(`aws configure`, `aws sso login`, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY); nothing was sent")


class AwsSender:
    def __init__(self, outputs: AwsOutputs, catalog: Catalog, client: Any) -> None:
        self.bus = outputs.bus_arn
        self._publisher = EventBridgePublisher(client, outputs.bus_arn, catalog)

    @classmethod
    def connect(cls, outputs: AwsOutputs, catalog: Catalog) -> AwsSender:
        try:
            import boto3
            from botocore.exceptions import BotoCoreError
        except ImportError as error:
            raise CannotSend(install_hint("aws", str(error))) from None
        try:
            session = boto3.session.Session(region_name=outputs.region)
            # None when no provider in botocore's chain has credentials.
            if session.get_credentials() is None:
                raise CannotSend(NO_CREDENTIALS)
            return cls(outputs, catalog, session.client("events"))
        except BotoCoreError as error:  # a named profile missing, an SSO token expired...
            raise CannotSend(f"cannot use the AWS credentials: {error}") from None

    def send(self, events: Sequence[Event]) -> list[NotSent]:
        try:
            failed = self._publisher.put(events)
        except (EntryTooLarge, ValidationError) as error:
            raise SendError(str(error), problems_of(error)) from None
        if failed and len(failed) == len(events) and all(
                f.code == "NoCredentialsError" for f in failed):
            # Found before, gone now (an expired session): say it once, as for none at all.
            raise CannotSend(NO_CREDENTIALS)
        return [NotSent(f.event, str(f)) for f in failed]
