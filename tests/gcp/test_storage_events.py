"""Cloud Storage uploads, Cloud Scheduler firings and claim checks on the GCP adapters.

Cloud Storage has no emulator in the gcloud SDK, so these run the real entry point
through functions-framework with real-shaped `google.cloud.storage.object.v1.finalized`
CloudEvents and Pub/Sub notifications (JSON_API_V1), and the Cloud Storage JSON API is
played by an in-memory fake (`FakeGcs`) behind the real `GcsBlobStore`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import functions_framework
import pytest

from adapters.gcp import entry, storage_events
from adapters.gcp import pubsub_binding as pb
from adapters.gcp.entry import CLAIM_CHECK_ABOVE, REASON_ATTRIBUTE, Runtime, process_push
from adapters.gcp.gcs_blob_store import GcsBlobStore
from adapters.gcp.pubsub_publisher import PubSubPublisher
from adapters.gcp.settings import Settings
from adapters.memory import memory_ports
from handlers.app import APP
from handlers.catalog import (
    FILE_PROCESSED,
    FILE_ROW_REJECTED,
    INVENTORY_AUDIT,
    INVENTORY_UPDATED,
)
from handlers.core.claim_check import ClaimCheckPublisher
from handlers.core.events import Event
from tests.gcp.test_adapters import DeadLetters, FakePublisherClient

BUCKETS = {"uploads": "p-uploads", "claims": "p-claims"}
CSV = b"item_id,quantity,action\nA,5,restock\nB,zero,restock\n"


class _Response:
    def __init__(self, status: int, content: bytes = b"") -> None:
        self.status_code, self.content = status, content
        self.text = content.decode(errors="replace")


class FakeGcs:
    """The two Cloud Storage JSON API calls GcsBlobStore makes, in memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.calls: list[str] = []

    def request(self, method: str, url: str, timeout: float = 0, data: bytes = b"",
                headers: Any = None) -> _Response:
        parsed = urlparse(url)
        self.calls.append(f"{method} {parsed.path}")
        parts = parsed.path.split("/")
        if method == "GET" and parts[1:4] == ["storage", "v1", "b"] and parts[5] == "o":
            found = self.objects.get((parts[4], unquote(parts[6])))
            return _Response(200, found) if found is not None else _Response(404, b"Not Found")
        if method == "POST" and parts[1:5] == ["upload", "storage", "v1", "b"]:
            name = parse_qs(parsed.query)["name"][0]
            self.objects[(parts[5], name)] = bytes(data)
            return _Response(200, b"{}")
        return _Response(400, b"unexpected call")


def object_resource(name: str, content: bytes, generation: str = "1732250119000000",
                    bucket: str = "p-uploads") -> dict[str, Any]:
    """The JSON API object resource Cloud Storage sends (size is a string there)."""
    return {"kind": "storage#object", "id": f"{bucket}/{name}/{generation}",
            "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{name}",
            "name": name, "bucket": bucket, "generation": generation,
            "metageneration": "1", "contentType": "text/csv",
            "timeCreated": "2026-11-22T04:55:19.123Z", "updated": "2026-11-22T04:55:19.123Z",
            "storageClass": "STANDARD", "size": str(len(content)),
            "md5Hash": base64.b64encode(b"0123456789abcdef").decode(),
            "crc32c": "yZRlqg==", "etag": "CKih16GjycICEAE="}


def finalized_headers(name: str, generation: str = "1732250119000000") -> dict[str, str]:
    return {"ce-id": "1096434104173400", "ce-specversion": "1.0",
            "ce-type": storage_events.GCS_FINALIZED,
            "ce-source": "//storage.googleapis.com/projects/_/buckets/p-uploads",
            "ce-subject": f"objects/{name}", "ce-time": "2026-11-22T04:55:19.123Z",
            "ce-bucket": "p-uploads", "content-type": "application/json"}


@pytest.fixture()
def gcs() -> FakeGcs:
    return FakeGcs()


def make_runtime(gcs: FakeGcs, consumer: str) -> Runtime:
    ports = memory_ports()
    blobs = GcsBlobStore(BUCKETS, session_factory=lambda: gcs)
    ports.blobs = blobs
    ports.publisher = ClaimCheckPublisher(ports.publisher, blobs, "claims", CLAIM_CHECK_ABOVE)
    return Runtime(APP, Settings(project="p", consumer=consumer, buckets=BUCKETS), ports,
                   DeadLetters(), bus=None)


@pytest.fixture()
def client(gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Any]:
    """The `consume` target served by functions-framework, hosting the file processor.
    The source is a `main.py` re-exporting the entry, as in the deployed zip."""
    rt = make_runtime(gcs, "file-processor")
    monkeypatch.setattr(entry, "runtime", lambda: rt)
    main = tmp_path / "main.py"
    main.write_text("from adapters.gcp.entry import consume  # noqa: F401\n")
    app = functions_framework.create_app(target="consume", source=str(main))
    yield app.test_client(), rt


def _published(rt: Runtime) -> list[Event]:
    return list(rt.ports.publisher._inner.published)  # type: ignore[attr-defined]


