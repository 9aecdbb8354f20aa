"""Cloud Scheduler's message on Google's Pub/Sub emulator: pushed to the audit function
(functions-framework on the extracted archive), which audits stock in the Firestore
emulator once per slot. (Cloud Storage has no emulator: see test_storage_events.py.)"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from adapters.gcp import storage_events
from adapters.gcp.pubsub_binding import PubSubMessage
from handlers.app import APP
from tests.eventually import eventually
from tests.factories import restock
from tests.gcp.conftest import GcpEmulated

pytestmark = pytest.mark.slow


def test_cloud_scheduler_message_audits_stock(gcp: GcpEmulated, store: Any, bus: Any) -> None:
    item = f"sku-{uuid.uuid4().hex[:10]}"
    bus.publish([restock(item, 5)])
    eventually(lambda: (store.get("inventory", item) or {}).get("available") == 5,
               "the restock", 30)
    (schedule,) = APP.schedules
    message = storage_events.scheduler_message(schedule.name, schedule.emits)
    job = PubSubMessage(base64.b64decode(message["data"]), message["attributes"])
    bus.publish_messages([job, job])  # Cloud Scheduler may publish a firing twice

    def audited() -> list[dict[str, Any]]:
        return [a for a in store.scan("audits") if a["items_checked"] >= 1
                and not any(d["item_id"] == item for d in a["drifting"])]

    audits = eventually(audited, "an audit of the restocked item", 60)
    slot = audits[0]["audit_id"].removeprefix(f"{schedule.name}@")
    assert slot.endswith(":00Z")  # the publish time, truncated to the minute
    ledger = store.get("stock_ledger", item)
    assert ledger is not None and ledger["received"] == 5
