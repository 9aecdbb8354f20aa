"""The tracing port and its OpenTelemetry adapter: which `OTEL_*` settings turn spans on,
what the engine's spans carry, and that tracing off changes nothing (README "Tracing")."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from adapters.memory import MemoryPublisher, memory_ports
from adapters.telemetry import SettingsError, exporters, install_from_env
from cli.main import main
from handlers.app import APP
from handlers.core import tracing
from handlers.core.engine import handle, run_step
from handlers.core.errors import PermanentError, TransientError
from handlers.core.events import Event, ensure_traceparent
from handlers.core.observability import trace_id_of
from handlers.core.saga_runner import new_state, tick
from tests.factories import order_created, restock
from tests.spans import attr, is_child, named, recording, the

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("env, expected", [
    ({}, []),
    ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": " OTLP , console "}, ["otlp", "console"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, []),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
])
def test_which_settings_turn_tracing_on(env: dict[str, str], expected: list[str]) -> None:
    assert exporters(env) == expected


@pytest.mark.parametrize("env, says", [
    ({"OTEL_TRACES_EXPORTER": "zipkin-v9"}, "no span exporter named 'zipkin-v9'"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTLP protocol 'grpc' is not supported"),
])
def test_a_setting_that_cannot_be_honoured_is_one_clear_error(env: dict[str, str],
                                                              says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        install_from_env(env)
    assert not tracing.enabled()


def test_the_cli_refuses_a_bad_exporter_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "nonesuch")
    assert main(["orders", "--db", "/nonexistent/x.db"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no span exporter named 'nonesuch'" in err


def test_tracing_off_emitted_events_carry_the_incoming_traceparent() -> None:
    ports = memory_ports()
    event = order_created("off", [("A", 1, 1.0)]).with_extensions(traceparent=INCOMING)
    handle(APP, "orders", event, ports)
    assert ports.sagas.started["order-off"]["traceparent"] == INCOMING
    assert tracing.current_traceparent() is None


def test_events_accepted_together_each_start_their_own_trace_unless_they_carry_one() -> None:
    # One request bringing several orders: each order is its own trace; an event that
    # arrives with a context continues that trace, whatever came before it in the batch.
    first, second = (order_created(i, [("A", 1, 1.0)]) for i in ("b1", "b2"))
    carried = order_created("b3", [("A", 1, 1.0)]).with_extensions(traceparent=INCOMING)
    with recording() as exporter, tracing.ingress([first, second, carried], "http") as traced:
        pass
    sends = {attr(s, tracing.EVENT_ID): s
             for s in exporter.get_finished_spans()}
    one, two, three = (sends[e.id] for e in (first, second, carried))
    assert one.parent is None and two.parent is None
    assert one.context.trace_id != two.context.trace_id
    assert f"{three.context.trace_id:032x}" == trace_id_of(INCOMING)
    assert f"{three.parent.span_id:016x}" == INCOMING.split("-")[2]
    assert [trace_id_of(e.traceparent) for e in traced] == [
        f"{s.context.trace_id:032x}" for s in (one, two, three)]


def test_a_delivery_span_continues_the_event_trace_and_parents_what_it_emits() -> None:
    ports = memory_ports()
    event = order_created("on", [("A", 1, 1.0)]).with_extensions(traceparent=INCOMING)
    with recording("test_bus") as exporter:
        handle(APP, "orders", event, ports, attempt=2, max_attempts=5)
    delivery = the(named(exporter.get_finished_spans(), "process orders"), "delivery")
    assert delivery.context is not None and delivery.parent is not None
    assert f"{delivery.context.trace_id:032x}" == trace_id_of(INCOMING)
    assert f"{delivery.parent.span_id:016x}" == INCOMING.split("-")[2]
    assert delivery.kind.name == "CONSUMER"
    assert {k: attr(delivery, k) for k in (
        tracing.SYSTEM, tracing.OPERATION_TYPE, tracing.DESTINATION, tracing.EVENT_ID,
        tracing.EVENT_TYPE, tracing.ATTEMPT, tracing.OUTCOME, tracing.STATUS)} == {
        tracing.SYSTEM: "test_bus", tracing.OPERATION_TYPE: "process",
        tracing.DESTINATION: "orders", tracing.EVENT_ID: event.id,
        tracing.EVENT_TYPE: event.type, tracing.ATTEMPT: 2, tracing.OUTCOME: "ok",
        tracing.STATUS: "processed"}
    started = ports.sagas.started["order-on"]["traceparent"]
    assert started.split("-")[2] == f"{delivery.context.span_id:016x}"


@pytest.mark.parametrize("attempt, outcome", [(1, "retry"), (4, "retry"),
                                              (5, "dead-letter"), (None, "retry")])
def test_a_failed_delivery_is_retried_until_its_last_attempt(
        attempt: int | None, outcome: str) -> None:
    ports = memory_ports()

    class Down:
        def get(self, table: str, key: str) -> None:
            raise TimeoutError("store unavailable")

    ports.store = Down()  # type: ignore[assignment]
    with recording() as exporter, pytest.raises(TimeoutError):
        handle(APP, "inventory", ensure_traceparent(restock("A", 1)), ports,
               attempt=attempt, max_attempts=5)
    delivery = the(exporter.get_finished_spans(), "delivery")
    assert attr(delivery, tracing.OUTCOME) == outcome
    assert delivery.status.status_code.name == "ERROR"
    assert delivery.events and delivery.events[0].name == "exception"


def test_a_permanent_failure_is_dead_lettered_at_once() -> None:
    bad = dataclasses.replace(restock("A", 1).with_extensions(traceparent=INCOMING),
                              data={"item_id": 1})  # the schema wants a string, and more
    with recording() as exporter, pytest.raises(PermanentError):
        handle(APP, "inventory", bad, memory_ports(), attempt=1, max_attempts=5)
    assert attr(the(exporter.get_finished_spans(), "delivery"), tracing.OUTCOME) == \
        "dead-letter"


def test_a_step_span_is_a_child_of_the_saga_start_and_parents_its_events() -> None:
    ports = memory_ports()
    handle(APP, "orders", order_created("st", [("A", 1, 1.0)]), ports)
    state = new_state("order-st", ports.sagas.started["order-st"]["input"], INCOMING)
    state, _ = tick(APP, ports, state)  # create_order, untraced: payment needs its result
    with recording() as exporter:
        outcome = run_step(APP, ports, "order-st", "payment", "action", state)
        spans = exporter.get_finished_spans()
    assert outcome.ok
    step = the(named(spans, "saga payment"), "step")
    assert (attr(step, tracing.PHASE), attr(step, tracing.STEP_ATTEMPT),
            attr(step, tracing.STEP_OUTCOME), attr(step, tracing.REPLAYED)) == \
        ("action", 1, "ok", False)
    assert step.parent is not None and \
        f"{step.parent.span_id:016x}" == INCOMING.split("-")[2]
    for sent in (s for s in spans if s.name.startswith("send ")):
        assert is_child(sent, step) and sent.kind.name == "PRODUCER"
    assert ports.publisher.published, "the payment step publishes"
    assert all(e.traceparent and e.traceparent.split("-")[2] == f"{step.context.span_id:016x}"
               for e in ports.publisher.published)


def _saga_at_payment(order_id: str, price: float) -> tuple[object, dict]:
    ports = memory_ports()
    handle(APP, "orders", order_created(order_id, [("A", 1, price)]), ports)
    saga_id = f"order-{order_id}"
    state = new_state(saga_id, ports.sagas.started[saga_id]["input"], INCOMING)
    state, _ = tick(APP, ports, state)  # create_order, untraced: payment needs its result
    return ports, state


def test_what_a_step_publishes_is_a_send_to_the_bus_and_its_record_is_the_sagas() -> None:
    ports, state = _saga_at_payment("pub", 1.0)
    with recording() as exporter:
        run_step(APP, ports, "order-pub", "payment", "action", state)
        spans = exporter.get_finished_spans()
    sent = [s for s in spans if s.name.startswith("send ")]
    assert sent, "the payment step publishes, and each publish is a span"
    step = the(named(spans, "saga payment"), "the payment step")
    assert all(is_child(s, step) for s in sent), "each publish is a child of its step"
    assert {(attr(s, tracing.OPERATION_TYPE), attr(s, tracing.OPERATION_NAME),
             attr(s, tracing.DESTINATION)) for s in sent} == {("send", "publish", "bus")}
    # The traced run kept the step's record under its saga: run again untraced, it replays.
    assert run_step(APP, ports, "order-pub", "payment", "action", state).replayed


def test_a_publish_redone_by_a_later_run_is_a_child_of_the_span_that_emitted_it() -> None:
    """Effects a failed publish left undone are performed by the next run of the step,
    under its own span; their sends still hang under the span that emitted the events
    (their traceparent), not under the run that happened to publish them."""
    class DownBus(MemoryPublisher):
        def publish(self, events: Sequence[Event]) -> None:
            raise TransientError("bus down")

    ports, state = _saga_at_payment("redo", 1.0)
    ports.publisher = DownBus()  # type: ignore[attr-defined]
    with recording() as exporter:
        with pytest.raises(TransientError):
            run_step(APP, ports, "order-redo", "payment", "action", state)
        ports.publisher = MemoryPublisher()  # type: ignore[attr-defined]
        assert run_step(APP, ports, "order-redo", "payment", "action", state).replayed
        spans = exporter.get_finished_spans()
    emitter, replay = named(spans, "saga payment")
    redone = [s for s in spans if s.name.startswith("send ") and s.start_time is not None
              and replay.start_time is not None and s.start_time >= replay.start_time]
    assert redone, "the replay publishes what the first run could not"
    assert all(is_child(s, emitter) and not is_child(s, replay) for s in redone)


def test_a_step_span_says_failed_for_a_business_failure_and_error_for_an_exception() -> None:
    ports, state = _saga_at_payment("dec", 5000.0)  # above the 1000.00 decline threshold
    with recording() as exporter:
        assert not run_step(APP, ports, "order-dec", "payment", "action", state).ok
        step = the(named(exporter.get_finished_spans(), "saga payment"), "step")
    assert attr(step, tracing.STEP_OUTCOME) == "failed"
    missing = new_state("order-none", {"order_id": "none"}, INCOMING)
    with recording() as exporter, pytest.raises(TransientError):
        run_step(APP, memory_ports(), "order-none", "create_order", "action", missing)
    step = the(named(exporter.get_finished_spans(), "saga create_order"), "step")
    assert attr(step, tracing.STEP_OUTCOME) == "error"


def test_a_compensation_is_its_own_span_and_a_delivery_is_a_process() -> None:
    ports, state = _saga_at_payment("cmp", 1.0)
    state, _ = tick(APP, ports, state)  # payment
    with recording() as exporter:
        run_step(APP, ports, "order-cmp", "payment", "compensate", state)
        handle(APP, "inventory", restock("Z", 1).with_extensions(traceparent=INCOMING),
               ports, attempt=1, max_attempts=5)
        spans = exporter.get_finished_spans()
    undo = the(named(spans, "compensate payment"), "compensation")
    assert attr(undo, tracing.PHASE) == "compensate"
    assert not named(spans, "saga payment")
    delivery = the(named(spans, "process inventory"), "delivery")
    assert (attr(delivery, tracing.OPERATION_TYPE), attr(delivery, tracing.OPERATION_NAME)) == (
        "process", "process")
