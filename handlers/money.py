"""Money as integer cents: floats from JSON are converted once, at the edge of the domain."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def to_cents(amount: float | int | str | Decimal) -> int:
    return int((Decimal(str(amount)) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def format_cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}" if cents >= 0 else f"-{format_cents(-cents)}"
