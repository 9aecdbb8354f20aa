"""The BlobStore port on Cloud Storage, over its JSON API (no extra client library).

Functions already ship google-auth (through the Pub/Sub and Firestore clients); the two
calls needed here (download an object, upload one) are plain HTTPS, so the storage
client library is not added to the function's requirements. Vendor errors are translated
at this boundary: 404 is `BlobMissing`, 429/5xx/network trouble `TransientError`, any
other refusal (403: the function was not granted the bucket) a `PermanentError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

from handlers.core.errors import BlobMissing, PermanentError, TransientError

API: Final = "https://storage.googleapis.com"


def _google_session() -> Any:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    return AuthorizedSession(credentials)


def anonymous_session() -> Any:
    """For a local stand-in of the JSON API (tests): no credentials."""
    import requests

    return requests.Session()


class GcsBlobStore:
    def __init__(self, buckets: Mapping[str, str], *, base_url: str = API,
                 session_factory: Callable[[], Any] | None = None, timeout: float = 30.0
                 ) -> None:
        self._buckets = dict(buckets)
        self._base = base_url.rstrip("/")
        self._session_factory = session_factory or _google_session
        self._session: Any = None
        self._timeout = timeout

    def _physical(self, bucket: str) -> str:
        try:
            return self._buckets[bucket]
        except KeyError:
            raise PermanentError(
                f"bucket '{bucket}' is not in SWITCHYARD_BUCKETS for this function (has: "
                f"{', '.join(sorted(self._buckets)) or 'none'})") from None

    def _call(self, what: str, method: str, url: str, **kwargs: Any) -> Any:
        if self._session is None:
            self._session = self._session_factory()
        try:
            response = self._session.request(method, url, timeout=self._timeout, **kwargs)
        except Exception as error:  # noqa: BLE001 - network trouble is worth a retry
            raise TransientError(f"Cloud Storage {what}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"Cloud Storage {what}: {response.status_code} "
                                 f"{response.text[:300]}")
        return response

    def read(self, bucket: str, key: str) -> bytes:
        name = self._physical(bucket)
        url = f"{self._base}/storage/v1/b/{name}/o/{quote(key, safe='')}?alt=media"
        response = self._call(f"download {name}/{key}", "GET", url)
        if response.status_code == 404:
            raise BlobMissing(f"object {bucket}/{key} does not exist")
        if response.status_code >= 400:
            raise PermanentError(f"Cloud Storage refused download of {name}/{key} "
                                 f"({response.status_code}): {response.text[:300]}")
        return bytes(response.content)

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "") -> None:
        name = self._physical(bucket)
        url = f"{self._base}/upload/storage/v1/b/{name}/o?uploadType=media&name=" \
              f"{quote(key, safe='')}"
        response = self._call(f"upload {name}/{key}", "POST", url, data=data, headers={
            "Content-Type": content_type or "application/octet-stream"})
        if response.status_code >= 400:
            raise PermanentError(f"Cloud Storage refused upload of {name}/{key} "
                                 f"({response.status_code}): {response.text[:300]}")
