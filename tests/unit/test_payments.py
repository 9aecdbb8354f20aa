"""The payment simulator as a provider with idempotency keys: what it records and returns.

A charge or refund repeated under its key returns the first result, also when two calls
race (the loser returns the winner's record, not its own); a declined charge is never
found as a charge to refund; a store that loses the record is a transient error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.memory import MemoryStore
from handlers.core.errors import StepFailed, TransientError
from handlers.payments import PAYMENTS, SimulatedPaymentGateway
from tests.contract.races import RendezvousStore, race


class TickingClock:
    """Each reading one second later: records made at different calls differ."""

    def __init__(self) -> None:
        self.current = datetime(2026, 3, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


def _gateway(store: Any = None, limit: int = 100_000) -> tuple[SimulatedPaymentGateway, Any]:
    store = store if store is not None else MemoryStore()
    return SimulatedPaymentGateway(store, TickingClock(), limit), store


def test_a_charge_records_what_was_charged_under_its_key() -> None:
    gateway, store = _gateway()
    charge = gateway.charge("saga-1:payment:action", "o1", 2500)
    digest = hashlib.sha256(b"saga-1:payment:action").hexdigest()[:16]
    assert charge == {"kind": "charge", "order_id": "o1", "amount_cents": 2500,
                      "charge_id": f"ch_{digest}", "status": "charged",
                      "at": "2026-03-01T00:00:01+00:00"}
    assert store.get(PAYMENTS, "saga-1:payment:action") == charge


def test_charge_and_refund_ids_are_the_providers_shape_and_unique_per_key() -> None:
    gateway, _ = _gateway()
    charges = [gateway.charge(f"k{n}", "o1", 100)["charge_id"] for n in range(3)]
    refunds = [gateway.refund(f"r{n}", charges[n])["refund_id"] for n in range(3)]
    assert all(re.fullmatch(r"ch_[0-9a-f]{16}", c) for c in charges)
    assert all(re.fullmatch(r"re_[0-9a-f]{16}", r) for r in refunds)
    assert len(set(charges)) == 3 and len(set(refunds)) == 3


def test_a_repeated_charge_returns_the_first_result_and_charges_once() -> None:
    gateway, store = _gateway()
    first = gateway.charge("k", "o1", 2500)
    assert gateway.charge("k", "o1", 2500) == first
    assert store.items(PAYMENTS) == {"k": first}


def test_two_charges_racing_under_one_key_both_return_the_one_recorded() -> None:
    store = MemoryStore()
    gateway, _ = _gateway(RendezvousStore(store, PAYMENTS, 2))
    results = race(lambda: gateway.charge("k", "o1", 2500),
                   lambda: gateway.charge("k", "o1", 2500), redeliveries=1)
    recorded = store.get(PAYMENTS, "k")
    assert results == [recorded, recorded]


def test_a_declined_charge_is_recorded_and_never_found_as_a_charge() -> None:
    gateway, store = _gateway(limit=100)
    with pytest.raises(StepFailed) as declined:
        gateway.charge("k", "o1", 101)
    assert declined.value.reason == "payment_declined"
    assert declined.value.detail == "total 1.01 is above the limit of 1.00"
    assert store.get(PAYMENTS, "k")["status"] == "declined"
    assert gateway.find_charge("k") is None
    assert gateway.find_charge("never-used") is None


def test_find_charge_returns_the_successful_charge() -> None:
    gateway, _ = _gateway()
    charge = gateway.charge("k", "o1", 100)
    assert gateway.find_charge("k") == charge


def test_a_refund_is_recorded_once_and_repeated_returns_the_first() -> None:
    gateway, store = _gateway()
    first = gateway.refund("rk", "ch_1")
    digest = hashlib.sha256(b"rk").hexdigest()[:16]
    assert first == {"kind": "refund", "charge_id": "ch_1", "status": "refunded",
                     "refund_id": f"re_{digest}", "at": "2026-03-01T00:00:01+00:00"}
    again = gateway.refund("rk", "ch_1")
    assert again == first  # not a new record made at a later time
    assert store.items(PAYMENTS) == {"rk": first}


class _LosingStore(MemoryStore):
    """A store whose conditional put loses, and whose record is then gone."""

    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        return False


def test_a_record_that_vanished_after_a_lost_race_is_a_transient_error() -> None:
    gateway, _ = _gateway(_LosingStore())
    with pytest.raises(TransientError, match="payment record 'k' vanished"):
        gateway.charge("k", "o1", 100)
