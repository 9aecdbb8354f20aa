"""The default payment provider: a deterministic simulator behind the PaymentGateway port.

It behaves like a real provider with idempotency keys: a charge or refund repeated with
the same key returns the first result and never moves money twice. It declines any order
whose total is above `decline_above_cents` (1000.00 by default).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from handlers.core.errors import StepFailed, TransientError
from handlers.core.ports import Clock, Store
from handlers.money import format_cents

PAYMENTS = "payments"
DEFAULT_DECLINE_ABOVE_CENTS = 100_000


class SimulatedPaymentGateway:
    def __init__(self, store: Store, clock: Clock,
                 decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS) -> None:
        self._store = store
        self._clock = clock
        self.decline_above_cents = decline_above_cents

    def charge(self, key: str, order_id: str, amount_cents: int) -> Mapping[str, Any]:
        record = self._store.get(PAYMENTS, key)
        if record is None:
            declined = amount_cents > self.decline_above_cents
            record = {
                "kind": "charge", "order_id": order_id, "amount_cents": amount_cents,
                "charge_id": "ch_" + hashlib.sha256(key.encode()).hexdigest()[:16],
                "status": "declined" if declined else "charged",
                "at": self._clock.now().isoformat(),
            }
            if not self._store.put_if_absent(PAYMENTS, key, record):
                record = self._store.get(PAYMENTS, key)
                if record is None:
                    raise TransientError(f"payment record {key!r} vanished")
        if record["status"] == "declined":
            raise StepFailed(
                "payment_declined",
                f"total {format_cents(record['amount_cents'])} is above the limit of "
                f"{format_cents(self.decline_above_cents)}",
            )
        return record

    def refund(self, key: str, charge_id: str) -> Mapping[str, Any]:
        record = {"kind": "refund", "charge_id": charge_id, "status": "refunded",
                  "refund_id": "re_" + hashlib.sha256(key.encode()).hexdigest()[:16],
                  "at": self._clock.now().isoformat()}
        if self._store.put_if_absent(PAYMENTS, key, record):
            return record
        return self._store.get(PAYMENTS, key) or record

    def find_charge(self, key: str) -> Mapping[str, Any] | None:
        record = self._store.get(PAYMENTS, key)
        return record if record and record.get("status") == "charged" else None
