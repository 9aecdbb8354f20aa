"""The engine's idempotency record and its bounds, observed from outside.

What a delivery leaves in `processed` (fingerprint, status, effects, expiry 30 days on),
when the record is `done` at once (a backend whose transaction holds the effects) or only
after the effects ran (the clouds), the bound on re-runs under contention, and what an
ignored delivery says about why.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from adapters.memory import MemoryNotifier, MemoryPublisher, MemoryStore, memory_ports
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED
from handlers.core import jsonformat
from handlers.core.engine import DEDUPE_TTL, PROCESSED, dedupe_key, handle, run_step
from handlers.core.errors import BlobMissing, ConflictError, TransientError, ValidationError
from handlers.core.events import Event
from handlers.core.ports import Op, Update
from handlers.core.saga_runner import new_state
from tests.factories import order_created, restock


def test_a_processed_delivery_leaves_its_record_done_with_its_expiry() -> None:
    ports = memory_ports()
    event = restock("A", 2)
    outcome = handle(APP, "inventory", event, ports)
    assert (outcome.status, outcome.consumer, outcome.event_id) == (
        "processed", "inventory", event.id)
    record = ports.store.get(PROCESSED, dedupe_key("inventory", event))
    assert record["status"] == "done"
    assert record["fingerprint"] == jsonformat.fingerprint(event)
    expected = ports.clock.now() + DEDUPE_TTL
    assert record["expires_at"] == int(expected.timestamp())
    assert DEDUPE_TTL.days == 30
    assert record["result"] is None  # a delivery has no step result; a saga step has


def test_a_different_event_under_a_used_id_is_refused_saying_why() -> None:
    """The dead letter's reason: the key and that it is refused, not applied again."""
    ports = memory_ports()
    first = restock("A", 3)
    handle(APP, "inventory", first, ports)
    changed = dataclasses.replace(first, data={**first.data, "quantity": 300})
    with pytest.raises(ConflictError) as refused:
        handle(APP, "inventory", changed, ports)
    key = dedupe_key("inventory", first)
    assert str(refused.value) == (f"idempotency key {key!r} was already used for a different "
                                  "payload; refusing to apply it again")


class _FailingPublisher(MemoryPublisher):
    def publish(self, events: Sequence[Event]) -> None:
        raise TransientError("bus down")


def test_without_a_shared_transaction_the_record_is_committed_until_its_effects_ran() -> None:
    """The clouds: writes and record commit first; a failed publish leaves the record
    `committed` with its effects, and the redelivery performs them and marks it done."""
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 5), ports)
    ports.publisher = _FailingPublisher()
    state = new_state("order-o1", {"order_id": "o1"}, None)
    handle(APP, "orders", order_created("o1", [("A", 1, 1.0)]), ports)
    run_step(APP, ports, "order-o1", "create_order", "action", state)
    state["results"]["create_order"] = ports.store.get(
        PROCESSED, "step|order-o1|create_order|action")["result"]["result"]
    with pytest.raises(TransientError):
        run_step(APP, ports, "order-o1", "payment", "action", state)
    record = ports.store.get(PROCESSED, "step|order-o1|payment|action")
    assert record["status"] == "committed"
    assert [e["type"] for e in record["effects"]["emits"]] == [
        "com.switchyard.payment.processed"]
    ports.publisher = MemoryPublisher()
    again = run_step(APP, ports, "order-o1", "payment", "action", state)
    assert again.ok and again.replayed
    assert ports.store.get(PROCESSED, "step|order-o1|payment|action")["status"] == "done"
    assert [e.type for e in ports.publisher.published] == ["com.switchyard.payment.processed"]


def test_with_a_shared_transaction_the_record_is_done_with_the_writes() -> None:
    entered: list[str] = []

    @contextlib.contextmanager
    def atomic() -> Iterator[None]:
        entered.append("tx")
        yield

    ports = dataclasses.replace(memory_ports(), atomic=atomic)
    event = restock("A", 2)
    handle(APP, "inventory", event, ports)
    assert entered == ["tx"]
    assert ports.store.get(PROCESSED, dedupe_key("inventory", event))["status"] == "done"


