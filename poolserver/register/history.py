"""Dated histories: the payout address and the pool fee rate in force at a given time.

Each change is recorded with the instant it takes effect; the value in force at ``t`` is the one
with the latest ``effective_from <= t`` (later-recorded wins on a tie). A distribution dated
``t`` pays the address in force at ``t``, whatever was entered afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar

from poolserver.register.errors import RegisterError
from poolserver.register.timeutil import require_utc

T = TypeVar("T")

FEE_BPS_MAX = 10_000  # 100 %


@dataclass(frozen=True, slots=True)
class Dated(Generic[T]):
    effective_from: datetime
    value: T
    seq: int = 0  # recording order; breaks ties between equal effective_from


def value_at(history: Iterable[Dated[T]], at: datetime) -> T | None:
    """The value in force at ``at``, or None before the first entry."""
    at = require_utc(at, "at")
    best: Dated[T] | None = None
    for entry in history:
        if entry.effective_from <= at and (
            best is None or (entry.effective_from, entry.seq) >= (best.effective_from, best.seq)
        ):
            best = entry
    return None if best is None else best.value


def parse_fee_percent(text: str, field: str = "fee_percent") -> int:
    """``"1.5"`` (percent) -> 150 basis points; at most two decimals, 0..100 %."""
    try:
        pct = Decimal(str(text).strip().rstrip("%"))
    except InvalidOperation:
        raise RegisterError(field, f"not a number: {str(text)[:20]!r}") from None
    if not pct.is_finite() or pct < 0 or pct > 100:
        raise RegisterError(field, "must be a percentage from 0 to 100")
    bps = pct * 100
    if bps != bps.to_integral_value():
        raise RegisterError(field, "at most two decimal places (0.01 % steps)")
    return int(bps)


def format_fee(bps: int) -> str:
    return f"{Decimal(bps) / 100:.2f} %"


def validate_fee_bps(bps: int, field: str = "fee_bps") -> int:
    if isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps <= FEE_BPS_MAX:
        raise RegisterError(field, f"must be an integer 0..{FEE_BPS_MAX} basis points")
    return bps
