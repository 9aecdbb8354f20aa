"""A small Cloud Storage stand-in over real HTTP: the JSON API calls the stack makes, and
the Pub/Sub notifications Cloud Storage publishes for a finished upload.

The gcloud SDK ships no Cloud Storage emulator, so the GCP contract backend serves this
instead, in front of the real `GcsBlobStore` (pointed at it by `SWITCHYARD_STORAGE_API`,
as the emulator tests do). What it implements, and nothing more:

- `POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=...`: a simple upload. Each
  write is a new generation (microseconds, increasing); the answer is the object resource.
- `GET /storage/v1/b/{bucket}/o/{object}` (`?alt=media`: the bytes, else the resource).
- `GET /storage/v1/b/{bucket}/o[?prefix=...]`: the listing (one page).
- Unknown bucket or object: 404 with the JSON API's error body.

Notifications: `add_notification` is what `gcp.storage.Notification` creates in the stack
(infra/gcp/sources.py). When an upload finishes, every matching config publishes to its
topic what Cloud Storage publishes: data = the object resource (`JSON_API_V1`), and the
attributes `notificationConfig`, `eventType`, `payloadFormat`, `bucketId`, `objectId`,
`objectGeneration`, `eventTime` (plus `overwroteGeneration` when the write replaced a
live object) and the config's custom attributes. Cloud Storage publishes after the
write is acknowledged, asynchronously; here the publish is awaited before the upload
answers, so a test that uploads and then settles finds the notification on the topic.
Resources omit `crc32c` (nothing reads it; computing it needs a library the venv lacks).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from tests.gcp.conftest import free_port

OBJECT_FINALIZE = "OBJECT_FINALIZE"


@dataclass(frozen=True)
class _Object:
    data: bytes
    generation: str
    content_type: str
    written: datetime


@dataclass(frozen=True)
class _Notification:
    name: str
    topic: str  # projects/{project}/topics/{topic}
    event_types: tuple[str, ...]
    payload_format: str
    custom_attributes: Mapping[str, str] = field(default_factory=dict)


def _rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class FakeCloudStorage:
    """Buckets in memory behind the JSON API; notifications through `publisher_client`
    (a `pubsub_v1.PublisherClient`, on the Pub/Sub emulator in the contract backend)."""

    def __init__(self, publisher_client: Any) -> None:
        self._publisher = publisher_client
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, _Object]] = {}
        self._notifications: dict[str, list[_Notification]] = {}
        self._last_generation = 0
        self.published: list[tuple[str, dict[str, str]]] = []  # (topic, attributes)
        storage = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                storage._answer(self, *storage._get(self.path))

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                storage._answer(self, *storage._upload(
                    self.path, body, self.headers.get("content-type", "")))

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # --- what the stack creates ---------------------------------------------------------

    def create_bucket(self, name: str) -> None:
        with self._lock:
            self._buckets.setdefault(name, {})

    def add_notification(self, bucket: str, topic: str, event_types: tuple[str, ...],
                         payload_format: str, custom_attributes: Mapping[str, str]) -> str:
        if payload_format not in ("JSON_API_V1", "NONE"):
            raise ValueError(f"payload_format must be JSON_API_V1 or NONE, got "
                             f"{payload_format!r}")
        with self._lock:
            if bucket not in self._buckets:
                raise KeyError(f"no bucket {bucket!r}")
            configs = self._notifications.setdefault(bucket, [])
            name = f"projects/_/buckets/{bucket}/notificationConfigs/{len(configs) + 1}"
            configs.append(_Notification(name, topic, tuple(event_types), payload_format,
                                         dict(custom_attributes)))
        return name

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the JSON API -------------------------------------------------------------------

    @staticmethod
    def _answer(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
                content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def _error(status: int, message: str) -> tuple[int, bytes, str]:
        body = {"error": {"code": status, "message": message,
                          "errors": [{"message": message, "domain": "global",
                                      "reason": "notFound" if status == 404 else "invalid"}]}}
        return status, json.dumps(body).encode(), "application/json"

    def _resource(self, bucket: str, name: str, obj: _Object) -> dict[str, Any]:
        quoted = quote(name, safe="")
        md5 = base64.b64encode(hashlib.md5(obj.data).digest()).decode()  # noqa: S324 - GCS's
        written = _rfc3339(obj.written)
        return {
            "kind": "storage#object", "id": f"{bucket}/{name}/{obj.generation}",
            "selfLink": f"{self.url}/storage/v1/b/{bucket}/o/{quoted}",
            "mediaLink": f"{self.url}/download/storage/v1/b/{bucket}/o/{quoted}"
                         f"?generation={obj.generation}&alt=media",
            "name": name, "bucket": bucket, "generation": obj.generation,
            "metageneration": "1", "contentType": obj.content_type,
            "storageClass": "STANDARD", "size": str(len(obj.data)), "md5Hash": md5,
            "etag": base64.b64encode(f"{obj.generation}/1".encode()).decode(),
            "timeCreated": written, "updated": written,
            "timeStorageClassUpdated": written,
        }

    def _get(self, path: str) -> tuple[int, bytes, str]:
        parsed = urlparse(path)
        parts = parsed.path.split("/")
        if parts[1:4] != ["storage", "v1", "b"] or len(parts) < 6 or parts[5] != "o":
            return self._error(400, f"unsupported call GET {parsed.path}")
        bucket = unquote(parts[4])
        with self._lock:
            objects = dict(self._buckets.get(bucket, {})) if bucket in self._buckets else None
        if objects is None:
            return self._error(404, f"The specified bucket does not exist: {bucket}")
        query = parse_qs(parsed.query)
        if len(parts) == 6:  # listing
            prefix = query.get("prefix", [""])[0]
            items = [self._resource(bucket, n, o) for n, o in sorted(objects.items())
                     if n.startswith(prefix)]
            return 200, json.dumps({"kind": "storage#objects", "items": items}).encode(), \
                "application/json"
        name = unquote("/".join(parts[6:]))
        found = objects.get(name)
        if found is None:
            return self._error(404, f"No such object: {bucket}/{name}")
        if query.get("alt") == ["media"]:
            return 200, found.data, found.content_type
        return 200, json.dumps(self._resource(bucket, name, found)).encode(), "application/json"

    def _upload(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes, str]:
        parsed = urlparse(path)
        parts = parsed.path.split("/")
        query = parse_qs(parsed.query)
        if parts[1:5] != ["upload", "storage", "v1", "b"] or parts[6:] != ["o"]:
            return self._error(400, f"unsupported call POST {parsed.path}")
        if query.get("uploadType") != ["media"] or not query.get("name"):
            return self._error(400, "only uploadType=media with a name is supported")
        bucket, name = unquote(parts[5]), query["name"][0]
        with self._lock:
            objects = self._buckets.get(bucket)
            if objects is None:
                return self._error(404, f"The specified bucket does not exist: {bucket}")
            self._last_generation = max(self._last_generation + 1, time.time_ns() // 1000)
            written = datetime.now(UTC)
            replaced = objects.get(name)
            obj = _Object(bytes(body), str(self._last_generation),
                          content_type or "application/octet-stream", written)
            objects[name] = obj
            configs = list(self._notifications.get(bucket, []))
        resource = self._resource(bucket, name, obj)
        for config in configs:
            if OBJECT_FINALIZE in config.event_types or not config.event_types:
                self._notify(config, bucket, name, obj, resource, replaced)
        return 200, json.dumps(resource).encode(), "application/json"

    def _notify(self, config: _Notification, bucket: str, name: str, obj: _Object,
                resource: dict[str, Any], replaced: _Object | None) -> None:
        attributes = {**config.custom_attributes,
                      "notificationConfig": config.name, "eventType": OBJECT_FINALIZE,
                      "payloadFormat": config.payload_format, "bucketId": bucket,
                      "objectId": name, "objectGeneration": obj.generation,
                      "eventTime": resource["updated"]}
        if replaced is not None:
            attributes["overwroteGeneration"] = replaced.generation
        data = json.dumps(resource).encode() if config.payload_format == "JSON_API_V1" else b""
        self._publisher.publish(config.topic, data, **attributes).result(timeout=30)
        with self._lock:
            self.published.append((config.topic, attributes))
