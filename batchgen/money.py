"""Dollars ↔ integer micro-dollars, and how money is written: in one place, so that
`--max-cost 0.38` buys exactly 20 images at $0.019 and never 19."""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation

MICRO = 1_000_000
PRICE_MICRO = 19_000  # Luma Photon: $0.019 per successful generation


def usd_to_micro(value: str | float | Decimal | None) -> int:
    """Parse a dollar amount exactly: '0.38' is 380000, never 379999. None is 0."""
    if value is None:
        return 0
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a dollar amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a dollar amount: {value!r}")
    return int((amount * MICRO).to_integral_value())


@functools.lru_cache(maxsize=256)
def cost_micro(dollars: float | None) -> int:
    """A manifest line's `cost` back in micro-dollars (few distinct values: cached)."""
    return round((dollars or 0) * MICRO)


MAX_REPORTED = 1_000 * MICRO  # no image costs more: a larger report is a lie or garbage


def reported_micro(dollars: float | None) -> int | None:
    """What the API said an answer cost, in micro-dollars; None (counted at the price)
    for a report that cannot be true - not finite, negative or over `MAX_REPORTED` -
    so that no manifest line gets a cost its reader would refuse as corrupt."""
    if dollars is None or not 0 <= dollars * MICRO <= MAX_REPORTED:  # NaN fails too
        return None
    return round(dollars * MICRO)


def micro_to_usd(micro: int) -> float:
    """Dollars as a JSON number (exact for micro-dollar amounts)."""
    return micro / MICRO


def format_usd(micro: int) -> str:
    """'$1.805': at least two decimals, no trailing noise."""
    text = f"{Decimal(micro) / MICRO:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def usd_text(micro: int) -> str:
    """Exact dollars for a CSV cell: 19000 → '0.019', 0 → '0'."""
    return f"{micro / MICRO:.6f}".rstrip("0").rstrip(".")
