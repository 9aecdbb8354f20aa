"""The local runtime's log lines and claims, as an operator sees them.

The product promises one log line per delivery outcome (consumer, event type, event id,
attempt, outcome, reason or detail, duration) and per saga step (saga id, step, phase,
outcome, attempt, detail, duration), one "saga finished" line per saga and an ALARM line
for a saga that needs attention. A failure that repeats the reason of a dead letter still
open for the same consumer and event adds no second dead letter. A claimed saga is leased:
no other worker takes it until the lease expires, and one claim runs the saga's steps back
to back while the next one is due at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.local import sagas as sagas_module
from adapters.local.broker import ALREADY_DEAD_LETTERED
from adapters.local.runtime import Runtime, RuntimeSettings
from adapters.local.timeline import log as runtime_log
from handlers.core import saga_runner
from handlers.core.observability import trace_id_of
from tests.factories import order_created, restock, workflow_triggered

STEPS = ["create_order", "payment", "reserve_inventory", "ship", "complete_order"]


@pytest.fixture
def runtime(tmp_path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path / "logs.db", settings=RuntimeSettings(
        max_deliveries=3, visibility_timeout=3.0, retry_scale=0.001, saga_lease=5.0))
    yield rt
    rt.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=runtime_log.name)
    return caplog


def _deliver_now(rt: Runtime) -> None:
    """Make every queued message due, and deliver the first one (a worker's delivery,
    without its turn at the sagas)."""
    with rt.db.write() as conn:
        conn.execute("UPDATE queue SET visible_at = 0")
    assert rt._parts.workers._deliver()


def _drain(rt: Runtime) -> None:
    """Deliver every queued message once (an order is routed to more than one consumer)."""
    for _ in range(rt.db.read("SELECT COUNT(*) FROM queue")[0][0]):
        _deliver_now(rt)


def _deliveries(caplog: pytest.LogCaptureFixture, event_id: str | None = None,
                consumer: str | None = None) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("delivery ")
            and (event_id is None or r.event_id == event_id)
            and (consumer is None or r.consumer == consumer)]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k, "<absent>") for k in
            ("consumer", "event_type", "event_id", "attempt", "outcome", "reason", "detail")}


def _duration_ok(record: logging.LogRecord) -> bool:
    value = record.duration_ms
    return isinstance(value, float) and 0.0 < value < 60_000 and value == round(value, 2)


# deliveries -------------------------------------------------------------------------
def test_an_ok_delivery_is_one_info_line_with_its_fields(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    assert runtime.work_once()
    (record,) = _deliveries(logs, event.id)
    assert record.getMessage() == "delivery ok"
    assert record.levelno == logging.INFO
    assert _fields(record) == {
        "consumer": "inventory", "event_type": event.type, "event_id": event.id,
        "attempt": 1, "outcome": "ok", "reason": "<absent>", "detail": "<absent>"}
    assert _duration_ok(record), record.duration_ms
    stored = runtime.db.read("SELECT body FROM events WHERE id = ?", (event.id,))[0][0]
    assert record.trace_id is not None and record.trace_id in stored
    assert record.trace_id == runtime.timeline()[-1]["trace_id"]


def test_a_duplicate_delivery_is_logged_as_a_duplicate(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    runtime.run_until_idle()
    runtime.ingest([event])
    runtime.run_until_idle()
    assert [(r.outcome, r.attempt, r.levelno) for r in _deliveries(logs, event.id)] == [
        ("ok", 1, logging.INFO), ("duplicate", 1, logging.INFO)]
    assert [r.getMessage() for r in _deliveries(logs, event.id)] == [
        "delivery ok", "delivery duplicate"]


def test_an_ignored_delivery_is_logged_with_its_detail(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    with runtime.db.write() as conn:  # a message for a consumer that does not take it
        conn.execute("UPDATE queue SET consumer = 'orders'")
    assert runtime.work_once()
    (record,) = _deliveries(logs, event.id)
    assert (record.getMessage(), record.outcome, record.consumer) == (
        "delivery ignored", "ignored", "orders")
    assert record.detail == f"{event.type}: not consumed here"
    assert runtime.timeline()[-1]["detail"] == record.detail


def test_each_retry_is_one_line_with_its_attempt_and_reason(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    poison = workflow_triggered("never-created")  # a TransientError on every delivery
    runtime.ingest([poison])
    for _ in range(3):
        _deliver_now(runtime)
    records = _deliveries(logs, poison.id)
    error = "NotYetKnown: order 'never-created' is not known yet; retrying"
    assert [(r.getMessage(), r.levelno, r.attempt, r.outcome) for r in records] == [
        ("delivery retry", logging.INFO, 1, "retry"),
        ("delivery retry", logging.INFO, 2, "retry"),
        ("delivery dead-lettered", logging.ERROR, 3, "dead-lettered")]
    assert [r.reason for r in records[:2]] == [error, error]
    assert records[2].reason == f"failed 3 deliveries (maxDeliveries=3); last error: {error}"
    assert all((r.consumer, r.event_type, r.event_id) == ("orders", poison.type, poison.id)
               for r in records)
    assert all(_duration_ok(r) for r in records), [r.duration_ms for r in records]
    assert all(not hasattr(r, "detail") for r in records)


def test_a_message_past_its_deliveries_is_logged_dead_lettered_without_a_duration(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 3, last_error = 'boom'")
    assert runtime.work_once()
    (record,) = _deliveries(logs, event.id)
    assert (record.levelno, record.outcome, record.attempt, record.duration_ms) == (
        logging.ERROR, "dead-lettered", 3, 0.0)
    assert record.reason == "exceeded maxDeliveries=3 (last error: boom)"


# dead letters already open ----------------------------------------------------------
def _poison() -> Any:
    bad = order_created("o1", [("A", 1, 1.0)])
    return type(bad)(id=bad.id, source=bad.source, type=bad.type, data={"order_id": "o1"})


def test_a_resent_event_failing_for_the_same_reason_adds_no_second_dead_letter(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    bad = _poison()
    runtime.ingest([bad])
    _drain(runtime)
    (entry,) = runtime.dlq("orders")
    runtime.ingest([bad])  # the same poison event again
    _drain(runtime)
    assert [e["dlq_id"] for e in runtime.dlq("orders")] == [entry["dlq_id"]]
    assert runtime.db.read("SELECT COUNT(*) FROM queue")[0][0] == 0
    rows = [r for r in runtime.timeline()
            if r["event_id"] == bad.id and r["consumer"] == "orders"]
    assert [r["outcome"] for r in rows] == ["dead-lettered", ALREADY_DEAD_LETTERED]
    assert rows[1]["detail"] == f"dead letter #{entry['dlq_id']}: {entry['reason']}"
    assert rows[1]["consumer"] == "orders" and rows[1]["attempt"] == 1
    first, second = _deliveries(logs, bad.id, "orders")
    assert (first.levelno, first.outcome) == (logging.ERROR, "dead-lettered")
    assert (second.levelno, second.outcome, second.getMessage()) == (
        logging.WARNING, ALREADY_DEAD_LETTERED, f"delivery {ALREADY_DEAD_LETTERED}")
    assert second.reason == first.reason == entry["reason"]
    assert (second.consumer, second.event_id, second.attempt) == ("orders", bad.id, 1)


def test_a_resent_event_failing_for_another_reason_adds_a_dead_letter(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    bad = _poison()
    runtime.ingest([bad])
    _drain(runtime)
    runtime.ingest([bad])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 3, last_error = 'boom'")
    _drain(runtime)
    reasons = [e["reason"] for e in runtime.dlq("orders")]
    assert len(reasons) == 2 and reasons[1] == "exceeded maxDeliveries=3 (last error: boom)"
    assert [r.outcome for r in _deliveries(logs, bad.id, "orders")] == ["dead-lettered"] * 2


def test_a_redriven_dead_letter_failing_again_is_dead_lettered_anew(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    bad = _poison()
    runtime.ingest([bad])
    _drain(runtime)
    assert len(runtime.redrive("orders")) == 1
    _drain(runtime)
    (entry,) = runtime.dlq("orders")  # the open one; the redriven one is kept on record
    assert len(runtime.dlq("orders", include_redriven=True)) == 2
    assert [r.outcome for r in _deliveries(logs, bad.id, "orders")] == ["dead-lettered"] * 2
    assert entry["attempts"] == 1


def test_the_same_failure_for_another_consumer_is_its_own_dead_letter(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 3, last_error = 'boom'")
    _drain(runtime)
    runtime.ingest([event])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 3, last_error = 'boom', consumer = 'orders'")
    _drain(runtime)
    assert sorted(e["consumer"] for e in runtime.dlq()) == ["inventory", "orders"]
    assert [r.outcome for r in _deliveries(logs, event.id)] == ["dead-lettered"] * 2


# sagas --------------------------------------------------------------------------------
def _saga_lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


def _saga_row(rt: Runtime) -> dict[str, Any]:
    (row,) = rt.db.read("SELECT saga_id, status, next_run_at, lease_until FROM sagas")
    return dict(zip(("saga_id", "status", "next_run_at", "lease_until"), row, strict=True))


def _start_order(rt: Runtime, order_id: str = "o1", quantity: int = 1,
                 stock: int = 5) -> None:
    """Stock, the order, and its delivery (which starts the saga); no saga step yet."""
    rt.ingest([restock("A", stock)])
    _deliver_now(rt)
    rt.ingest([order_created(order_id, [("A", quantity, 1.0)])])
    while rt.db.read("SELECT COUNT(*) FROM queue")[0][0]:
        _deliver_now(rt)
    assert _saga_row(rt)["status"] == "running"


def _advance(rt: Runtime) -> bool:
    return rt._parts.sagas.advance_one()


def test_every_saga_step_is_one_info_line_with_its_fields(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    _start_order(runtime)
    saga_id = _saga_row(runtime)["saga_id"]
    logs.clear()
    assert _advance(runtime)
    steps = _saga_lines(logs, "saga step")
    assert [(r.step, r.phase, r.outcome, r.attempt, r.detail) for r in steps] == [
        (name, "action", "ok", 1, "") for name in STEPS]
    assert all(r.saga_id == saga_id and r.levelno == logging.INFO for r in steps)
    # The line's duration is the timeline row's, in ms to two decimals.
    rows = [r for r in runtime.timeline() if r["type"].endswith(".action")]
    assert [r["type"] for r in rows] == [f"saga.{name}.action" for name in STEPS]
    assert [r.duration_ms for r in steps] == [round(r["duration_ms"], 2) for r in rows]
    assert all(0.0 < r.duration_ms < 60_000 for r in steps)
    (finished,) = _saga_lines(logs, "saga finished")
    assert (finished.saga_id, finished.outcome, finished.reason) == (saga_id, "completed", None)
    assert finished.levelno == logging.INFO
    assert _saga_lines(logs, "ALARM saga needs attention") == []


def test_a_cancelled_saga_logs_its_failed_step_and_the_reason_it_finished(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(tmp_path / "c.db", settings=RuntimeSettings(retry_scale=0.001))
    caplog.set_level(logging.INFO, logger=runtime_log.name)
    try:
        _start_order(rt, quantity=2, stock=1)  # reserve_inventory: out of stock
        saga_id = _saga_row(rt)["saga_id"]
        rt.run_until_idle()
        steps = [(r.step, r.phase, r.outcome, r.attempt) for r in _saga_lines(caplog,
                                                                              "saga step")]
        assert steps == [
            ("create_order", "action", "ok", 1), ("payment", "action", "ok", 1),
            ("reserve_inventory", "action", "failed", 1),
            ("payment", "compensate", "ok", 1), ("cancel_order", "action", "ok", 1)]
        failed = _saga_lines(caplog, "saga step")[2]
        assert failed.detail == "out_of_stock"
        (finished,) = _saga_lines(caplog, "saga finished")
        assert (finished.saga_id, finished.outcome, finished.reason) == (
            saga_id, "cancelled", "out_of_stock")
        assert _saga_lines(caplog, "ALARM saga needs attention") == []
    finally:
        rt.close()


def test_a_failed_saga_raises_one_alarm_with_its_reason(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(tmp_path / "f.db", settings=RuntimeSettings(retry_scale=0.0001))
    caplog.set_level(logging.INFO, logger=runtime_log.name)
    try:
        def refund(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("refunds are down")

        rt.ports.payments.refund = refund  # type: ignore[method-assign]
        _start_order(rt, quantity=2, stock=1)
        saga_id = _saga_row(rt)["saga_id"]
        rt.run_until_idle()
        assert _saga_row(rt)["status"] == "failed"
        (alarm,) = _saga_lines(caplog, "ALARM saga needs attention")
        assert alarm.levelno == logging.ERROR
        assert alarm.saga_id == saga_id
        assert alarm.reason.startswith("out_of_stock; compensation payment failed: ")
        assert "refunds are down" in alarm.reason
        (finished,) = _saga_lines(caplog, "saga finished")
        assert (finished.outcome, finished.reason) == ("failed", alarm.reason)
        refunds = [r for r in _saga_lines(caplog, "saga step") if r.phase == "compensate"]
        assert [(r.outcome, r.attempt) for r in refunds] == [("error", n) for n in range(1, 6)]
        assert all(r.detail == "refunds are down" for r in refunds)
    finally:
        rt.close()


# saga claims ------------------------------------------------------------------------
def test_one_claim_runs_every_step_that_is_due_at_once(runtime: Runtime) -> None:
    _start_order(runtime)
    assert _advance(runtime)
    assert _saga_row(runtime)["status"] == "completed"
    assert runtime.order("o1")["status"] == "completed"
    assert _advance(runtime) is False


def test_a_claimed_saga_is_leased_and_due_at_once_while_its_steps_run(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While one worker runs a saga's steps, the saga is leased to it for saga_lease (5 s
    here) from the claim and from each step; no other worker can claim it meanwhile, and
    its next step is due at once (no retry delay, whatever retry_scale is)."""
    runtime = Runtime(tmp_path / "lease.db", settings=RuntimeSettings(
        retry_scale=1.0, saga_lease=5.0))
    try:
        _start_order(runtime)
        real_tick, seen = saga_runner.tick, []

        def spy(*args: Any, **kwargs: Any) -> Any:
            row = _saga_row(runtime)
            seen.append((row["lease_until"] - time.time(), row["next_run_at"] - time.time()))
            assert _advance(runtime) is False  # another worker finds nothing to claim
            return real_tick(*args, **kwargs)

        monkeypatch.setattr(sagas_module.saga_runner, "tick", spy)
        assert _advance(runtime)
        assert len(seen) == len(STEPS)
        assert all(3.0 < lease <= 5.0 for lease, _ in seen), seen
        assert all(due <= 0.0 for _, due in seen), seen
        row = _saga_row(runtime)
        assert row["status"] == "completed" and row["lease_until"] <= time.time()
    finally:
        runtime.close()


