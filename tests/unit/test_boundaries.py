"""Every documented threshold of the core, exactly at the limit and one unit past it.

A test far from a limit passes whether the code says `>` or `>=`; these pin the side of
the line each limit is on: the payment simulator declines totals *above* 1000.00 (1000.00
itself is charged), the in-memory bus takes an event of exactly its byte limit and refuses
one byte more, money converts to cents with half-up rounding.
"""

from __future__ import annotations

import dataclasses

import pytest

from adapters.memory import FixedClock, MemoryPublisher, MemoryStore, memory_ports
from handlers.app import APP
from handlers.core import jsonformat
from handlers.core.engine import handle
from handlers.core.errors import PermanentError, StepFailed
from handlers.core.events import Event
from handlers.core.saga_runner import new_state, run_to_end
from handlers.money import format_cents, to_cents
from handlers.payments import DEFAULT_DECLINE_ABOVE_CENTS, PAYMENTS, SimulatedPaymentGateway
from tests.factories import order_created, restock


def _order_of(total: float) -> dict:
    ports = memory_ports()
    handle(APP, "inventory", restock("A", 1), ports)
    handle(APP, "orders", order_created("o1", [("A", 1, total)]), ports)
    state = run_to_end(APP, ports, new_state("order-o1", {"order_id": "o1"}, None))
    charge = ports.store.get(PAYMENTS, "order-o1:payment:action")
    return {"state": state, "charge": charge, "order": ports.store.get("orders", "o1"),
            "stock": ports.store.get("inventory", "A")}


def test_the_documented_decline_limit_is_1000_00() -> None:
    assert DEFAULT_DECLINE_ABOVE_CENTS == 100_000


def test_an_order_of_exactly_1000_00_is_charged_and_completed() -> None:
    got = _order_of(1000.00)
    assert got["state"]["status"] == "completed"
    assert got["charge"]["status"] == "charged" and got["charge"]["amount_cents"] == 100_000
    assert got["order"]["status"] == "completed"


def test_an_order_of_1000_01_is_declined_and_cancelled_without_a_charge() -> None:
    got = _order_of(1000.01)
    assert got["state"]["status"] == "cancelled"
    assert got["order"]["status"] == "cancelled"
    assert got["order"]["reason"] == "payment_declined"
    assert got["order"]["reason_detail"] == "total 1000.01 is above the limit of 1000.00"
    assert got["charge"]["status"] == "declined" and got["charge"]["amount_cents"] == 100_001
    assert got["stock"] == {"item_id": "A", "available": 1}  # nothing was reserved


@pytest.mark.parametrize(("limit", "amount", "declined"), [
    (500, 499, False), (500, 500, False), (500, 501, True), (0, 0, False), (0, 1, True),
])
def test_a_configured_limit_declines_only_above_it(limit: int, amount: int,
                                                   declined: bool) -> None:
    gateway = SimulatedPaymentGateway(MemoryStore(), FixedClock(), decline_above_cents=limit)
    if declined:
        with pytest.raises(StepFailed) as failure:
            gateway.charge("k", "o1", amount)
        assert failure.value.reason == "payment_declined"
        assert format_cents(limit) in failure.value.detail
    else:
        assert gateway.charge("k", "o1", amount)["status"] == "charged"


def test_a_declined_charge_stays_declined_when_retried_under_its_key() -> None:
    store = MemoryStore()
    gateway = SimulatedPaymentGateway(store, FixedClock(), decline_above_cents=100)
    for _ in range(2):
        with pytest.raises(StepFailed):
            gateway.charge("k", "o1", 101)
    assert store.get(PAYMENTS, "k")["status"] == "declined"
    # The limit is read at charge time, the record decides a retry: raising the limit
    # later does not turn a recorded decline into a charge.
    gateway.decline_above_cents = 1000
    with pytest.raises(StepFailed):
        gateway.charge("k", "o1", 101)


def _event_of_size(size: int) -> Event:
    """An event whose JSON format is exactly `size` bytes."""
    base = Event.new("tests", "com.example.blob", {"pad": ""})
    overhead = len(jsonformat.dumps(base).encode())
    event = dataclasses.replace(base, data={"pad": "x" * (size - overhead)})
    assert len(jsonformat.dumps(event).encode()) == size
    return event


@pytest.mark.parametrize("limit", [2048, 1024 * 1024])
def test_the_memory_bus_takes_exactly_its_limit_and_refuses_one_byte_more(limit: int) -> None:
    bus = MemoryPublisher(max_event_bytes=limit)
    at_limit, over = _event_of_size(limit), _event_of_size(limit + 1)
    bus.publish([at_limit])
    assert bus.published == [at_limit]
    with pytest.raises(PermanentError) as refused:
        bus.publish([_event_of_size(limit - 1), over])
    assert f"event '{over.id}' is {limit + 1} bytes" in str(refused.value)
    assert str(refused.value).startswith(
        f"over the bus limit of {limit} bytes; nothing was published")
    assert bus.published == [at_limit]  # nothing of a refused batch is kept


@pytest.mark.parametrize(("amount", "cents"), [
    ("1000.00", 100_000), ("1000.01", 100_001), ("0.005", 1), ("0.004", 0), ("19.995", 2000),
    (10, 1000), (0.1, 10), ("-1.005", -101),
])
def test_money_converts_to_cents_half_up(amount: object, cents: int) -> None:
    assert to_cents(amount) == cents  # type: ignore[arg-type]


@pytest.mark.parametrize(("cents", "text"), [
    (0, "0.00"), (5, "0.05"), (100, "1.00"), (100_001, "1000.01"), (-5, "-0.05"),
    (-100_001, "-1000.01"),
])
def test_money_formats_cents_with_two_decimals(cents: int, text: str) -> None:
    assert format_cents(cents) == text
