"""BTC→KZT daily rates supplied by the operator, and the tenge value of an amount of satoshis.

KZT is ``Decimal``: ``value = satoshis × rate / 100 000 000``, rounded half-up to the tiyn
(0.01 KZT). The rule is stated in every report (``ROUNDING_RULE``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, Inexact, InvalidOperation, localcontext

SATS_PER_BTC = 100_000_000
TIYN = Decimal("0.01")
ROUNDING_RULE = ("KZT = satoshis x rate / 100000000, rounded half-up to the tiyn (0.01 KZT); "
                 "rate = KZT per 1 BTC on the date of receipt (Kazakhstan time, UTC+5)")


class RateError(ValueError):
    """A bad rate table: the message names the line and the field."""


@dataclass(frozen=True, slots=True)
class Rate:
    day: date
    kzt_per_btc: Decimal
    source: str


def parse_rate_value(text: str, field: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise RateError(f"{field}: {text!r} is not a decimal number") from None
    if not value.is_finite() or value <= 0:
        raise RateError(f"{field}: must be a positive number, got {text!r}")
    return value


def parse_rates_csv(text: str) -> list[Rate]:
    """``date,rate,source`` rows (header required; ISO dates; a decimal point, no thousands
    separator). A date given twice is an error."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows = list(reader)
    if not rows or [c.strip().lower() for c in rows[0]] != ["date", "rate", "source"]:
        raise RateError("line 1: header must be exactly: date,rate,source")
    seen: dict[date, int] = {}
    out: list[Rate] = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 3:
            raise RateError(f"line {n}: expected 3 fields (date,rate,source), got {len(row)}")
        try:
            day = date.fromisoformat(row[0].strip())
        except ValueError:
            raise RateError(f"line {n}: date: {row[0]!r} is not a date (YYYY-MM-DD)") from None
        rate = parse_rate_value(row[1], f"line {n}: rate")
        source = row[2].strip()
        if not source:
            raise RateError(f"line {n}: source: must name where the rate comes from")
        if day in seen:
            raise RateError(f"line {n}: date: {day} already given on line {seen[day]}")
        seen[day] = n
        out.append(Rate(day, rate, source))
    if not out:
        raise RateError("no rates in the file")
    return out


def kzt_value(sats: int, rate: Decimal) -> Decimal:
    if not isinstance(sats, int) or isinstance(sats, bool):
        raise TypeError(f"sats: must be int, got {type(sats).__name__}")
    # exact: the default 28-digit context would round a large amount times a long rate
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        exact = Decimal(sats) * rate / SATS_PER_BTC
        ctx.traps[Inexact] = False
        return exact.quantize(TIYN, rounding=ROUND_HALF_UP)


def btc_text(sats: int) -> str:
    """Exact BTC with 8 decimals (``-0.00000001`` for a negative amount)."""
    sign = "-" if sats < 0 else ""
    whole, frac = divmod(abs(sats), SATS_PER_BTC)
    return f"{sign}{whole}.{frac:08d}"


class MissingRates(Exception):
    """Distributions on dates without a rate; ``days`` lists them in order."""

    def __init__(self, days: Iterable[date]) -> None:
        self.days = tuple(sorted(set(days)))
        super().__init__("no BTC/KZT rate for: " + ", ".join(d.isoformat() for d in self.days)
                         + " (import them with `poolserver rates import FILE`, or pass "
                         "--allow-missing-rates to mark them)")


def check_rates(days: Iterable[date], rates: Mapping[date, Rate], allow_missing: bool) -> None:
    missing = [d for d in days if d not in rates]
    if missing and not allow_missing:
        raise MissingRates(missing)