class MemoryNotifierFlaky(MemoryNotifier):
    """Fails its first delivery (after the commit: the effect is re-performed later)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def notify(self, notification_id: str, message: Mapping[str, Any]) -> None:
        self.ids.append(notification_id)
        if len(self.ids) == 1:
            raise TransientError("mail relay down")
        super().notify(notification_id, message)


class _AlwaysContended(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def transact(self, ops: Sequence[Op]) -> bool:
        self.attempts += 1
        return False


def test_contention_that_never_ends_is_a_transient_error_after_five_runs() -> None:
    store = _AlwaysContended()
    ports = dataclasses.replace(memory_ports(), store=store)
    event = restock("A", 1)
    with pytest.raises(TransientError) as error:
        handle(APP, "inventory", event, ports)
    key = dedupe_key("inventory", event)
    assert str(error.value) == f"contention on {key!r}: gave up after 5 tries"
    assert store.attempts == 5


def test_an_ignored_delivery_says_whether_the_type_is_unknown_or_not_consumed_here() -> None:
    ports = memory_ports()
    unknown = Event.new("elsewhere", "com.example.unknown", {"x": 1})
    elsewhere = Event.new("inventory", INVENTORY_UPDATED,
                          {"item_id": "A", "quantity": 1, "action": "restock"})
    got = handle(APP, "orders", unknown, ports)
    assert (got.status, got.consumer, got.event_id, got.detail) == (
        "ignored", "orders", unknown.id, "com.example.unknown: unknown event type")
    got = handle(APP, "orders", elsewhere, ports)
    assert (got.status, got.consumer, got.event_id, got.detail) == (
        "ignored", "orders", elsewhere.id, f"{INVENTORY_UPDATED}: not consumed here")
    assert ports.store.scan(PROCESSED) == []  # nothing recorded for either


def test_a_duplicate_reports_what_the_first_delivery_emitted() -> None:
    ports = memory_ports()
    event = order_created("o1", [("A", 1, 1.0)])
    first = handle(APP, "order-analytics", event, ports)
    second = handle(APP, "order-analytics", event, ports)
    assert (first.status, second.status) == ("processed", "duplicate")
    assert len(first.emitted) == 1 and second.emitted == first.emitted
    assert ports.publisher.published == list(first.emitted)  # type: ignore[attr-defined]


def test_an_unconditional_put_overwrites_and_commits_with_the_record() -> None:
    """`ctx.put` replaces an existing item (no condition), in the same transaction as
    the idempotency record: a redelivery does not write it again."""
    def overwrite(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.put("inventory", ctx.event.data["item_id"],
                {"item_id": ctx.event.data["item_id"], "available": ctx.event.data["quantity"]})

    consumers = tuple(dataclasses.replace(c, handler=overwrite) if c.name == "inventory"
                      else c for c in APP.consumers)
    app = dataclasses.replace(APP, consumers=consumers)
    ports = memory_ports()
    ports.store.put_if_absent("inventory", "A", {"item_id": "A", "available": 9, "x": 1})
    event = restock("A", 4)
    assert handle(app, "inventory", event, ports).status == "processed"
    assert ports.store.get("inventory", "A") == {"item_id": "A", "available": 4}
    ports.store.transact([Update("inventory", "A", set={"available": 7})])
    assert handle(app, "inventory", event, ports).status == "duplicate"
    assert ports.store.get("inventory", "A")["available"] == 7


def test_a_saga_is_started_with_the_trace_of_the_event_that_asked_for_it() -> None:
    ports = memory_ports()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event = dataclasses.replace(order_created("o1", [("A", 1, 1.0)]),
                                extensions={"traceparent": traceparent})
    handle(APP, "orders", event, ports)
    assert ports.sagas.started["order-o1"]["traceparent"] == traceparent  # type: ignore[attr-defined]


def test_a_notification_goes_out_under_an_id_that_a_redelivery_reuses() -> None:
    ports = memory_ports()
    ports.notifier = MemoryNotifierFlaky()
    event = Event.new("notifications", "com.switchyard.notification.sent", {
        "recipient": "c1", "order_id": "o1", "channel": "email", "subject": "s",
        "message": "m"})
    with pytest.raises(TransientError):
        handle(APP, "notifications", event, ports)
    handle(APP, "notifications", event, ports)
    ids = ports.notifier.ids  # type: ignore[attr-defined]
    assert len(ids) == 2 and ids[0] == ids[1] and isinstance(ids[0], str) and ids[0]


def test_a_step_without_a_compensation_has_nothing_to_undo() -> None:
    outcome = run_step(APP, memory_ports(), "order-o1", "create_order", "compensate",
                       new_state("order-o1", {"order_id": "o1"}, None))
    assert (outcome.ok, outcome.result, outcome.reason, outcome.detail, outcome.replayed) == (
        True, {}, "", "", False)


def test_every_event_a_saga_emits_carries_the_saga_trace() -> None:
    from handlers.core.saga_runner import run_to_end

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 5), ports)
    handle(APP, "orders", order_created("o1", [("A", 1, 1.0)]), ports)
    state = run_to_end(APP, ports, new_state("order-o1", {"order_id": "o1"}, traceparent))
    assert state["status"] == "completed"
    published = ports.publisher.published  # type: ignore[attr-defined]
    assert len(published) >= 4
    assert all(e.traceparent == traceparent for e in published)
    untraced = memory_ports()
    handle(APP, "inventory", restock("A", 5), untraced)
    handle(APP, "orders", order_created("o1", [("A", 1, 1.0)]), untraced)
    run_to_end(APP, untraced, new_state("order-o1", {"order_id": "o1"}, None))
    assert all(e.traceparent is None for e in untraced.publisher.published)  # type: ignore[attr-defined]


def test_a_replayed_step_answers_what_it_answered_the_first_time() -> None:
    ports = memory_ports()
    handle(APP, "orders", order_created("o1", [("A", 1, 2000.0)]), ports)
    state = new_state("order-o1", {"order_id": "o1"}, None)
    state["results"]["create_order"] = {"order_id": "o1", "customer_id": "c1",
                                        "items": [], "total_cents": 200_000}
    first = run_step(APP, ports, "order-o1", "payment", "action", state)
    again = run_step(APP, ports, "order-o1", "payment", "action", state)
    assert (first.ok, first.reason, first.replayed) == (False, "payment_declined", False)
    assert (again.ok, again.reason, again.detail, again.result, again.replayed) == (
        False, "payment_declined", first.detail, {}, True)


def _with_step(name: str, **fields: Any) -> Any:
    from handlers.saga import ORDER_SAGA

    steps = tuple(dataclasses.replace(s, **fields) if s.name == name else s
                  for s in ORDER_SAGA.steps)
    return dataclasses.replace(APP, saga=dataclasses.replace(ORDER_SAGA, steps=steps))


def test_a_step_runs_on_an_event_naming_the_step_with_the_saga_trace() -> None:
    """A saga step's `ctx.event`: its id is the step's record key (the same on every
    retry), its source the saga, its type the step and phase; it carries the saga's
    trace, which every event the step emits inherits."""
    seen: list[Event] = []

    def compensate(ctx: Any) -> dict[str, Any]:
        seen.append(ctx.event)
        return {}

    app = _with_step("payment", compensate=compensate)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    run_step(app, memory_ports(), "order-o1", "payment", "compensate",
             new_state("order-o1", {"order_id": "o1"}, traceparent))
    run_step(app, memory_ports(), "order-o2", "payment", "compensate",
             new_state("order-o2", {"order_id": "o2"}, None))
    traced, untraced = seen
    assert (traced.id, traced.source, traced.type) == (
        "step|order-o1|payment|compensate", "saga/order", "saga.payment.compensate")
    assert traced.traceparent == traceparent
    assert untraced.id == "step|order-o2|payment|compensate"
    assert untraced.traceparent is None and dict(untraced.extensions) == {}


def test_what_a_step_logs_carries_the_saga_step_phase_and_trace() -> None:
    import io
    import json
    import logging

    from handlers.core.observability import ContextFilter, JsonFormatter, trace_id_of

    def action(ctx: Any) -> dict[str, Any]:
        logging.getLogger("switchyard.test").warning("inside the step")
        return {}

    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.addFilter(ContextFilter())
    capture.setFormatter(JsonFormatter())
    logger = logging.getLogger("switchyard")
    logger.addHandler(capture)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        run_step(_with_step("ship", action=action), memory_ports(), "order-o1", "ship",
                 "action", new_state("order-o1", {"order_id": "o1"}, traceparent))
    finally:
        logger.removeHandler(capture)
    (line,) = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert line["message"] == "inside the step"
    assert (line["trace_id"], line["saga_id"], line["step"], line["phase"]) == (
        trace_id_of(traceparent), "order-o1", "ship", "action")


def test_the_step_of_a_record_key_is_read_back_even_from_a_saga_id_with_bars() -> None:
    """A store that places a step's records by step (Firestore's databases) reads the
    step back from the key; saga ids may contain '|', other keys name no step."""
    from handlers.core.engine import step_key, step_of_key

    assert step_of_key(step_key("o-1", "ship", "action")) == "ship"
    assert step_of_key(step_key("a|b", "reserve_inventory", "compensate")) == \
        "reserve_inventory"
    assert step_of_key(dedupe_key("orders", restock("A", 1))) is None
    assert step_of_key("step|") is None
    assert step_of_key("step|ship") is None
    assert step_of_key("step|ship|action") is None  # no saga id: not a step's key
    assert step_of_key("xstep|s|ship|action") is None


def test_an_ignored_delivery_logs_why() -> None:
    import logging

    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = _Keep()
    logger = logging.getLogger("switchyard.engine")
    logger.addHandler(keep)
    try:
        handle(APP, "orders", Event.new("elsewhere", "com.example.unknown", {}), memory_ports())
        handle(APP, "orders", restock("A", 1), memory_ports())
    finally:
        logger.removeHandler(keep)
    assert [(r.getMessage(), r.why) for r in records] == [  # type: ignore[attr-defined]
        ("ignored event", "unknown event type"), ("ignored event", "not consumed here")]


def test_a_step_that_succeeds_answers_ok_with_its_result_and_no_reason() -> None:
    ports = memory_ports()
    handle(APP, "orders", order_created("o1", [("A", 1, 2.0)]), ports)
    outcome = run_step(APP, ports, "order-o1", "create_order", "action",
                       new_state("order-o1", {"order_id": "o1"}, None))
    assert (outcome.ok, outcome.reason, outcome.detail, outcome.replayed) == (
        True, "", "", False)
    assert outcome.result["order_id"] == "o1"


class _Blobs:
    """A claim-check bucket whose objects can expire."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def read(self, bucket: str, key: str) -> bytes:
        if (bucket, key) not in self.objects:
            raise BlobMissing(f"{bucket}/{key} not found")
        return self.objects[(bucket, key)]

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = data


