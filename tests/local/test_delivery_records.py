"""The local broker's claim/ack path: backoff between attempts, and what each attempt
leaves in the timeline (the record `switchyard timeline` and `trace` show).

The backoff doubles from 1 s (times `retry_scale`) and is capped at the visibility
timeout, with one short retry (20 ms) before it for data that is not known yet (tried
once more at the end of its batch first); the last
allowed delivery still happens; every attempt is one timeline row with
the event's type, the attempt number, the outcome, the error and how long it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

import adapters.local.bootstrap as bootstrap_module
from adapters.local.runtime import Runtime, RuntimeSettings
from adapters.local.timeline import log as delivery_log
from handlers.core.errors import TransientError
from tests.factories import order_created, restock, workflow_triggered


@pytest.fixture
def runtime(tmp_path) -> Iterator[Runtime]:
    # retry_scale 1.0: delays are real seconds, read off the queue, never waited for.
    rt = Runtime(tmp_path / "records.db", settings=RuntimeSettings(
        max_deliveries=5, visibility_timeout=3.0, retry_scale=1.0))
    yield rt
    rt.close()


def _deliver_now(rt: Runtime) -> float:
    """Make the one queued message due, deliver it; seconds until it is due again."""
    with rt.db.write() as conn:
        conn.execute("UPDATE queue SET visible_at = 0")
    assert rt.work_once()
    rows = rt.db.read("SELECT visible_at FROM queue")
    return rows[0][0] - time.time() if rows else -1.0


def _delay_chosen(rt: Runtime) -> tuple[float, float]:
    """Deliver the one queued message now; (its next due time minus the time just before
    the delivery, the delivery's own duration). The broker sets `now + delay` during the
    delivery, so the first figure is the delay plus at most the second, however slow the
    machine: no timing margin to guess."""
    with rt.db.write() as conn:
        conn.execute("UPDATE queue SET visible_at = 0")
    before = time.time()
    assert rt.work_once()
    took = time.time() - before
    (due,) = rt.db.read("SELECT visible_at FROM queue")[0]
    return due - before, took


def _assert_delays(rt: Runtime, expected: list[float]) -> None:
    for want in expected:
        got, took = _delay_chosen(rt)
        assert want - 1e-3 <= got <= want + took + 1e-3, (want, got, took)


def _rows(rt: Runtime, event_id: str) -> list[dict]:
    return [r for r in rt.timeline() if r["event_id"] == event_id]


def test_retries_back_off_doubling_from_one_second_capped_at_the_visibility_timeout(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise TransientError("downstream unavailable")

    monkeypatch.setattr(bootstrap_module, "handle", unavailable)  # what deliveries run
    runtime.ingest([restock("A", 3)])
    _assert_delays(runtime, [1.0, 2.0, 3.0, 3.0])
    assert _deliver_now(runtime) == -1.0  # the 5th delivery is the last: dead-lettered
    (entry,) = runtime.dlq()
    assert entry["attempts"] == 5


def test_not_yet_known_is_retried_first_after_20_ms_then_backs_off_from_one_second(
        runtime: Runtime) -> None:
    """A trigger that overtook its order: the order usually lands within milliseconds,
    so the first retry is short; after that the usual backoff, from its first step."""
    poison = workflow_triggered("never-created")  # NotYetKnown on every delivery
    runtime.ingest([poison])
    _assert_delays(runtime, [0.02, 1.0, 2.0, 3.0])
    details = [r["detail"] for r in _rows(runtime, poison.id)]
    assert [d.rsplit("(", 1)[1] for d in details] == [
        "next attempt in 20 ms)", "next attempt in 1000 ms)", "next attempt in 2000 ms)",
        "next attempt in 3000 ms)"]
    assert _deliver_now(runtime) == -1.0
    (entry,) = runtime.dlq()
    assert entry["attempts"] == 5


def test_a_trigger_claimed_before_its_order_waits_for_the_rest_of_its_batch(
        runtime: Runtime) -> None:
    """Its order is a few messages later in the same claim: the trigger is tried once
    more after the rest of the batch, as the same attempt, instead of a retry round."""
    order = order_created("o1", [("A", 1, 1.0)])
    trigger = workflow_triggered("o1")
    lonely = [workflow_triggered("never-created"), workflow_triggered("never-created-2")]
    runtime.ingest([restock("A", 5), trigger, *lonely, order])
    assert runtime.work_once()
    assert [(r["attempt"], r["outcome"]) for r in _rows(runtime, trigger.id)] == [
        (1, "processed")]
    # Ones not known after the whole batch either (tried twice, not more): one row each,
    # retried after the short delay.
    for event in lonely:
        (row,) = _rows(runtime, event.id)
        assert (row["attempt"], row["outcome"]) == (1, "retry")
        assert row["detail"].endswith("(next attempt in 20 ms)")
    assert runtime.db.read("SELECT attempts FROM queue") == [(1,), (1,)]
    # The ones that waited ran after every other message of the batch, in their order.
    deliveries = [(r["event_id"], r["outcome"]) for r in runtime.timeline()
                  if r["consumer"] and not r["consumer"].startswith("saga:")
                  and r["outcome"] != "unrouted"]
    assert deliveries[-3:] == [(trigger.id, "processed"), (lonely[0].id, "retry"),
                               (lonely[1].id, "retry")]


def test_only_data_not_known_yet_waits_for_the_rest_of_the_batch(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other transient errors go back to the queue at once, with their backoff."""
    calls: list[str] = []

    def unavailable(app, consumer, event, ports, **labels):  # type: ignore[no-untyped-def]
        calls.append(event.id)
        raise TransientError("downstream unavailable")

    monkeypatch.setattr(bootstrap_module, "handle", unavailable)
    first, second = restock("A", 3), restock("B", 3)
    runtime.ingest([first, second])
    assert runtime.work_once()
    assert calls == [first.id, second.id]
    assert [r["outcome"] for r in _rows(runtime, first.id)] == ["retry"]


def test_a_trigger_alone_in_its_batch_is_retried_after_20_ms(runtime: Runtime) -> None:
    trigger = workflow_triggered("o1")
    runtime.ingest([trigger])
    assert runtime.work_once()
    runtime.ingest([order_created("o1", [("A", 1, 1.0)])])
    runtime.run_until_idle()
    assert [(r["attempt"], r["outcome"]) for r in _rows(runtime, trigger.id)] == [
        (1, "retry"), (2, "processed")]


def test_every_attempt_is_one_timeline_row_with_its_outcome_and_error(
        runtime: Runtime) -> None:
    poison = workflow_triggered("never-created")
    runtime.ingest([poison])
    for _ in range(5):
        _deliver_now(runtime)
    rows = _rows(runtime, poison.id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [
        (1, "retry"), (2, "retry"), (3, "retry"), (4, "retry"), (5, "dead-lettered")]
    error = "NotYetKnown: order 'never-created' is not known yet; retrying"
    assert all(r["type"] == poison.type and r["consumer"] == "orders" for r in rows)
    assert all(r["subject"] == "never-created" for r in rows)
    assert [r["detail"] for r in rows[:4]] == [
        f"{error} (next attempt in {ms} ms)" for ms in (20, 1000, 2000, 3000)]
    assert rows[4]["detail"] == f"failed 5 deliveries (maxDeliveries=5); last error: {error}"
    # Durations are milliseconds of this delivery: positive, and far below a minute.
    assert all(isinstance(r["duration_ms"], float) and 0.01 < r["duration_ms"] < 60_000
               for r in rows), [r["duration_ms"] for r in rows]
    assert _rows(runtime, poison.id) == runtime.timeline("never-created")


def test_a_permanent_error_is_one_dead_lettered_row_with_its_reason(runtime: Runtime) -> None:
    bad = order_created("o1", [("A", 1, 1.0)])
    bad = type(bad)(id=bad.id, source=bad.source, type=bad.type,
                    data={"order_id": "o1"}, subject="o1")
    runtime.ingest([bad])
    _deliver_now(runtime)
    (row,) = [r for r in _rows(runtime, bad.id) if r["consumer"] == "orders"]
    assert (row["attempt"], row["outcome"], row["type"], row["subject"]) == (
        1, "dead-lettered", bad.type, "o1")
    assert row["detail"].startswith("permanent error: ")
    assert "data.customer_id is required" in row["detail"]
    assert 0.01 < row["duration_ms"] < 60_000


def test_the_last_allowed_delivery_of_an_unfinished_message_still_happens(
        runtime: Runtime) -> None:
    """Receives that never finished count (a worker died): at maxDeliveries - 1 of them
    the message is delivered once more, not dead-lettered."""
    event = restock("A", 3)
    runtime.ingest([event])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 4")
    _deliver_now(runtime)
    assert runtime.available("A") == 3 and runtime.dlq() == []
    (row,) = _rows(runtime, event.id)
    assert (row["attempt"], row["outcome"], row["detail"]) == (5, "processed", "emitted 0")


def test_a_message_past_its_deliveries_is_dead_lettered_without_running(
        runtime: Runtime) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 5, last_error = 'boom'")
    _deliver_now(runtime)
    assert runtime.available("A") == 0
    (entry,) = runtime.dlq()
    assert entry["attempts"] == 5
    assert entry["reason"] == "exceeded maxDeliveries=5 (last error: boom)"
    (row,) = _rows(runtime, event.id)
    assert (row["attempt"], row["outcome"], row["duration_ms"]) == (5, "dead-lettered", 0.0)


def test_a_dead_letter_is_logged_as_an_error_with_what_was_lost_and_why(
        runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    bad = order_created("o1", [("A", 1, 1.0)])
    bad = type(bad)(id=bad.id, source=bad.source, type=bad.type, data={"order_id": "o1"})
    runtime.ingest([bad])
    with caplog.at_level(logging.ERROR, logger=delivery_log.name):
        _deliver_now(runtime)
    # One line per delivery outcome (timeline.log_delivery), the outcome as a field too.
    (record,) = [r for r in caplog.records if getattr(r, "outcome", None) == "dead-lettered"
                 and r.consumer == "orders"]  # Order Created also goes to order-analytics
    assert record.getMessage() == "delivery dead-lettered"
    assert record.levelno == logging.ERROR
    assert (record.consumer, record.event_id, record.event_type) == ("orders", bad.id, bad.type)
    assert "data.customer_id is required" in record.reason


def test_a_processed_and_a_duplicate_delivery_each_leave_one_row(runtime: Runtime) -> None:
    event = restock("A", 3)
    runtime.ingest([event])
    _deliver_now(runtime)
    runtime.ingest([event])  # the same event again: at-least-once delivery
    _deliver_now(runtime)
    rows = _rows(runtime, event.id)
    assert [(r["attempt"], r["outcome"], r["detail"]) for r in rows] == [
        (1, "processed", "emitted 0"), (1, "duplicate", "no effect")]
    assert all(r["type"] == event.type and r["consumer"] == "inventory"
               and r["subject"] == "A" for r in rows)
    assert all(isinstance(r["duration_ms"], float) and 0.01 < r["duration_ms"] < 60_000
               for r in rows), [r["duration_ms"] for r in rows]
    assert runtime.available("A") == 3


def test_a_claimed_message_is_invisible_to_other_workers_for_the_visibility_timeout(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a worker runs the handler, the message is hidden for visibility_timeout (3 s
    here), so no second worker takes it; only a worker that dies leaves it to reappear."""
    seen: list[float] = []
    real_handle = bootstrap_module.handle  # what the workers' deliveries run
    broker = runtime._parts.broker

    def never(consumer, event):  # type: ignore[no-untyped-def]
        pytest.fail(f"{event.id} claimed by a second worker while the first runs it")

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(runtime.db.read("SELECT visible_at FROM queue")[0][0] - time.time())
        assert broker.deliver_one(never) is False  # another worker finds nothing to claim
        return real_handle(*args, **kwargs)

    monkeypatch.setattr(bootstrap_module, "handle", spy)
    runtime.ingest([restock("A", 1)])
    assert runtime.work_once()
    (hidden,) = seen
    assert 2.5 < hidden <= 3.0
    assert runtime.available("A") == 1


def test_a_message_whose_worker_died_each_time_says_so_when_dead_lettered(
        runtime: Runtime) -> None:
    runtime.ingest([restock("A", 3)])
    with runtime.db.write() as conn:
        conn.execute("UPDATE queue SET attempts = 5")  # no error recorded: never finished
    _deliver_now(runtime)
    (entry,) = runtime.dlq()
    assert entry["reason"] == ("exceeded maxDeliveries=5 "
                               "(last error: worker stopped mid-delivery)")
