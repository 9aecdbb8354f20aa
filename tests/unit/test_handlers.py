"""The order system's handlers through the engine, on in-memory fakes of every port."""

from __future__ import annotations

import threading

import pytest

from adapters.memory import MemoryPublisher, MemorySagaStarter, memory_ports
from handlers.app import APP
from handlers.catalog import NOTIFICATION_SENT, ORDER_COMPLETED
from handlers.core.engine import PROCESSED, handle
from handlers.core.errors import ConflictError, PermanentError, TransientError, ValidationError
from handlers.core.events import Event
from tests.factories import order_created, order_data, restock, workflow_triggered


@pytest.fixture()
def ports():
    return memory_ports()


def test_order_created_stores_pending_order_and_starts_one_saga(ports) -> None:
    event = order_created("o1", [("A", 2, 10.0)])
    outcome = handle(APP, "orders", event, ports)
    assert outcome.status == "processed"
    order = ports.store.get("orders", "o1")
    assert order["status"] == "pending" and order["total_cents"] == 2000
    assert list(ports.sagas.started) == ["order-o1"]


def test_same_event_twice_has_one_effect(ports) -> None:
    event = order_created("o1", [("A", 2, 10.0)])
    assert handle(APP, "orders", event, ports).status == "processed"
    assert handle(APP, "orders", event, ports).status == "duplicate"
    assert len(ports.sagas.started) == 1


def test_concurrent_duplicates_have_one_effect(ports) -> None:
    event = restock("A", 3)
    outcomes: list[str] = []

    def deliver() -> None:
        outcomes.append(handle(APP, "inventory", event, ports).status)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate"] * 7 + ["processed"]
    assert ports.store.get("inventory", "A")["available"] == 3


def test_same_key_different_payload_is_a_permanent_conflict(ports) -> None:
    first = restock("A", 3)
    handle(APP, "inventory", first, ports)
    changed = Event(id=first.id, source=first.source, type=first.type,
                    data={**first.data, "quantity": 300})
    with pytest.raises(ConflictError, match="different payload"):
        handle(APP, "inventory", changed, ports)
    assert ports.store.get("inventory", "A")["available"] == 3


def test_same_order_under_a_new_event_id_is_a_no_op(ports) -> None:
    handle(APP, "orders", order_created("o1", [("A", 1, 5.0)]), ports)
    assert handle(APP, "orders", order_created("o1", [("A", 1, 5.0)]), ports).status == \
        "processed"
    assert len(ports.sagas.started) == 1


def test_different_order_under_a_used_order_id_is_refused(ports) -> None:
    handle(APP, "orders", order_created("o1", [("A", 1, 5.0)]), ports)
    with pytest.raises(ConflictError, match="order 'o1' already exists"):
        handle(APP, "orders", order_created("o1", [("B", 9, 5.0)]), ports)


def test_invalid_data_lists_every_problem(ports) -> None:
    bad = Event.new("orders", "com.switchyard.order.created",
                    {"order_id": "", "items": [{"item_id": "A", "quantity": 0}], "total": -1})
    with pytest.raises(ValidationError) as caught:
        handle(APP, "orders", bad, ports)
    problems = caught.value.problems
    assert "data.customer_id is required" in problems
    assert "data.order_id must not be empty" in problems
    assert "data.items[0].quantity must be > 0, got 0" in problems
    assert "data.items[0].price is required" in problems
    assert "data.total must be >= 0, got -1" in problems
    assert ports.store.get(PROCESSED, f"orders|orders|{bad.id}") is None


def test_unknown_or_unconsumed_type_is_ignored_not_failed(ports) -> None:
    unknown = Event.new("elsewhere", "com.example.unknown", {"x": 1})
    outcome = handle(APP, "orders", unknown, ports)
    assert outcome.status == "ignored" and "unknown event type" in outcome.detail
    assert handle(APP, "orders", restock("A", 1), ports).status == "ignored"


