"""The AWS transports' limits, with the size calculation EventBridge documents.

They belong to the AWS side: the cloud-agnostic bindings in `handlers/core` only shape
entries, and the AWS publisher, the API function and the claim check decide with these
numbers what can be sent. Values as AWS documents them:

- PutEvents takes at most 10 entries per call.
- An entry counts as AWS's "Calculating PutEvents event entry size" page says: `Time` is
  14 bytes when given; `Source`, `DetailType`, `Detail` and each `Resources` entry count
  their UTF-8 bytes (`entry_size`). The entry limit was raised from 256 KiB to 1 MiB.
- An SQS queue takes messages up to 1,048,576 bytes (`MaximumMessageSize`, 1 KiB to
  1 MiB). The bus's targets are the consumers' queues, and a delivered event is the entry
  inside EventBridge's envelope (version, id, account, time, region, resources and the
  keys: a few hundred bytes), so an entry at the PutEvents limit is taken by PutEvents
  but cannot reach a queue: EventBridge would dead-letter it at the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: Entries per PutEvents call.
AWS_MAX_ENTRIES: Final = 10
#: EventBridge's entry size limit (raised from 256 KiB to 1 MiB); see `entry_size`.
MAX_ENTRY_BYTES: Final = 1024 * 1024
#: SQS's message size limit (the largest MaximumMessageSize a queue can have).
SQS_MAX_MESSAGE_BYTES: Final = 1024 * 1024
#: Room left for EventBridge's delivery envelope around an entry's Detail.
DELIVERY_ENVELOPE_BYTES: Final = 4096
#: The largest entry that still reaches a consumer's queue: what our publishers allow, and
#: above which they claim-check.
MAX_DELIVERABLE_BYTES: Final = min(MAX_ENTRY_BYTES,
                                   SQS_MAX_MESSAGE_BYTES - DELIVERY_ENVELOPE_BYTES)
#: What `Time` counts, when given, in AWS's entry size calculation.
_TIME_BYTES: Final = 14


def entry_size(entry: Mapping[str, Any]) -> int:
    """Bytes an entry counts against `MAX_ENTRY_BYTES`, as AWS documents the calculation."""
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
    for resource in entry.get("Resources") or ():
        if isinstance(resource, str):
            size += len(resource.encode("utf-8"))
    return size


__all__ = ["AWS_MAX_ENTRIES", "DELIVERY_ENVELOPE_BYTES", "MAX_DELIVERABLE_BYTES",
           "MAX_ENTRY_BYTES", "SQS_MAX_MESSAGE_BYTES", "entry_size"]