def test_finalized_cloudevent_binary_mode_processes_the_csv_once(client: Any, gcs: FakeGcs
                                                                  ) -> None:
    http, rt = client
    gcs.objects[("p-uploads", "restock.csv")] = CSV
    body = json.dumps(object_resource("restock.csv", CSV)).encode()
    answer = http.post("/", data=body, headers=finalized_headers("restock.csv"))
    assert answer.status_code == 204
    types = [e.type for e in _published(rt)]
    assert types == [INVENTORY_UPDATED, FILE_ROW_REJECTED, FILE_PROCESSED]
    assert _published(rt)[0].data == {"item_id": "A", "quantity": 5, "action": "restock"}
    assert "quantity must be a positive integer (got 'zero')" in _published(rt)[1].data["reason"]
    # Delivered again (Eventarc is at-least-once): a duplicate, nothing new published.
    assert http.post("/", data=body, headers=finalized_headers("restock.csv")).status_code == 204
    assert len(_published(rt)) == 3
    assert gcs.calls == ["GET /storage/v1/b/p-uploads/o/restock.csv"]


def test_finalized_cloudevent_structured_mode_is_accepted(client: Any, gcs: FakeGcs) -> None:
    http, rt = client
    gcs.objects[("p-uploads", "s.csv")] = CSV
    event = {"specversion": "1.0", "id": "42", "type": storage_events.GCS_FINALIZED,
             "source": "//storage.googleapis.com/projects/_/buckets/p-uploads",
             "subject": "objects/s.csv", "time": "2026-11-22T04:55:19Z",
             "datacontenttype": "application/json", "data": object_resource("s.csv", CSV)}
    answer = http.post("/", data=json.dumps(event).encode(),
                       headers={"content-type": "application/cloudevents+json"})
    assert answer.status_code == 204
    assert [e.type for e in _published(rt)][0] == INVENTORY_UPDATED


def test_pubsub_notification_and_cloudevent_of_one_write_are_one_upload(
        client: Any, gcs: FakeGcs) -> None:
    http, rt = client
    gcs.objects[("p-uploads", "n.csv")] = CSV
    resource = object_resource("n.csv", CSV)
    notification = pb.push_envelope(pb.PubSubMessage(
        json.dumps(resource).encode(),
        {"eventType": "OBJECT_FINALIZE", "bucketId": "p-uploads", "objectId": "n.csv",
         "objectGeneration": resource["generation"], "payloadFormat": "JSON_API_V1",
         "notificationConfig": "projects/_/buckets/p-uploads/notificationConfigs/1",
         **storage_events.notification_attributes()}))
    assert http.post("/", data=json.dumps(notification).encode(),
                     headers={"content-type": "application/json"}).status_code == 204
    assert http.post("/", data=json.dumps(resource).encode(),
                     headers=finalized_headers("n.csv")).status_code == 204
    assert len([e for e in _published(rt) if e.type == INVENTORY_UPDATED]) == 1


def test_upload_to_a_bucket_the_function_does_not_know_is_dead_lettered(
        client: Any, gcs: FakeGcs) -> None:
    http, rt = client
    body = json.dumps(object_resource("x.csv", CSV, bucket="elsewhere")).encode()
    assert http.post("/", data=body, headers=finalized_headers("x.csv")).status_code == 204
    (letter,) = rt.dead_letters.letters
    assert "bucket 'elsewhere' is not one this function knows" in \
        letter.attributes[REASON_ATTRIBUTE]
    assert _published(rt) == []


def test_cloud_scheduler_message_becomes_one_audit_per_slot(gcs: FakeGcs) -> None:
    rt = make_runtime(gcs, "inventory-audit")
    (schedule,) = APP.schedules
    message = storage_events.scheduler_message(schedule.name, schedule.emits)
    assert message["attributes"]["ce-type"] == INVENTORY_AUDIT

    def push(publish_time: str) -> bytes:
        return json.dumps({"message": {**message, "messageId": "1",
                                       "publishTime": publish_time},
                           "subscription": "projects/p/subscriptions/s"}).encode()

    assert process_push(rt, {}, push("2026-11-23T03:00:00.412Z"))[1] == 204
    assert process_push(rt, {}, push("2026-11-23T03:00:41.002Z"))[1] == 204  # a retry
    audits = rt.ports.store.scan("audits")  # type: ignore[attr-defined]
    assert [a["audit_id"] for a in audits] == ["inventory-audit@2026-11-23T03:00:00Z"]


def test_claim_check_2mb_event_over_pubsub(gcs: FakeGcs) -> None:
    client = FakePublisherClient()
    blobs = GcsBlobStore(BUCKETS, session_factory=lambda: gcs)
    producer = ClaimCheckPublisher(PubSubPublisher(client, "projects/p/topics/bus"), blobs,
                                   "claims", CLAIM_CHECK_ABOVE)
    big = Event.new("inventory", INVENTORY_UPDATED, {
        "item_id": "A", "quantity": 3, "action": "restock", "manifest": "m" * 2_000_000})
    producer.publish([big])
    [(_, data, attributes, _)] = client.sent
    assert len(data) + sum(len(k) + len(v) for k, v in attributes.items()) < 4096
    assert [k for k in gcs.objects if k[0] == "p-claims"]
    rt = make_runtime(gcs, "inventory")
    pushed = json.dumps(pb.push_envelope(pb.PubSubMessage(data, dict(attributes)))).encode()
    assert process_push(rt, {"content-type": "application/json"}, pushed)[1] == 204
    assert rt.ports.store.get("inventory", "A")["available"] == 3
