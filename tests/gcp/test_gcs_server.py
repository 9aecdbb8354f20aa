"""The Cloud Storage stand-in the GCP contract backend serves (tests/gcp/gcs_server.py):
the real `GcsBlobStore` over its HTTP JSON API, and the notifications it publishes read
by the real `storage_events` adapter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from adapters.gcp import pubsub_binding as pb
from adapters.gcp import storage_events
from adapters.gcp.gcs_blob_store import GcsBlobStore, anonymous_session
from handlers.app import APP
from handlers.core.errors import BlobMissing, PermanentError
from handlers.core.storage import STORAGE_OBJECT_FINALIZED
from tests.gcp.gcs_server import FakeCloudStorage

TOPIC = "projects/p/topics/bus"


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        self.sent.append((topic, data, attributes))
        done: Future[str] = Future()
        done.set_result(str(len(self.sent)))
        return done


@pytest.fixture()
def storage() -> Iterator[tuple[FakeCloudStorage, _Publisher]]:
    publisher = _Publisher()
    server = FakeCloudStorage(publisher)
    server.create_bucket("p-uploads")
    server.create_bucket("p-claims")
    server.add_notification("p-uploads", TOPIC, (storage_events.OBJECT_FINALIZE,),
                            "JSON_API_V1", storage_events.notification_attributes())
    yield server, publisher
    server.close()


def _blobs(server: FakeCloudStorage) -> GcsBlobStore:
    return GcsBlobStore({"uploads": "p-uploads", "claims": "p-claims", "gone": "p-gone"},
                        base_url=server.url, session_factory=anonymous_session)


def test_blob_store_round_trip_and_errors(storage: Any) -> None:
    server, publisher = storage
    blobs = _blobs(server)
    blobs.write("claims", "events/ab/c d.json", b'{"x":1}', "application/json")
    assert blobs.read("claims", "events/ab/c d.json") == b'{"x":1}'
    with pytest.raises(BlobMissing):
        blobs.read("claims", "events/none.json")
    with pytest.raises(PermanentError, match="refused upload of p-gone/k"):
        blobs.write("gone", "k", b"")
    assert publisher.sent == []  # the claims bucket has no notification


def test_finished_upload_publishes_what_cloud_storage_publishes(storage: Any) -> None:
    server, publisher = storage
    blobs = _blobs(server)
    blobs.write("uploads", "r.csv", b"item_id,quantity\n", "text/csv")
    blobs.write("uploads", "r.csv", b"item_id,quantity\n", "text/csv")  # overwritten
    (topic, data, first), (_, _, second) = publisher.sent
    assert topic == TOPIC
    resource = json.loads(data)
    assert {k: first[k] for k in ("eventType", "payloadFormat", "bucketId", "objectId",
                                  "ce-type")} == {
        "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1",
        "bucketId": "p-uploads", "objectId": "r.csv", "ce-type": STORAGE_OBJECT_FINALIZED}
    assert first["objectGeneration"] == resource["generation"] and "overwroteGeneration" \
        not in first
    assert second["overwroteGeneration"] == first["objectGeneration"]
    assert int(second["objectGeneration"]) > int(first["objectGeneration"])
    assert resource["size"] == "17" and resource["contentType"] == "text/csv"
    events = []
    for _, body, attributes in publisher.sent:
        envelope = pb.push_envelope(pb.PubSubMessage(body, attributes))
        events.append(storage_events.from_push(json.dumps(envelope).encode(), APP,
                                               {"uploads": "p-uploads"}))
    one, two = events
    assert one is not None and two is not None
    assert (one.type, one.data["bucket"], one.data["name"]) == \
        (STORAGE_OBJECT_FINALIZED, "uploads", "r.csv")
    assert one.id != two.id and one.data["etag"] == two.data["etag"]  # same bytes


def test_listing_and_unsupported_calls(storage: Any) -> None:
    import requests

    server, _ = storage
    _blobs(server).write("claims", "events/1.json", b"{}")
    listing = requests.get(f"{server.url}/storage/v1/b/p-claims/o", timeout=10).json()
    assert [o["name"] for o in listing["items"]] == ["events/1.json"]
    assert requests.get(f"{server.url}/storage/v1/b/p-none/o", timeout=10).status_code == 404
    assert requests.delete(f"{server.url}/storage/v1/b/p-claims/o/x",
                           timeout=10).status_code == 501