def test_a_claim_checked_event_processed_before_is_a_duplicate_after_its_payload_expired(
        ) -> None:
    """A redelivery of a fully processed claim-checked event needs no payload: it is
    acknowledged as a duplicate, not dead-lettered for the expired payload."""
    from handlers.app import CLAIMS
    from handlers.core import claim_check

    blobs = _Blobs()
    ports = dataclasses.replace(memory_ports(), blobs=blobs)
    reference = claim_check.check_in(restock("A", 2), blobs, CLAIMS)
    assert handle(APP, "inventory", reference, ports).status == "processed"
    blobs.objects.clear()  # the bucket's lifecycle rule expired the payload
    again = handle(APP, "inventory", reference, ports)
    assert (again.status, again.consumer, again.event_id) == (
        "duplicate", "inventory", reference.id)
    assert ports.store.get("inventory", "A")["available"] == 2


def test_a_claim_checked_payload_gone_before_processing_is_refused_naming_its_expiry() -> None:
    from handlers.app import CLAIM_EXPIRE_DAYS, CLAIMS
    from handlers.core import claim_check

    blobs = _Blobs()
    ports = dataclasses.replace(memory_ports(), blobs=blobs)
    reference = claim_check.check_in(restock("A", 2), blobs, CLAIMS)
    blobs.objects.clear()
    with pytest.raises(BlobMissing) as gone:
        handle(APP, "inventory", reference, ports)
    assert f"(objects there expire after {CLAIM_EXPIRE_DAYS} days)" in str(gone.value)
    assert ports.store.get("inventory", "A") is None


