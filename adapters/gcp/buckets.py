"""Cloud Storage and Cloud Scheduler for the app, as pure data (infra and tests).

Who may touch which bucket is `App.bucket_access`, as on AWS: a consumer reads what it
declares plus the claim-check bucket, and writes the claim-check bucket only if it
publishes. Buckets use uniform bucket-level access with public access prevention
enforced, and Google-managed encryption at rest (always on in Cloud Storage).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from handlers.core.app import App, Bucket, Consumer

READER_ROLE: Final = "roles/storage.objectViewer"
WRITER_ROLE: Final = "roles/storage.objectCreator"
#: Cloud Scheduler retries a failed publish this many times, backing off.
SCHEDULER_RETRIES: Final = 5


def bucket_name(prefix: str, bucket: str, project: str) -> str:
    """Cloud Storage names are global: the project id keeps stacks apart."""
    return f"{prefix}-{bucket}-{project}"[:63].rstrip("-")


def claims_name(app: App) -> str | None:
    claims = app.claim_check_bucket()
    return claims.name if claims else None


def access(app: App, consumer: Consumer) -> tuple[list[str], list[str]]:
    return app.bucket_access(consumer)


def settings_json(app: App, consumer: Consumer, physical: Mapping[str, str]) -> str:
    """SWITCHYARD_BUCKETS for a consumer's function."""
    read, write = access(app, consumer)
    return json.dumps({b: physical[b] for b in sorted({*read, *write})}, sort_keys=True,
                      separators=(",", ":"))


def lifecycle_rules(bucket: Bucket) -> list[dict[str, Any]]:
    if not bucket.expire_days:
        return []
    return [{"action": {"type": "Delete"}, "condition": {"age": bucket.expire_days}}]
