"""infra/gcp/sources.py under Pulumi mocks: buckets, the uploads notification, Cloud
Scheduler jobs, and per-function bucket access."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from adapters.gcp import buckets, storage_events
from adapters.gcp.settings import BUCKETS
from handlers.app import APP
from tests.infra.pulumi_harness import FAKE_PROJECT_NUMBER, Recorded
from tests.infra.test_gcp_stack import PREFIX, PROJECT, REGION, TOP, by_name, dev, email

PHYSICAL = {b.name: buckets.bucket_name(PREFIX, b.name, PROJECT) for b in APP.buckets}


@pytest.fixture(scope="module")
def rec() -> Recorded:
    return dev()


@pytest.mark.parametrize("bucket", APP.buckets, ids=lambda b: b.name)
def test_buckets_are_private_and_expire_as_declared(rec: Recorded, bucket: Any) -> None:
    found = by_name(rec, "gcp:storage/bucket:Bucket", PHYSICAL[bucket.name]).inputs
    assert found["uniformBucketLevelAccess"] is True
    assert found["publicAccessPrevention"] == "enforced"
    assert found["location"] == REGION
    rules = found.get("lifecycleRules") or []
    if bucket.expire_days:
        assert rules == [{"action": {"type": "Delete"},
                          "condition": {"age": bucket.expire_days}}]
    else:
        assert rules == []


def test_uploads_notify_the_bus_so_the_file_processor_subscription_gets_them(rec: Recorded
                                                                           ) -> None:
    [note] = rec.of_type("gcp:storage/notification:Notification")
    assert note.inputs["bucket"] == PHYSICAL["uploads"]
    assert note.inputs["payloadFormat"] == "JSON_API_V1"
    assert note.inputs["eventTypes"] == ["OBJECT_FINALIZE"]
    assert note.inputs["customAttributes"] == storage_events.notification_attributes()
    bus = by_name(rec, "gcp:pubsub/topic:Topic", TOP.bus_topic)
    assert note.inputs["topic"] == bus.id
    agent = (f"serviceAccount:service-{FAKE_PROJECT_NUMBER}"
             "@gs-project-accounts.iam.gserviceaccount.com")
    assert [m.inputs["role"] for m in rec.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
            if m.inputs["member"] == agent] == ["roles/pubsub.publisher"]
    # The processor's subscription filters on exactly the ce-type the notification adds.
    sub = by_name(rec, "gcp:pubsub/subscription:Subscription",
                  TOP.route("file-processor").subscription)
    assert storage_events.notification_attributes()["ce-type"] in sub.inputs["filter"]


@pytest.mark.parametrize("schedule", APP.schedules, ids=lambda s: s.name)
def test_scheduler_job_publishes_the_declared_event_to_the_bus(rec: Recorded,
                                                               schedule: Any) -> None:
    job = by_name(rec, "gcp:cloudscheduler/job:Job", f"{PREFIX}-{schedule.name}").inputs
    assert (job["schedule"], job["timeZone"]) == (schedule.cron, "Etc/UTC")
    target = job["pubsubTarget"]
    assert target["topicName"] == by_name(rec, "gcp:pubsub/topic:Topic", TOP.bus_topic).id
    assert target["attributes"] == {"ce-type": schedule.emits,
                                    storage_events.SCHEDULE_ATTRIBUTE: schedule.name}
    assert json.loads(base64.b64decode(target["data"])) == {"schedule": schedule.name}
    assert job["retryConfig"]["retryCount"] == buckets.SCHEDULER_RETRIES


@pytest.mark.parametrize("consumer", APP.consumers, ids=lambda c: c.name)
def test_each_function_gets_exactly_its_buckets(rec: Recorded, consumer: Any) -> None:
    account = email(TOP.route(consumer.name).account_id)
    granted = sorted((m.inputs["bucket"], m.inputs["role"])
                     for m in rec.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
                     if m.inputs["member"] == f"serviceAccount:{account}")
    read, write = buckets.access(APP, consumer)
    assert granted == sorted([(PHYSICAL[b], buckets.READER_ROLE) for b in read] +
                             [(PHYSICAL[b], buckets.WRITER_ROLE) for b in write])
    function = by_name(rec, "gcp:cloudfunctionsv2/function:Function",
                       TOP.route(consumer.name).function)
    told = json.loads(function.inputs["serviceConfig"]["environmentVariables"][BUCKETS])
    assert told == {b: PHYSICAL[b] for b in sorted({*read, *write})}
