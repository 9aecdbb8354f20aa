"""S3 for the app's buckets, as pure data: names, settings, policies, notifications.

Like `topology`, this is shared by `infra/aws` (Pulumi) and `tests/aws` (moto), so what is
proven in moto is what is deployed. Also the one place that knows S3's EventBridge event
(`aws.s3` / `Object Created`) and turns it into the catalog's `storage.object.finalized`.

Access (see `topology.consumer_bucket_access`) is least privilege per function: a consumer
reads the buckets it declares and the claim-check bucket; only functions that publish
write to it. Encryption is SSE-KMS under the AWS-managed
`aws/s3` key (its key policy admits principals of the account through S3, so no key
grant is needed) with S3 Bucket Keys; public access is blocked on every bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from handlers.core.app import Bucket
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.storage import STORAGE_OBJECT_FINALIZED

S3_SOURCE: Final = "aws.s3"
S3_OBJECT_CREATED: Final = "Object Created"
_NAMESPACE: Final = uuid.UUID("5e0c8a3d-2b7f-4d61-9c4e-8f1a6b3d0e27")


def bucket_name(prefix: str, bucket: str, account_id: str) -> str:
    """S3 names are global: the account id keeps two accounts' stacks apart."""
    return f"{prefix}-{bucket}-{account_id}"[:63]


def lifecycle_rules(bucket: Bucket) -> list[dict[str, Any]]:
    """PutBucketLifecycleConfiguration rules (boto3 spelling)."""
    if not bucket.expire_days:
        return []
    return [{"ID": f"expire-after-{bucket.expire_days}-days", "Status": "Enabled",
             "Filter": {"Prefix": ""}, "Expiration": {"Days": bucket.expire_days},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]


ENCRYPTION: Final[dict[str, Any]] = {"Rules": [{
    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
    "BucketKeyEnabled": True}]}
PUBLIC_ACCESS_BLOCK: Final = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                              "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def tls_only_policy(bucket_arn: str) -> dict[str, Any]:
    """Bucket policy refusing any request not made over TLS."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
        "Action": "s3:*", "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}


def upload_pattern(physical_names: list[str]) -> dict[str, Any]:
    """The EventBridge pattern branch matching S3's own event for these buckets. S3 sends
    it to the account's default bus; the stack forwards it to the app's bus."""
    return {"source": [S3_SOURCE], "detail-type": [S3_OBJECT_CREATED],
            "detail": {"bucket": {"name": sorted(physical_names)}}}


def forward_rule_name(prefix: str) -> str:
    """The default-bus rule forwarding the uploads' S3 events to the app's bus."""
    return f"{prefix}-uploads-to-bus"


def is_s3_event(body: Mapping[str, Any]) -> bool:
    return body.get("source") == S3_SOURCE


def normalise(body: Mapping[str, Any], buckets: Mapping[str, str]) -> Event:
    """S3's EventBridge `Object Created` event as `storage.object.finalized`.

    `buckets` maps logical to physical names (the function's SWITCHYARD_BUCKETS); the
    event names the logical bucket, so handlers never see an S3 name. The id is derived
    from (bucket, key, ETag, version): S3 may notify twice for one write, and the same
    object written twice with the same content is the same upload.
    """
    problems = []
    detail = body.get("detail")
    if body.get("detail-type") != S3_OBJECT_CREATED:
        problems.append(f"detail-type is {body.get('detail-type')!r}, want "
                        f"{S3_OBJECT_CREATED!r}")
    if not isinstance(detail, Mapping):
        raise ValidationError("S3 event has no detail object", problems)
    physical = str((detail.get("bucket") or {}).get("name", ""))
    obj = detail.get("object") or {}
    logical = {v: k for k, v in buckets.items()}.get(physical)
    if logical is None:
        problems.append(f"bucket {physical!r} is not one this function knows "
                        f"({', '.join(sorted(buckets.values())) or 'none'})")
    for field in ("key", "size"):
        if field not in obj:
            problems.append(f"detail.object.{field} is missing")
    if problems:
        raise ValidationError("S3 event cannot be normalised", problems)
    # AWS documents `etag`; moto sends `eTag`: either spelling is the object's ETag.
    key, etag = str(obj["key"]), str(obj.get("etag") or obj.get("eTag") or "")
    return Event(
        id=str(uuid.uuid5(_NAMESPACE, f"{physical}/{key}#{etag}#{obj.get('version-id')}")),
        source="storage", type=STORAGE_OBJECT_FINALIZED, subject=key,
        time=str(body["time"]) if body.get("time") else None,
        datacontenttype="application/json",
        data={"bucket": logical, "name": key, "size": int(obj["size"]), "etag": etag})
