"""`switchyard dlq|status|replay --stack S --outputs FILE` against Google's emulators.

The session's functions, topics and push subscriptions (tests/gcp/conftest.py) are the
stack. The outputs file points the commands at dead-letter pull subscriptions of this
module's own on the stack's dead-letter topics (the session's are drained by other
modules' pullers) and at the replay subscription, created from the generator the stack
uses. Dead letters are real: a refused removal (dead-lettered by our entry at once) and a
poison trigger (dead-lettered by Pub/Sub after maxDeliveries).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.gcp import pubsub_binding as pb
from adapters.gcp import redrive as gcp_redrive
from adapters.gcp.redrive import REASON_ATTRIBUTE
from adapters.gcp.replay import replay_subscription_request
from adapters.gcp.topology import subscription_path, topic_path
from adapters.stack_outputs import OUTPUT_NAME, OUTPUT_VERSION
from cli.main import main
from cli.ops import gcp as gcp_ops
from cli.ops.commands import EXIT_DEAD_LETTERS, EXIT_FAILED
from handlers.catalog import INVENTORY_UPDATED, ORDER_COMPLETED, WORKFLOW_TRIGGERED
from handlers.core.events import Event
from handlers.core.observability import trace_id_of
from handlers.orders import saga_id_for
from tests.eventually import eventually
from tests.factories import order_created, restock, workflow_triggered
from tests.gcp.conftest import MAX_DELIVERIES, PROJECT, GcpEmulated, Puller, deliveries

pytestmark = pytest.mark.slow
STACK = "dev-gcp"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def outputs(gcp: GcpEmulated, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    top, mine = gcp.topology, uid()
    subscriber = pubsub_v1.SubscriberClient()
    replay = replay_subscription_request(PROJECT, top.prefix, top.bus_topic,
                                         top.message_retention_s)
    try:
        subscriber.create_subscription(request=replay)
    except AlreadyExists:
        pass
    consumers = {}
    for route in top.routes:
        name = f"ops-{mine}-{route.consumer}"
        subscriber.create_subscription(request={
            "name": subscription_path(PROJECT, name),
            "topic": topic_path(PROJECT, route.dead_letter_topic), "ack_deadline_seconds": 60})
        consumers[route.consumer] = {"subscription": route.subscription,
                                     "deadLetterTopic": route.dead_letter_topic,
                                     "deadLetterSubscription": name}
    subscriber.close()
    path = tmp_path_factory.mktemp("ops") / "outputs.json"
    path.write_text(json.dumps({OUTPUT_NAME: {
        "version": OUTPUT_VERSION, "cloud": "gcp", "prefix": top.prefix, "project": PROJECT,
        "busTopic": top.bus_topic, "replaySubscription": replay["name"].rsplit("/", 1)[1],
        "workflow": top.workflow, "consumers": consumers}}))
    return path


def ops(capsys: pytest.CaptureFixture[str], outputs: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*argv, "--stack", STACK, "--outputs", str(outputs)])
    out, err = capsys.readouterr()
    return code, out, err


def letters(capsys: pytest.CaptureFixture[str], outputs: Path, *extra: str
            ) -> list[dict[str, Any]]:
    code, out, _ = ops(capsys, outputs, "dlq", "list", "--json", *extra)
    assert code == 0
    return list(json.loads(out))


def stock(store: Any, bus: Any, item: str, quantity: int) -> None:
    bus.publish([restock(item, quantity)])
    eventually(lambda: (store.get("inventory", item) or {}).get("available") == quantity,
               f"{quantity} of {item} in stock", 30)


def test_dead_letters_listed_redriven_after_the_fix_exactly_once(
        gcp: GcpEmulated, store: Any, bus: Any, outputs: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    item, order_id = f"sku-{uid()}", f"late-{uid()}"
    removal = Event.new("inventory", INVENTORY_UPDATED,
                        {"item_id": item, "quantity": 2, "action": "remove"})
    trigger = workflow_triggered(order_id)
    bus.publish([removal, trigger])

    def both() -> dict[str, dict[str, Any]] | None:
        found = {d["event_id"]: d for d in letters(capsys, outputs)}
        return found if {removal.id, trigger.id} <= set(found) else None

    found = eventually(both, "both dead letters", 90)
    refused, poison = found[removal.id], found[trigger.id]
    assert refused["consumer"] == "inventory" and "only 0 available" in refused["reason"]
    assert poison["consumer"] == "orders" and poison["type"] == WORKFLOW_TRIGGERED
    assert poison["reason"] == f"exceeded maxDeliveries ({MAX_DELIVERIES} attempts)"
    assert poison["attempts"] == MAX_DELIVERIES
    assert poison["event"]["data"]["order_id"] == order_id
    assert "switchyard-reason" in refused["details"]["attributes"]
    # Listing handed them back: they are all still there, and filters pick them.
    assert [d["event_id"] for d in letters(capsys, outputs, "--reason", "ONLY 0")] == [
        removal.id]
    assert [d["event_id"] for d in letters(capsys, outputs, "--type", WORKFLOW_TRIGGERED)
            ] == [trigger.id]
    code, out, err = ops(capsys, outputs, "status")
    assert code == EXIT_DEAD_LETTERS and "2 dead letters" in err
    assert "num_undelivered_messages" in out  # the backlog is Cloud Monitoring's to tell

    code, out, _ = ops(capsys, outputs, "dlq", "redrive", "--dry-run")
    assert "would redrive 2 entries" in out
    assert len(letters(capsys, outputs)) == 2

    # The fixes: stock arrives, the order arrives.
    stock(store, bus, item, 5)
    bus.publish([order_created(order_id, [(item, 1, 1.0)])])
    eventually(lambda: (store.get("orders", order_id) or {}).get("status") == "completed",
               "the late order to complete", 60)

    # A redrive that dies after republishing, before acking...
    real = gcp_redrive.redrive

    def crash(subscriber: Any, path: str, publisher: Any, chosen: Any) -> int:
        publisher.publish_messages([gcp_redrive.original(d.message) for d in chosen])
        raise ConnectionError("lost the connection before the ack")

    monkeypatch.setattr(gcp_ops.dead_letters, "redrive", crash)
    code, _, err = ops(capsys, outputs, "dlq", "redrive", "--consumer", "inventory")
    assert code == EXIT_FAILED and f"NOT redriven inventory/{removal.id}" in err
    monkeypatch.setattr(gcp_ops.dead_letters, "redrive", real)
    eventually(lambda: store.get("inventory", item)["available"] == 2, "the removal", 30)
    # ...leaves it dead-lettered; redriven again, it is a duplicate: no second effect.
    code, out, _ = ops(capsys, outputs, "dlq", "redrive")
    assert code == 0 and "redriven 2 entries" in out
    processed = f"inventory|{removal.source}|{removal.id}"
    eventually(lambda: store.get("processed", processed), "the removal's record", 30)
    eventually(lambda: store.get("processed", f"orders|{trigger.source}|{trigger.id}"),
               "the redriven trigger to be handled", 30)
    # Barrier: the second redrive's copy of the removal was handled (as a duplicate), so
    # a second effect on the stock would be visible now.
    eventually(lambda: "duplicate" in deliveries(gcp, "inventory", removal.id),
               "the second redrive's removal to arrive", 30)
    assert store.get("inventory", item)["available"] == 2
    assert letters(capsys, outputs) == []
    assert ops(capsys, outputs, "status")[0] == 0
    saga = saga_id_for(order_id)
    assert gcp.proxy.calls_for(saga).count((saga, "payment", "action")) == 1


def test_replay_by_seek_republishes_the_window_and_changes_nothing(
        gcp: GcpEmulated, store: Any, bus: Any, outputs: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    item, order_id = f"sku-{uid()}", f"o-{uid()}"
    start = datetime.now(UTC).isoformat()
    time.sleep(1)  # publish times are the emulator's clock: keep clear of the boundary
    supply, order = restock(item, 4), order_created(order_id, [(item, 3, 2.0)])
    bus.publish([supply])
    eventually(lambda: (store.get("inventory", item) or {}).get("available") == 4,
               f"4 of {item} in stock", 30)
    bus.publish([order])
    eventually(lambda: (store.get("orders", order_id) or {}).get("status") == "completed",
               "the order to complete", 60)
    saga = saga_id_for(order_id)

    def snapshot() -> list[Any]:
        return [store.get("orders", order_id), store.get("inventory", item),
                store.get("payments", f"{saga}:payment:action")]

    before = snapshot()
    code, out, _ = ops(capsys, outputs, "replay", "--from", start, "--type",
                       INVENTORY_UPDATED, "--dry-run", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] and dry["replayed"] >= 1
    code, out, _ = ops(capsys, outputs, "replay", "--from", start, "--json")
    first = json.loads(out)
    # The restock, the order, and what the consumers and the saga emitted.
    assert code == 0 and first["replayed"] >= 4, first
    # Replaying the same window again skips the copies the first replay published.
    code, out, _ = ops(capsys, outputs, "replay", "--from", start, "--json")
    again = json.loads(out)
    assert again["replayed"] == first["replayed"]
    assert again["details"]["skipped"] >= first["replayed"]

    # Barrier: both replays' copies of the restock and the order were handled (as
    # duplicates), so a second effect would be visible now.
    eventually(lambda: deliveries(gcp, "inventory", supply.id).count("duplicate") >= 2
               and deliveries(gcp, "orders", order.id).count("duplicate") >= 2,
               "both replays' copies to be handled", 60)
    assert snapshot() == before
    assert gcp.proxy.calls_for(saga).count((saga, "payment", "action")) == 1


def test_trace_context_flows_through_the_workflow(
        gcp: GcpEmulated, store: Any, bus: Any, pullers: dict[str, Puller]) -> None:
    """The order's traceparent goes into the Workflows execution arguments and comes back
    on the events the saga steps emit."""
    item, order_id = f"sku-{uid()}", f"o-{uid()}"
    stock(store, bus, item, 1)
    bus.publish([order_created(order_id, [(item, 1, 1.0)]).with_extensions(
        traceparent=TRACEPARENT)])
    match: Callable[[Any], bool] = lambda m: (  # noqa: E731
        m.attributes.get("ce-type") == ORDER_COMPLETED
        and m.attributes.get("ce-subject") == order_id)
    [completed] = pullers["events"].wait_for(match, 60, "Order Completed on the bus")
    assert trace_id_of(completed.attributes["ce-traceparent"]) == trace_id_of(TRACEPARENT)


def test_discard_acks_the_dead_letter_after_recording_it(
        gcp: GcpEmulated, bus: Any, outputs: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "ops-oncall")
    item = f"sku-{uid()}"
    poison = Event.new("inventory", INVENTORY_UPDATED,
                       {"item_id": item, "quantity": 2, "action": "remove"})
    bus.publish([poison])
    eventually(lambda: poison.id in {d["event_id"] for d in letters(capsys, outputs)},
               "the refused removal to be dead-lettered", 90)
    audit = tmp_path / "discards.jsonl"

    code, out, _ = ops(capsys, outputs, "dlq", "discard", poison.id, "--dry-run",
                       "--audit-log", str(audit))
    assert code == 0 and "would discard 1 dead letter" in out and not audit.exists()
    assert poison.id in {d["event_id"] for d in letters(capsys, outputs)}
    # No record, no ack: a full disk stops the discard before anything goes.
    code, _, err = ops(capsys, outputs, "dlq", "discard", poison.id, "--audit-log",
                       "/dev/full")
    assert code == EXIT_FAILED and "nothing was discarded" in err
    assert poison.id in {d["event_id"] for d in letters(capsys, outputs)}

    leased: list[tuple[str, list[str]]] = []
    pull_all = gcp_ops.GcpOps._pull_all

    def recording(self: gcp_ops.GcpOps, subscription: str) -> list[Any]:
        received = pull_all(self, subscription)
        leased.append((subscription, [m.ack_id for m in received]))
        return received

    with pytest.MonkeyPatch.context() as spy:
        spy.setattr(gcp_ops.GcpOps, "_pull_all", recording)
        code, out, _ = ops(capsys, outputs, "dlq", "discard", poison.id, "--audit-log",
                           str(audit))
    assert code == 0 and f"discarded 1 dead letter: ['inventory/{poison.id}']" in out
    [line] = [json.loads(x) for x in audit.read_text().splitlines()]
    assert (line["event_id"], line["outcome"], line["discarded_by"]) == (
        poison.id, "discarded", "ops-oncall")
    assert "only 0 available" in line["reason"] and line["stack"] == STACK
    # Barrier for "the ack removed it": every lease the discard took is released now (a
    # no-op for an acked message; a letter it failed to ack, or acked under the wrong
    # id, becomes deliverable at once instead of at the end of its 60 s deadline), then
    # a sentinel goes on the same dead-letter topic. A listing that holds the sentinel
    # pulled everything deliverable before it, so the letter would be in it too.
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    for subscription, ack_ids in leased:
        if ack_ids:
            subscriber.modify_ack_deadline(request={
                "subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": 0})
    subscriber.close()
    sentinel = Event.new("ops-barrier", INVENTORY_UPDATED,
                         {"item_id": item, "quantity": 1, "action": "remove"})
    message = pb.to_message(sentinel)
    dead_letter_topic = next(r.dead_letter_topic for r in gcp.topology.routes
                             if r.consumer == "inventory")
    pubsub_v1.PublisherClient().publish(
        topic_path(PROJECT, dead_letter_topic), message.data,
        **{**message.attributes, REASON_ATTRIBUTE: "barrier"}).result(timeout=30)

    def with_sentinel() -> set[str] | None:
        listed = {d["event_id"] for d in letters(capsys, outputs)}
        return listed if sentinel.id in listed else None

    assert poison.id not in eventually(with_sentinel, "the sentinel dead letter", 30)
    code, out, _ = ops(capsys, outputs, "dlq", "discard", sentinel.id, "--audit-log",
                       str(audit))
    assert code == 0 and f"discarded 1 dead letter: ['inventory/{sentinel.id}']" in out
    code, _, err = ops(capsys, outputs, "dlq", "discard", poison.id, "--audit-log",
                       str(audit))
    assert code == EXIT_FAILED and f"no dead letter with event id '{poison.id}'" in err


def test_a_cloud_replay_warns_that_failures_are_dead_lettered_again(
        gcp: GcpEmulated, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = ops(capsys, outputs, "replay", "--from", "1m", "--dry-run")
    assert code == 0 and "are dead-lettered again" in err


def test_no_credentials_is_one_line(tmp_path: Path) -> None:
    """Without the emulator and without credentials, google-auth raises
    DefaultCredentialsError when the client is made: the command says what to run."""
    import os
    import subprocess
    import sys

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({OUTPUT_NAME: {
        "version": OUTPUT_VERSION, "cloud": "gcp", "prefix": "p", "project": "proj",
        "busTopic": "bus", "replaySubscription": "p-replay",
        "consumers": {"orders": {"subscription": "s", "deadLetterTopic": "d",
                                 "deadLetterSubscription": "ds"}}}}))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "PUBSUB_", "CLOUDSDK_", "GCE_"))}
    # No metadata server either: google-auth would otherwise probe for one.
    env.update(HOME=str(tmp_path), NO_GCE_CHECK="True",
               CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
    done = subprocess.run([sys.executable, "-m", "cli", "dlq", "list", "--stack",
                           "prod", "--outputs", str(path)], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith(
        "switchyard dlq: no Google Cloud credentials found: run `gcloud auth "
        "application-default login`"), done.stderr
