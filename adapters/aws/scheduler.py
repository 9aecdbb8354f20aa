"""EventBridge Scheduler for the app's schedules, as pure data (infra and moto tests).

Each schedule is an EventBridge Scheduler schedule whose universal target is the app's
bus: PutEvents with the catalog's Source and DetailType, and a Detail rendered from the
declared data plus the slot (`<aws.scheduler.scheduled-time>` is filled in by Scheduler
at each firing). The audit consumer keys its work on that slot, so Scheduler's
at-least-once firing has one effect. Failed deliveries are retried (`RetryPolicy`) and
then parked in a dead-letter queue, like every other async edge of the stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from adapters.aws.topology import put_events_statement
from handlers.core.app import Catalog, Schedule
from handlers.core.schedule import aws_cron, fired_data

SCHEDULED_TIME: Final = "<aws.scheduler.scheduled-time>"
MAX_RETRY_ATTEMPTS: Final = 10
MAX_EVENT_AGE_S: Final = 4 * 60 * 60


def expression(schedule: Schedule) -> str:
    return aws_cron(schedule.cron)


def detail_template(schedule: Schedule) -> str:
    """The target's Input: the Detail Scheduler sends, with the slot placeholder."""
    return json.dumps(fired_data(schedule, SCHEDULED_TIME), sort_keys=True,
                      separators=(",", ":"))


def render(template: str, scheduled_time: str) -> str:
    """What Scheduler does to the template at a firing (used to test the template)."""
    return template.replace(SCHEDULED_TIME, scheduled_time)


def target(schedule: Schedule, catalog: Catalog, bus_arn: str, role_arn: str,
           dlq_arn: str) -> dict[str, Any]:
    """CreateSchedule `Target` (boto3 spelling)."""
    spec = catalog[schedule.emits]
    return {
        "Arn": bus_arn, "RoleArn": role_arn, "Input": detail_template(schedule),
        "EventBridgeParameters": {"Source": spec.source, "DetailType": spec.detail_type},
        "RetryPolicy": {"MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
                        "MaximumEventAgeInSeconds": MAX_EVENT_AGE_S},
        "DeadLetterConfig": {"Arn": dlq_arn},
    }


def published(schedules: Iterable[Schedule], catalog: Catalog) -> list[tuple[str, str]]:
    """(Source, DetailType) of what the schedules put on the bus."""
    return sorted({(catalog[s.emits].source, catalog[s.emits].detail_type) for s in schedules})


def role_policy(bus_arn: str, publishes: Iterable[tuple[str, str]],
                dlq_arn: str | None = None) -> dict[str, Any]:
    """A delivering role (schedules, the uploads forward rule): put exactly these
    (Source, DetailType) pairs on exactly this bus, and (Scheduler sends dead letters with
    the schedule's role) its DLQ."""
    statements: list[dict[str, Any]] = [
        put_events_statement(bus_arn, publishes, sid="PutEventsOnAppBus")]
    if dlq_arn:
        statements.append({"Sid": "DeadLetter", "Effect": "Allow",
                           "Action": "sqs:SendMessage", "Resource": dlq_arn})
    return {"Version": "2012-10-17", "Statement": statements}