def test_workflow_triggered_before_the_order_is_retried_then_starts_the_saga(ports) -> None:
    with pytest.raises(TransientError, match="not known yet"):
        handle(APP, "orders", workflow_triggered("o9"), ports)
    handle(APP, "orders", order_created("o9", [("A", 1, 1.0)]), ports)
    handle(APP, "orders", workflow_triggered("o9"), ports)
    assert list(ports.sagas.started) == ["order-o9"]


def test_restock_adds_and_remove_never_goes_negative(ports) -> None:
    handle(APP, "inventory", restock("A", 5), ports)
    handle(APP, "inventory", restock("A", 2), ports)
    remove = Event.new("inventory", "com.switchyard.inventory.updated",
                       {"item_id": "A", "quantity": 9, "action": "remove"})
    with pytest.raises(PermanentError, match="only 7 available"):
        handle(APP, "inventory", remove, ports)
    assert ports.store.get("inventory", "A")["available"] == 7


def test_notification_is_delivered_once(ports) -> None:
    note = Event.new("notifications", NOTIFICATION_SENT,
                     {"recipient": "c1", "message": "hello", "channel": "email"})
    handle(APP, "notifications", note, ports)
    handle(APP, "notifications", note, ports)
    assert ports.notifier.deliveries == 1
    (message,) = ports.notifier.sent.values()
    assert message["message"] == "hello" and message["event_id"] == note.id


class _FailingOnce(MemoryPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def publish(self, events):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise TransientError("bus unavailable")
        super().publish(events)


class _SagaStarterFailingOnce(MemorySagaStarter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def start(self, saga_id, input, traceparent):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 1:
            raise TransientError("orchestrator throttled")
        return super().start(saga_id, input, traceparent)


def test_crash_after_commit_before_side_effects_causes_no_second_effect(ports) -> None:
    """Failure case 3: the retry performs the recorded effects, not the handler."""
    ports.sagas = _SagaStarterFailingOnce()
    event = order_created("o1", [("A", 1, 1.0)])
    with pytest.raises(TransientError):
        handle(APP, "orders", event, ports)
    assert ports.store.get("orders", "o1")["status"] == "pending"
    assert handle(APP, "orders", event, ports).status == "duplicate"
    assert list(ports.sagas.started) == ["order-o1"]
    assert ports.store.get(PROCESSED, f"orders|orders|{event.id}")["status"] == "done"


def test_emitted_event_ids_are_stable_across_a_failed_publish() -> None:
    from handlers.core.saga_runner import new_state, run_to_end

    ports = memory_ports()
    ports.publisher = _FailingOnce()
    handle(APP, "inventory", restock("A", 5), ports)
    handle(APP, "orders", order_created("o1", [("A", 1, 2.0)]), ports)
    state = run_to_end(APP, ports, new_state("order-o1", {"order_id": "o1"}, None))
    assert state["status"] == "completed"
    types = [e.type for e in ports.publisher.published]
    assert types.count(ORDER_COMPLETED) == 1
    assert len({e.id for e in ports.publisher.published}) == len(ports.publisher.published)


def test_seed_payloads_validate_as_they_are() -> None:
    APP.catalog.check_data("com.switchyard.order.created", order_data("1", [("A", 2, 10.0)]))
    APP.catalog.check_data("com.switchyard.inventory.updated",
                           {"item_id": "A", "quantity": 5, "action": "restock"})
    APP.catalog.check_data("com.switchyard.workflow.triggered",
                           {"workflow_id": "w1", "order_id": "1"})


def test_load_app_defaults_to_the_order_system_and_honours_the_env(monkeypatch) -> None:
    from handlers.core.app import load_app

    monkeypatch.delenv("SWITCHYARD_APP", raising=False)
    assert load_app() is APP
    monkeypatch.setenv("SWITCHYARD_APP", "handlers.app:APP")
    assert load_app() is APP
    with pytest.raises(ValueError, match="does not name an App"):
        load_app("handlers.catalog:CATALOG")
    with pytest.raises(ValueError, match="must look like"):
        load_app("handlers.app")
