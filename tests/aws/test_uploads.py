"""S3 on moto: uploads reach the file processor as S3's own EventBridge event, through
the default-bus forward rule, and the buckets are configured as infra/aws deploys them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from adapters.aws import buckets
from handlers.app import APP
from handlers.catalog import STORAGE_OBJECT_FINALIZED
from tests.aws.moto_stack import MotoStack

CSV = b"item_id,quantity\nA,4\nB,0\n"


@pytest.fixture
def stack(aws: None) -> Iterator[MotoStack]:
    stack = MotoStack.create(APP, prefix="up", max_deliveries=3)
    with stack.lambda_service():
        yield stack


def test_put_object_reaches_the_processor_as_s3s_event(stack: MotoStack) -> None:
    s3, sqs = stack.client("s3"), stack.client("sqs")
    uploads = stack.bucket_names["uploads"]
    s3.put_object(Bucket=uploads, Key="in/restock.csv", Body=CSV)
    [message] = sqs.receive_message(QueueUrl=stack.queue_urls["file-processor"],
                                    MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert (body["source"], body["detail-type"]) == ("aws.s3", "Object Created")
    assert body["detail"]["bucket"]["name"] == uploads
    assert body["detail"]["object"]["key"] == "in/restock.csv"
    event = buckets.normalise(body, {"uploads": uploads})
    assert event.type == STORAGE_OBJECT_FINALIZED
    assert event.data["bucket"] == "uploads" and event.data["size"] == len(CSV)
    # Nothing else got it: S3 events reach only the rule that asks for them.
    for consumer, url in stack.queue_urls.items():
        if consumer != "file-processor":
            assert not sqs.receive_message(QueueUrl=url).get("Messages"), consumer
    sqs.change_message_visibility(QueueUrl=stack.queue_urls["file-processor"],
                                  ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    stack.run_until_quiet()
    assert stack.item("inventory", "A")["available"] == 4
    [dead] = stack.drain(stack.dlq_urls["upload-rejects"])
    reason = dead["MessageAttributes"]["reason"]["StringValue"]
    assert "line 3: quantity must be a positive integer (got '0')" in reason


def test_an_upload_to_another_bucket_is_not_routed(stack: MotoStack) -> None:
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket_names["claims"], Key="x.csv", Body=CSV)
    assert stack.pump_once() == 0


def test_buckets_are_configured_as_deployed(stack: MotoStack) -> None:
    s3 = stack.client("s3")
    for bucket in APP.buckets:
        name = stack.bucket_names[bucket.name]
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert all(block.values())
        [rule] = s3.get_bucket_encryption(Bucket=name)[
            "ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        if bucket.expire_days:
            [life] = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
            assert life["Expiration"]["Days"] == bucket.expire_days
