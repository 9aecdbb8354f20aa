"""infra/aws/sources.py under Pulumi mocks: buckets, the uploads forward rule, schedules,
and what each function is told and granted about buckets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.aws import buckets, scheduler
from adapters.aws.settings import ENV_BUCKETS
from handlers.app import APP
from handlers.core.schedule import aws_cron
from tests.infra.pulumi_harness import Recorded, RecordedResource
from tests.infra.test_aws_stack import ACCOUNT, NAMES, PREFIX, by_name, deploy, function

PHYSICAL = {b.name: buckets.bucket_name(PREFIX, b.name, ACCOUNT) for b in APP.buckets}


@pytest.fixture(scope="module")
def rec() -> Recorded:
    return deploy()


def _for_bucket(rec: Recorded, type_: str, logical: str) -> list[RecordedResource]:
    bucket = next(b for b in rec.of_type("aws:s3/bucket:Bucket")
                  if b.inputs["bucket"] == PHYSICAL[logical])
    return [r for r in rec.of_type(type_) if r.inputs.get("bucket") == bucket.id]


@pytest.mark.parametrize("logical", [b.name for b in APP.buckets])
def test_every_bucket_is_private_encrypted_and_tls_only(rec: Recorded, logical: str) -> None:
    [block] = _for_bucket(rec, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                          logical)
    assert all(block.inputs[k] for k in ("blockPublicAcls", "ignorePublicAcls",
                                         "blockPublicPolicy", "restrictPublicBuckets"))
    [ownership] = _for_bucket(rec, "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                              logical)
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    [sse] = _for_bucket(rec, "aws:s3/bucketServerSideEncryptionConfiguration:"
                             "BucketServerSideEncryptionConfiguration", logical)
    [rule] = sse.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    [policy] = _for_bucket(rec, "aws:s3/bucketPolicy:BucketPolicy", logical)
    [deny] = json.loads(policy.inputs["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("bucket", APP.buckets, ids=lambda b: b.name)
def test_lifecycle_and_notifications_follow_the_declaration(rec: Recorded, bucket: Any) -> None:
    lifecycle = _for_bucket(rec, "aws:s3/bucketLifecycleConfiguration:"
                                 "BucketLifecycleConfiguration", bucket.name)
    if bucket.expire_days:
        [config] = lifecycle
        [rule] = config.inputs["rules"]
        assert rule["status"] == "Enabled" and rule["expiration"]["days"] == bucket.expire_days
    else:
        assert lifecycle == []
    notes = _for_bucket(rec, "aws:s3/bucketNotification:BucketNotification", bucket.name)
    assert [n.inputs["eventbridge"] for n in notes] == ([True] if bucket.events else [])


def test_uploads_are_forwarded_from_the_default_bus_with_retry_and_dlq(rec: Recorded) -> None:
    rule = by_name(rec, "aws:cloudwatch/eventRule:EventRule",
                   buckets.forward_rule_name(PREFIX))
    assert rule.inputs["eventBusName"] == "default"
    uploads = sorted(PHYSICAL[b.name] for b in APP.buckets if b.events)
    assert json.loads(rule.inputs["eventPattern"]) == buckets.upload_pattern(uploads)
    [target] = [t for t in rec.of_type("aws:cloudwatch/eventTarget:EventTarget")
                if t.inputs["rule"] == buckets.forward_rule_name(PREFIX)]
    bus = rec.one("aws:cloudwatch/eventBus:EventBus")
    assert target.inputs["arn"] == bus.outputs["arn"]
    assert target.inputs["deadLetterConfig"]["arn"].endswith(
        f"{buckets.forward_rule_name(PREFIX)}-dlq")
    assert target.inputs["retryPolicy"]["maximumRetryAttempts"] > 0
    role = by_name(rec, "aws:iam/role:Role", f"{buckets.forward_rule_name(PREFIX)}-role")
    [policy] = [p for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == role.id]
    # S3's own events only: the rule forwards them unchanged.
    assert json.loads(policy.inputs["policy"])["Statement"] == [{
        "Sid": "PutEventsOnAppBus", "Effect": "Allow", "Action": "events:PutEvents",
        "Resource": bus.outputs["arn"], "Condition": {
            "ForAllValues:StringEquals": {"events:source": ["aws.s3"]},
            "StringEquals": {"events:detail-type": ["Object Created"]}}}]
    # The file processor's rule takes S3's shape for exactly these buckets.
    processor = by_name(rec, "aws:cloudwatch/eventRule:EventRule", NAMES.rule("file-processor"))
    assert buckets.upload_pattern(uploads) in json.loads(
        processor.inputs["eventPattern"])["$or"]


@pytest.mark.parametrize("schedule", APP.schedules, ids=lambda s: s.name)
def test_schedules_put_the_declared_event_on_the_bus(rec: Recorded, schedule: Any) -> None:
    found = by_name(rec, "aws:scheduler/schedule:Schedule", f"{PREFIX}-{schedule.name}")
    assert found.inputs["scheduleExpression"] == aws_cron(schedule.cron)
    assert found.inputs["scheduleExpressionTimezone"] == "UTC"
    target = found.inputs["target"]
    spec = APP.catalog[schedule.emits]
    assert target["eventbridgeParameters"] == {"source": spec.source,
                                               "detailType": spec.detail_type}
    assert target["input"] == scheduler.detail_template(schedule)
    assert target["arn"] == rec.one("aws:cloudwatch/eventBus:EventBus").outputs["arn"]
    assert target["deadLetterConfig"]["arn"].endswith(f"{PREFIX}-schedules-dlq")
    assert target["retryPolicy"]["maximumRetryAttempts"] == scheduler.MAX_RETRY_ATTEMPTS
    role = by_name(rec, "aws:iam/role:Role", f"{PREFIX}-schedules-role")
    assert target["roleArn"] == role.outputs["arn"]
    [policy] = [p for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == role.id]
    actions = {s["Action"] for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert actions == {"events:PutEvents", "sqs:SendMessage"}


@pytest.mark.parametrize("consumer", APP.consumers, ids=lambda c: c.name)
def test_functions_are_told_only_the_buckets_they_use(rec: Recorded, consumer: Any) -> None:
    env = function(rec, NAMES.function(consumer.name)).inputs["environment"]["variables"]
    told = json.loads(env.get(ENV_BUCKETS, "{}"))
    claims = APP.claim_check_bucket()
    assert claims is not None
    assert told == {b: PHYSICAL[b] for b in sorted({*consumer.buckets, claims.name})}