def test_another_claim_checked_event_under_a_used_id_is_refused_not_taken_for_a_duplicate(
        ) -> None:
    from handlers.app import CLAIMS
    from handlers.core import claim_check

    blobs = _Blobs()
    ports = dataclasses.replace(memory_ports(), blobs=blobs)
    first = restock("A", 2)
    handle(APP, "inventory", claim_check.check_in(first, blobs, CLAIMS), ports)
    other = dataclasses.replace(first, subject="another item")
    with pytest.raises(ConflictError, match="already used for a different payload"):
        handle(APP, "inventory", claim_check.check_in(other, blobs, CLAIMS), ports)
    assert ports.store.get("inventory", "A")["available"] == 2


def test_a_claim_checked_event_resent_with_other_data_is_refused_and_the_first_payload_kept(
        ) -> None:
    """The same id with other data, both too big for the bus: the second reference names
    another object (the key follows the content), so the first payload is not overwritten
    and the engine refuses the reused id as it does for plain events."""
    from handlers.app import CLAIMS
    from handlers.core import claim_check

    blobs = _Blobs()
    ports = dataclasses.replace(memory_ports(), blobs=blobs)
    first = restock("A", 2)
    first_reference = claim_check.check_in(first, blobs, CLAIMS)
    assert handle(APP, "inventory", first_reference, ports).status == "processed"
    other = dataclasses.replace(first, data={**first.data, "quantity": 7})
    other_reference = claim_check.check_in(other, blobs, CLAIMS)
    assert other_reference.extensions[claim_check.CLAIM_EXTENSION] != \
        first_reference.extensions[claim_check.CLAIM_EXTENSION]
    with pytest.raises(ConflictError, match="already used for a different payload"):
        handle(APP, "inventory", other_reference, ports)
    assert claim_check.check_out(first_reference, blobs).data == first.data
    assert ports.store.get("inventory", "A")["available"] == 2
    assert handle(APP, "inventory", first_reference, ports).status == "duplicate"


