"""Computed outputs of AWS resources in each service's real format, for Pulumi mocks.

`default_fake` answers every AWS resource with `arn:aws:<service>:<region>:<account>:<name>`,
which no IAM checker accepts: a policy naming such an ARN cannot be checked against the
action's resource type. `aws_fake` answers with the formats AWS documents per resource
type (the Service Authorization Reference's ARN column), computed from the physical name,
so the IAM documents recorded from the program are the ones a real account would see
(apart from the placeholder account and the API id). The infra tests, the parliament lint
and the policy-pack recordings all run the program through it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final

from pulumi.runtime.mocks import MockResourceArgs

from tests.infra.pulumi_harness import FAKE_ACCOUNT, FakeContext, FakeState, default_fake

ACCOUNT: Final = FAKE_ACCOUNT
#: The API id the fake gives an HTTP API (API Gateway ids are 10 lowercase alphanumerics).
API_ID: Final = "abc123"
_IDS: Final = uuid.UUID("6f1c2a0e-8d1b-4c5e-9a57-3f0b6d2e4a10")


def _uuid(name: str) -> str:
    """A stable UUID per resource, where AWS names the resource by one (KMS keys...)."""
    return str(uuid.uuid5(_IDS, name))


def _rule_arn(base: str, args: MockResourceArgs, name: str) -> str:
    # Rules on the default bus have no bus segment; rules on a custom bus have one.
    bus = args.inputs.get("eventBusName")
    return f"arn:aws:events:{base}:rule/{name}" if bus in (None, "", "default") \
        else f"arn:aws:events:{base}:rule/{bus}/{name}"


def _formats(args: MockResourceArgs, ctx: FakeContext, name: str
             ) -> dict[str, Callable[[], dict[str, Any]]]:
    region = ctx.aws_region
    base = f"{region}:{ACCOUNT}"
    return {
        "aws:sqs/queue:Queue": lambda: {
            "arn": f"arn:aws:sqs:{base}:{name}",
            "url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"},
        "aws:lambda/function:Function": lambda: {
            "arn": f"arn:aws:lambda:{base}:function:{name}",
            "invokeArn": f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
                         f"arn:aws:lambda:{base}:function:{name}/invocations"},
        "aws:lambda/eventSourceMapping:EventSourceMapping": lambda: {
            "arn": f"arn:aws:lambda:{base}:event-source-mapping:{_uuid(args.name)}"},
        "aws:cloudwatch/logGroup:LogGroup": lambda: {
            "arn": f"arn:aws:logs:{base}:log-group:{name}"},
        "aws:dynamodb/table:Table": lambda: {"arn": f"arn:aws:dynamodb:{base}:table/{name}"},
        "aws:cloudwatch/eventBus:EventBus": lambda: {
            "arn": f"arn:aws:events:{base}:event-bus/{name}"},
        "aws:cloudwatch/eventRule:EventRule": lambda: {"arn": _rule_arn(base, args, name)},
        "aws:cloudwatch/eventArchive:EventArchive": lambda: {
            "arn": f"arn:aws:events:{base}:archive/{name}"},
        "aws:sns/topic:Topic": lambda: {"arn": f"arn:aws:sns:{base}:{name}"},
        "aws:sns/topicSubscription:TopicSubscription": lambda: {
            "arn": f"{args.inputs.get('topic')}:{_uuid(args.name)}"},
        "aws:sfn/stateMachine:StateMachine": lambda: {
            "arn": f"arn:aws:states:{base}:stateMachine:{name}"},
        "aws:iam/role:Role": lambda: {"arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"},
        "aws:kms/key:Key": lambda: {"arn": f"arn:aws:kms:{base}:key/{_uuid(args.name)}",
                                    "keyId": _uuid(args.name)},
        "aws:cloudwatch/metricAlarm:MetricAlarm": lambda: {
            "arn": f"arn:aws:cloudwatch:{base}:alarm:{name}"},
        # S3 ARNs carry neither region nor account.
        "aws:s3/bucket:Bucket": lambda: {"arn": f"arn:aws:s3:::{args.inputs.get('bucket')}"},
        "aws:scheduler/scheduleGroup:ScheduleGroup": lambda: {
            "arn": f"arn:aws:scheduler:{base}:schedule-group/{name}"},
        "aws:scheduler/schedule:Schedule": lambda: {
            "arn": f"arn:aws:scheduler:{base}:schedule/"
                   f"{args.inputs.get('groupName') or 'default'}/{name}"},
        "aws:apigatewayv2/api:Api": lambda: {
            "arn": f"arn:aws:apigateway:{region}::/apis/{API_ID}",
            "apiEndpoint": f"https://{API_ID}.execute-api.{region}.amazonaws.com",
            "executionArn": f"arn:aws:execute-api:{base}:{API_ID}"},
    }


def aws_fake(args: MockResourceArgs, ctx: FakeContext) -> FakeState:
    """`default_fake`, with each AWS resource's computed outputs in its real format."""
    resource_id, state = default_fake(args, ctx)
    name = args.inputs.get("name") or args.name
    formats = _formats(args, ctx, name)
    if args.typ in formats:
        state.update(formats[args.typ]())
    if args.typ == "aws:iam/role:Role":
        resource_id = name  # a role's id is its name
    if args.typ == "aws:s3/bucket:Bucket":
        resource_id = args.inputs.get("bucket") or resource_id
    if args.typ == "aws:apigatewayv2/api:Api":
        resource_id = API_ID
    return resource_id, state


__all__ = ["ACCOUNT", "API_ID", "aws_fake"]
