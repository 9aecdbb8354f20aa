"""Runtime settings of a Lambda function, read once from its environment.

`infra/aws` writes the environment with `Settings.environment()`, the functions read it
back with `Settings.from_env()`: one spelling of every variable, in one place. A function
only gets what it was granted (a consumer without a notifier has no topic), so a missing
value is reported when the port that needs it is first used, naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import field
from typing import Final

from handlers.core.values import FACTORY, valueclass
from handlers.payments import DEFAULT_DECLINE_ABOVE_CENTS

ENV_CONSUMER: Final = "SWITCHYARD_CONSUMER"
ENV_TABLES: Final = "SWITCHYARD_TABLES"  # JSON: logical table name -> physical name
ENV_BUS: Final = "SWITCHYARD_BUS_NAME"
ENV_QUEUE_URL: Final = "SWITCHYARD_QUEUE_URL"
ENV_DLQ_URL: Final = "SWITCHYARD_DLQ_URL"
ENV_STATE_MACHINE: Final = "SWITCHYARD_STATE_MACHINE_ARN"
ENV_TOPIC: Final = "SWITCHYARD_NOTIFICATION_TOPIC_ARN"
ENV_DECLINE_ABOVE: Final = "SWITCHYARD_DECLINE_ABOVE_CENTS"
ENV_MAX_DELIVERIES: Final = "SWITCHYARD_MAX_DELIVERIES"  # = the queue's maxReceiveCount
ENV_BUCKETS: Final = "SWITCHYARD_BUCKETS"  # JSON: logical bucket name -> S3 bucket name


class SettingMissing(RuntimeError):
    """A port needs a variable this function was not given (a wiring bug, not bad input)."""


_set: Final = object.__setattr__


@valueclass
class Settings:
    """What one function was deployed with (its environment, see `from_env`)."""

    consumer: str | None = None
    tables: Mapping[str, str] = field(default_factory=dict)
    bus_name: str | None = None
    queue_url: str | None = None
    dlq_url: str | None = None
    state_machine_arn: str | None = None
    notification_topic_arn: str | None = None
    decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS
    max_deliveries: int | None = None
    buckets: Mapping[str, str] = field(default_factory=dict)

    def __init__(self, consumer: str | None = None, tables: Mapping[str, str] = FACTORY,
                 bus_name: str | None = None, queue_url: str | None = None,
                 dlq_url: str | None = None, state_machine_arn: str | None = None,
                 notification_topic_arn: str | None = None,
                 decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS,
                 max_deliveries: int | None = None,
                 buckets: Mapping[str, str] = FACTORY) -> None:
        _set(self, "consumer", consumer)
        _set(self, "tables", {} if tables is FACTORY else tables)
        _set(self, "bus_name", bus_name)
        _set(self, "queue_url", queue_url)
        _set(self, "dlq_url", dlq_url)
        _set(self, "state_machine_arn", state_machine_arn)
        _set(self, "notification_topic_arn", notification_topic_arn)
        _set(self, "decline_above_cents", decline_above_cents)
        _set(self, "max_deliveries", max_deliveries)
        _set(self, "buckets", {} if buckets is FACTORY else buckets)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        tables = json.loads(env.get(ENV_TABLES) or "{}")
        if not isinstance(tables, dict):
            raise SettingMissing(f"{ENV_TABLES} must be a JSON object of table names")
        return cls(
            consumer=env.get(ENV_CONSUMER) or None,
            tables={str(k): str(v) for k, v in tables.items()},
            bus_name=env.get(ENV_BUS) or None,
            queue_url=env.get(ENV_QUEUE_URL) or None,
            dlq_url=env.get(ENV_DLQ_URL) or None,
            state_machine_arn=env.get(ENV_STATE_MACHINE) or None,
            notification_topic_arn=env.get(ENV_TOPIC) or None,
            decline_above_cents=int(env.get(ENV_DECLINE_ABOVE) or DEFAULT_DECLINE_ABOVE_CENTS),
            max_deliveries=int(env[ENV_MAX_DELIVERIES]) if env.get(ENV_MAX_DELIVERIES) else None,
            buckets={str(k): str(v) for k, v in json.loads(env.get(ENV_BUCKETS) or "{}").items()},
        )

    def environment(self) -> dict[str, str]:
        """The Lambda environment that `from_env` reads back into these settings."""
        values = {
            ENV_CONSUMER: self.consumer,
            ENV_TABLES: json.dumps(dict(sorted(self.tables.items())), separators=(",", ":"))
            if self.tables else None,
            ENV_BUS: self.bus_name,
            ENV_QUEUE_URL: self.queue_url,
            ENV_DLQ_URL: self.dlq_url,
            ENV_STATE_MACHINE: self.state_machine_arn,
            ENV_TOPIC: self.notification_topic_arn,
            ENV_DECLINE_ABOVE: str(self.decline_above_cents),
            ENV_MAX_DELIVERIES: str(self.max_deliveries) if self.max_deliveries else None,
            ENV_BUCKETS: json.dumps(dict(sorted(self.buckets.items())), separators=(",", ":"))
            if self.buckets else None,
        }
        return {k: v for k, v in values.items() if v is not None}

    def require(self, name: str) -> str:
        """The value of a field, or `SettingMissing` naming its variable."""
        value = getattr(self, name)
        if not value:
            raise SettingMissing(f"{_VARIABLE[name]} is not set for this function")
        return str(value)

    def table(self, logical: str) -> str:
        try:
            return self.tables[logical]
        except KeyError:
            raise SettingMissing(
                f"table '{logical}' is not in {ENV_TABLES} for this function "
                f"(has: {', '.join(sorted(self.tables)) or 'none'})") from None


_VARIABLE: Final = {
    "consumer": ENV_CONSUMER, "bus_name": ENV_BUS, "queue_url": ENV_QUEUE_URL,
    "dlq_url": ENV_DLQ_URL, "state_machine_arn": ENV_STATE_MACHINE,
    "notification_topic_arn": ENV_TOPIC,
}