def test_a_claim_checked_event_not_yet_done_is_run_again_from_its_payload() -> None:
    """A record whose effects did not all run (status `committed`) is no proof of a
    finished delivery: the redelivery fetches the payload and performs the effects."""
    from handlers.app import CLAIMS
    from handlers.core import claim_check

    blobs = _Blobs()
    ports = dataclasses.replace(memory_ports(), blobs=blobs)
    ports.publisher = _FailingPublisher()
    event = order_created("o1", [("A", 1, 1.0)])
    reference = claim_check.check_in(event, blobs, CLAIMS)
    with pytest.raises(TransientError):
        handle(APP, "order-analytics", reference, ports)
    ports.publisher = MemoryPublisher()
    assert handle(APP, "order-analytics", reference, ports).status == "duplicate"
    assert [e.type for e in ports.publisher.published] == [  # type: ignore[attr-defined]
        "com.switchyard.analytics.order.recorded"]


def test_an_app_without_a_claim_check_bucket_handles_plain_events() -> None:
    """Claim checks are optional: an app that declares no claim-check bucket still
    handles every event that carries its data."""
    app = dataclasses.replace(APP, buckets=tuple(b for b in APP.buckets if not b.claim_check))
    assert app.claim_check_bucket() is None
    ports = memory_ports()
    assert handle(app, "inventory", restock("A", 2), ports).status == "processed"
    assert ports.store.get("inventory", "A")["available"] == 2


def test_each_delivery_emits_under_ids_of_its_own_and_a_rerun_under_the_same() -> None:
    """Emitted ids derive from the delivery's record key: two orders' analytics records
    are two events downstream (not one and a duplicate); a delivery run again after a
    failed publish re-publishes the same ids."""
    ports = memory_ports()
    first, second = order_created("o1", [("A", 1, 1.0)]), order_created("o2", [("A", 1, 1.0)])
    one = handle(APP, "order-analytics", first, ports).emitted
    two = handle(APP, "order-analytics", second, ports).emitted
    assert len(one) == len(two) == 1 and one[0].id != two[0].id

    failing = memory_ports()
    failing.publisher = _FailingPublisher()
    with pytest.raises(TransientError):
        handle(APP, "order-analytics", first, failing)
    failing.publisher = MemoryPublisher()
    handle(APP, "order-analytics", first, failing)
    assert [e.id for e in failing.publisher.published] == [one[0].id]  # type: ignore[attr-defined]


def test_an_event_a_handler_emits_with_invalid_attributes_is_refused_naming_them() -> None:
    """What a handler emits is checked as a CloudEvent before it is published: a subject
    that is not a string (a handler's bug) fails the delivery, and nothing goes out."""
    def handler(ctx: Any) -> None:
        ctx.emit(INVENTORY_UPDATED, {"item_id": "A", "quantity": 1, "action": "restock"},
                 subject=42)

    consumers = tuple(dataclasses.replace(c, handler=handler) if c.name == "inventory" else c
                      for c in APP.consumers)
    app = dataclasses.replace(APP, consumers=consumers)
    ports = memory_ports()
    with pytest.raises(ValidationError) as refused:
        handle(app, "inventory", restock("A", 1), ports)
    assert refused.value.problems == ("event: attribute 'subject' must be a string",)
    assert str(refused.value) == "invalid CloudEvent: event: attribute 'subject' must be a string"
    assert ports.publisher.published == []  # type: ignore[attr-defined]
