"""Where a stack's resources are: the schema of the `switchyard` stack output, and its check.

Both infra stacks export one output named `switchyard` (see `OUTPUT_NAME`): a JSON
object saying which cloud it is and, per consumer, the queues or subscriptions the
operations commands need. The writer (`infra/`) and the reader (the operations commands
in `cli/ops`) share this module, which sits in `adapters/` because `infra/` may import
adapters but never the command line. `parse` validates a document, so a command never
starts half-way on a wrong or stale file; finding the document (a file or the Pulumi CLI)
is the command line's job (`cli/ops/outputs.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: The stack output every operations command reads.
OUTPUT_NAME: Final = "switchyard"
#: Bumped when the output's shape changes incompatibly.
OUTPUT_VERSION: Final = 1


class OutputsError(Exception):
    """The stack's outputs cannot be found or do not say what the commands need."""


@dataclass(frozen=True, slots=True)
class AwsConsumer:
    name: str
    queue_url: str
    dlq_url: str
    rule_arn: str | None = None
    #: The EventBridge target's own dead-letter queue (may be the same queue as dlq_url).
    target_dlq_url: str | None = None


@dataclass(frozen=True, slots=True)
class AwsOutputs:
    stack: str
    prefix: str
    region: str
    bus_name: str
    bus_arn: str
    archive_name: str
    archive_arn: str
    consumers: tuple[AwsConsumer, ...]
    state_machine_arn: str | None = None
    cloud: str = "aws"


@dataclass(frozen=True, slots=True)
class GcpConsumer:
    name: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str


@dataclass(frozen=True, slots=True)
class GcpOutputs:
    stack: str
    prefix: str
    project: str
    bus_topic: str
    replay_subscription: str
    consumers: tuple[GcpConsumer, ...]
    workflow: str | None = None
    cloud: str = "gcp"


StackOutputs = AwsOutputs | GcpOutputs


def parse(raw: Any, stack: str, origin: str = "the outputs") -> StackOutputs:
    """Check and read the `switchyard` output (alone, or inside every stack output)."""
    if not isinstance(raw, Mapping):
        raise OutputsError(f"{origin}: expected a JSON object, got {type(raw).__name__}")
    doc = raw.get(OUTPUT_NAME, raw)
    if not isinstance(doc, Mapping) or "cloud" not in doc:
        present = ", ".join(sorted(raw)) or "nothing"
        raise OutputsError(f"{origin}: no '{OUTPUT_NAME}' output (found {present}); "
                           "was the stack deployed with a Switchyard that exports it?")
    problems: list[str] = []
    version = doc.get("version")
    if version != OUTPUT_VERSION:
        problems.append(f"version is {version!r}, this switchyard reads {OUTPUT_VERSION}")
    cloud = doc.get("cloud")
    if cloud == "aws":
        result: StackOutputs | None = _aws(doc, stack, problems)
    elif cloud == "gcp":
        result = _gcp(doc, stack, problems)
    else:
        problems.append(f"cloud must be 'aws' or 'gcp', got {cloud!r}")
        result = None
    if problems or result is None:
        raise OutputsError(f"{origin}: invalid '{OUTPUT_NAME}' output: " + "; ".join(problems))
    return result


def _str(doc: Mapping[str, Any], key: str, where: str, problems: list[str],
         required: bool = True) -> str:
    value = doc.get(key)
    if isinstance(value, str) and value and value != "None":
        return value
    if required or value is not None:
        problems.append(f"{where}{key} must be a non-empty string, got {value!r}")
    return ""


def _consumers(doc: Mapping[str, Any], problems: list[str]) -> Mapping[str, Any]:
    consumers = doc.get("consumers")
    if not isinstance(consumers, Mapping) or not consumers:
        problems.append("consumers must be an object with one entry per consumer")
        return {}
    for name, entry in consumers.items():
        if not isinstance(entry, Mapping):
            problems.append(f"consumers.{name} must be an object")
    return {n: e for n, e in consumers.items() if isinstance(e, Mapping)}


def _aws(doc: Mapping[str, Any], stack: str, problems: list[str]) -> AwsOutputs:
    bus_arn = _str(doc, "busArn", "", problems)
    consumers = tuple(
        AwsConsumer(name, _str(e, "queueUrl", f"consumers.{name}.", problems),
                    _str(e, "dlqUrl", f"consumers.{name}.", problems),
                    _str(e, "ruleArn", f"consumers.{name}.", problems, False) or None,
                    _str(e, "targetDlqUrl", f"consumers.{name}.", problems, False) or None)
        for name, e in sorted(_consumers(doc, problems).items()))
    region = doc.get("region") or (bus_arn.split(":")[3] if bus_arn.count(":") >= 5 else "")
    if not region:
        problems.append("region is missing and busArn does not name one")
    return AwsOutputs(
        stack=stack, prefix=_str(doc, "prefix", "", problems), region=str(region),
        bus_name=_str(doc, "busName", "", problems), bus_arn=bus_arn,
        archive_name=_str(doc, "archiveName", "", problems),
        archive_arn=_str(doc, "archiveArn", "", problems), consumers=consumers,
        state_machine_arn=_str(doc, "stateMachineArn", "", problems, False) or None)


def _gcp(doc: Mapping[str, Any], stack: str, problems: list[str]) -> GcpOutputs:
    consumers = tuple(
        GcpConsumer(name, _str(e, "subscription", f"consumers.{name}.", problems),
                    _str(e, "deadLetterTopic", f"consumers.{name}.", problems),
                    _str(e, "deadLetterSubscription", f"consumers.{name}.", problems))
        for name, e in sorted(_consumers(doc, problems).items()))
    return GcpOutputs(
        stack=stack, prefix=_str(doc, "prefix", "", problems),
        project=_str(doc, "project", "", problems),
        bus_topic=_str(doc, "busTopic", "", problems),
        replay_subscription=_str(doc, "replaySubscription", "", problems),
        consumers=consumers, workflow=_str(doc, "workflow", "", problems, False) or None)
