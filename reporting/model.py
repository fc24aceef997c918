"""The plain data a report is built from, and the repository interface that supplies it.

``poolserver`` implements ``ReportSource`` over the database; everything here is pure.
Times are aware UTC; report dates are Kazakhstan calendar dates (UTC+5).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Protocol

from payouts.ledger import EntryKind
from reporting.rates import Rate

KZ = timezone(timedelta(hours=5), "UTC+5")


def kz_date(at: datetime) -> date:
    if at.tzinfo is None:
        raise ValueError("time without a time zone")
    return at.astimezone(KZ).date()


def kz_text(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(KZ).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Period:
    """Kazakhstan calendar days ``first`` .. ``last`` inclusive."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"period: --to {self.last} is before --from {self.first}")

    @classmethod
    def month(cls, text: str) -> Period:
        try:
            year, month = (int(p) for p in text.split("-"))
            first = date(year, month, 1)
        except ValueError:
            raise ValueError(f"--month: {text!r} is not a month (YYYY-MM)") from None
        return cls(first, date(year, month, calendar.monthrange(year, month)[1]))

    @classmethod
    def previous_month(cls, today: date) -> Period:
        last = today.replace(day=1) - timedelta(days=1)
        return cls(last.replace(day=1), last)

    @property
    def start_utc(self) -> datetime:
        return datetime.combine(self.first, time(0), tzinfo=KZ).astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        """Exclusive end."""
        return datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=KZ).astimezone(UTC)

    @property
    def label(self) -> str:
        return f"{self.first.isoformat()}_{self.last.isoformat()}"


@dataclass(frozen=True, slots=True)
class MinerIdentity:
    account: str
    iin_bin: str
    legal_name: str
    license_number: str
    license_issued_on: date | None


@dataclass(frozen=True, slots=True)
class MinerEvent:
    """A miner's credit (distribution at maturity), its reversal (orphaned block), or a late
    payment (PAYMENT: a distribution of an earlier period paid in this one; amounts were
    reported in that period, so they are 0 here)."""

    kind: EntryKind  # CREDIT, REVERSAL or PAYMENT
    account: str
    block_hash: str
    height: int
    at: datetime  # when the ledger recorded it (UTC)
    gross_sats: int  # signed like the event (negative for a reversal)
    fee_sats: int
    net_sats: int
    address: str  # payout address in force at ``at`` ("" if none)
    payment_txid: str = ""  # the payment that covered it, if made before the period's end
    payment_at: datetime | None = None
    payment_fee_sats: int = 0  # the miner's share of the network fee (fee_policy "miners")
    # the Kazakhstan date whose rate values it: the credit's own date; for a reversal (and a
    # late payment) the date of the credit it refers to, so a reversal cancels it in tenge too
    valued_on: date | None = None

    @property
    def value_date(self) -> date:
        return self.valued_on or kz_date(self.at)


@dataclass(frozen=True, slots=True)
class BlockEvent:
    """A block credited (or reversed) in the period: its reward and the pool's part."""

    kind: EntryKind
    block_hash: str
    height: int
    at: datetime
    reward_sats: int  # signed
    pool_fee_sats: int  # commission, signed
    pool_remainder_sats: int  # underfilled window's remainder booked to the pool, signed
    valued_on: date | None = None  # a reversal: the date of the credit it reverses

    @property
    def value_date(self) -> date:
        return self.valued_on or kz_date(self.at)


@dataclass(frozen=True, slots=True)
class PoolExpense:
    """A network fee the pool paid for a payout (ledger ``tx_fee``)."""

    at: datetime
    txid: str
    fee_sats: int


@dataclass(frozen=True, slots=True)
class PeriodData:
    miner_events: Sequence[MinerEvent]
    block_events: Sequence[BlockEvent]
    expenses: Sequence[PoolExpense]
    miners: Mapping[str, MinerIdentity]
    rates: Mapping[date, Rate]


class ReportSource(Protocol):
    async def period_data(self, period: Period) -> PeriodData:
        """Everything the ledger recorded in ``[period.start_utc, period.end_utc)``, with
        payments made before ``period.end_utc`` only (a closed period never changes)."""
        ...
