"""The BlobStore port on S3: logical bucket names mapped to the stack's S3 buckets.

Vendor errors are translated here: a missing object (`NoSuchKey`, or 404 from a HEAD)
is `BlobMissing` (permanent: it was never written or its lifecycle rule expired it); a
bucket this function was not told about is a wiring bug; anything else from S3 (throttling,
5xx, timeouts) is a `TransientError`, so the platform retries the delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from handlers.core.errors import BlobMissing, PermanentError, TransientError

_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    def __init__(self, client: Any, buckets: Mapping[str, str]) -> None:
        self._client = client
        self._buckets = dict(buckets)

    def physical(self, bucket: str) -> str:
        try:
            return self._buckets[bucket]
        except KeyError:
            raise PermanentError(
                f"bucket '{bucket}' is not in SWITCHYARD_BUCKETS for this function (has: "
                f"{', '.join(sorted(self._buckets)) or 'none'})") from None

    def read(self, bucket: str, key: str) -> bytes:
        name = self.physical(bucket)
        try:
            answer = self._client.get_object(Bucket=name, Key=key)
            return bytes(answer["Body"].read())
        except Exception as error:  # noqa: BLE001 - translated below
            if _code(error) in _MISSING:
                raise BlobMissing(f"object {bucket}/{key} does not exist") from None
            raise TransientError(f"S3 GetObject {name}/{key}: {type(error).__name__}: "
                                 f"{error}") from error

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "") -> None:
        name = self.physical(bucket)
        try:
            self._client.put_object(Bucket=name, Key=key, Body=data,
                                    ContentType=content_type or "application/octet-stream")
        except Exception as error:  # noqa: BLE001 - translated below
            raise TransientError(f"S3 PutObject {name}/{key}: {type(error).__name__}: "
                                 f"{error}") from error
