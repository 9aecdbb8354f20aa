"""What `infra/aws/sources.py` adds to the stack, derived from the app description."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from handlers.core.app import App

_BUCKET_PARTS = ("aws:s3/bucket:Bucket",
                 "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                 "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                 "aws:s3/bucketServerSideEncryptionConfiguration:"
                 "BucketServerSideEncryptionConfiguration",
                 "aws:s3/bucketPolicy:BucketPolicy")
#: A delivering edge into the bus: its DLQ (+ policy/alarm), role and policy.
_EDGE = ("aws:sqs/queue:Queue", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
         "aws:cloudwatch/metricAlarm:MetricAlarm")


def sources_added(app: App) -> Counter[str]:
    added: Counter[str] = Counter({"switchyard:aws:Sources": 1})
    for part in _BUCKET_PARTS:
        added[part] += len(app.buckets)
    added["aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"] += \
        sum(1 for b in app.buckets if b.expire_days)
    if any(b.events for b in app.buckets):
        added["aws:s3/bucketNotification:BucketNotification"] += \
            sum(1 for b in app.buckets if b.events)
        added.update(_EDGE)
        added.update({"aws:cloudwatch/eventRule:EventRule": 1,
                      "aws:cloudwatch/eventTarget:EventTarget": 1,
                      "aws:sqs/queuePolicy:QueuePolicy": 1})
    if app.schedules:
        added.update(_EDGE)
        added.update({"aws:scheduler/scheduleGroup:ScheduleGroup": 1,
                      "aws:scheduler/schedule:Schedule": len(app.schedules)})
    return added


def with_sources(base: Mapping[str, int], app: App) -> dict[str, int]:
    """The base stack's resource counts plus what the app's buckets and schedules add."""
    total = Counter(base)
    total.update(sources_added(app))
    return dict(total)