def test_a_saga_whose_worker_died_is_claimable_again_only_after_its_lease(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(tmp_path / "l.db", settings=RuntimeSettings(retry_scale=0.001,
                                                             saga_lease=1.0))
    try:
        _start_order(rt)
        real_tick, calls = saga_runner.tick, []

        def dies_once(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt("the worker dies mid-step")
            return real_tick(*args, **kwargs)

        monkeypatch.setattr(sagas_module.saga_runner, "tick", dies_once)
        claimed = time.time()
        with pytest.raises(KeyboardInterrupt):
            _advance(rt)
        assert rt._parts.sagas.next_due() == pytest.approx(claimed + 1.0, abs=0.5)
        assert _advance(rt) is False  # leased to the dead worker
        assert _saga_row(rt)["status"] == "running"
        time.sleep(max(0.0, rt._parts.sagas.next_due() + 0.02 - time.time()))
        assert _advance(rt)  # the lease expired: another worker takes it over
        assert _saga_row(rt)["status"] == "completed"
        assert rt.order("o1")["status"] == "completed"
    finally:
        rt.close()


def test_a_step_to_retry_ends_the_claim_and_the_saga_is_due_after_its_delay(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(tmp_path / "r.db", settings=RuntimeSettings(retry_scale=0.5,
                                                             saga_lease=5.0))
    try:
        _start_order(rt)
        gateway = rt.ports.payments
        real_charge, calls = gateway.charge, []

        def flaky(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("gateway timeout")
            return real_charge(*args, **kwargs)

        gateway.charge = flaky  # type: ignore[method-assign]
        assert _advance(rt)
        row = _saga_row(rt)
        # payment's Retry: 1 s before the second attempt, times retry_scale 0.5
        assert row["status"] == "running" and len(calls) == 1
        assert 0.1 < row["next_run_at"] - time.time() <= 0.5
        assert row["lease_until"] <= time.time()  # released: due to anyone after the delay
        assert _advance(rt) is False
        time.sleep(max(0.0, row["next_run_at"] - time.time() + 0.02))
        assert _advance(rt)
        assert _saga_row(rt)["status"] == "completed" and len(calls) == 2
    finally:
        rt.close()


def test_a_stopping_worker_runs_one_step_and_leaves_the_saga_to_the_others(
        runtime: Runtime) -> None:
    _start_order(runtime)
    runtime._parts.workers.stopping.set()
    try:
        assert _advance(runtime)
        row = _saga_row(runtime)
        assert row["status"] == "running"
        assert row["lease_until"] <= time.time() and row["next_run_at"] <= time.time()
        steps = [r["type"] for r in runtime.timeline() if r["type"].endswith(".action")]
        assert steps == ["saga.create_order.action"]
    finally:
        runtime._parts.workers.stopping.clear()
    assert _advance(runtime)
    assert _saga_row(runtime)["status"] == "completed"


def test_trace_ids_of_delivery_lines_follow_the_event(
        runtime: Runtime, logs: pytest.LogCaptureFixture) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    runtime.run_until_idle()
    (record,) = _deliveries(logs, event.id)
    stored = runtime.db.read("SELECT body FROM events WHERE id = ?", (event.id,))[0][0]
    assert record.trace_id == trace_id_of(json.loads(stored)["traceparent"])
