"""Pool fee (basis points, dated history) and the optional block-finder bonus.

* A fee schedule is a list of ``(effective_from, bps)`` rates; the rate in force at a block is
  the one with the latest ``effective_from <= block.found_at``. A block before the first rate is
  an error (the operator must say what the fee was), never a silent zero.
* A miner may have its own schedule (the register keeps a dated fee per miner); otherwise the
  pool's schedule applies.
* Rounding: ``fee = floor(gross * bps / 10000)`` — the fee is rounded **down**, in the miner's
  favour, and ``net = gross - fee`` so gross = fee + net exactly.
* Finder bonus: ``floor(reward * finder_bonus_bps / 10000)`` of the block reward goes to the
  finder before the PPLNS split (0 = off, the default); rounded down, the remainder stays in the
  PPLNS pot. A suspended finder gets no bonus.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from payouts.types import require_int, require_miner_id, require_sats, require_utc

BPS_DENOMINATOR = 10_000


@dataclass(frozen=True, slots=True)
class FeeRate:
    effective_from: datetime
    bps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "effective_from",
                           require_utc(self.effective_from, "fee_rate.effective_from"))
        require_int(self.bps, "fee_rate.bps", minimum=0, maximum=BPS_DENOMINATOR)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A dated history of fee rates, kept sorted by ``effective_from`` (no duplicates)."""

    rates: tuple[FeeRate, ...]

    def __post_init__(self) -> None:
        rates = tuple(self.rates)
        if not rates:
            raise ValueError("fee_schedule.rates: at least one rate is required")
        for r in rates:
            if not isinstance(r, FeeRate):
                raise TypeError(f"fee_schedule.rates: expected FeeRate, got {type(r).__name__}")
        ordered = tuple(sorted(rates, key=lambda r: r.effective_from))
        for a, b in itertools.pairwise(ordered):
            if a.effective_from == b.effective_from:
                raise ValueError(f"fee_schedule.rates: two rates take effect at "
                                 f"{a.effective_from.isoformat()}")
        object.__setattr__(self, "rates", ordered)

    @classmethod
    def flat(cls, bps: int, since: datetime) -> FeeSchedule:
        return cls((FeeRate(since, bps),))

    def rate_at(self, at: datetime) -> FeeRate:
        at = require_utc(at, "at")
        in_force = [r for r in self.rates if r.effective_from <= at]
        if not in_force:
            raise ValueError(f"fee_schedule: no rate in force at {at.isoformat()} (first rate "
                             f"takes effect {self.rates[0].effective_from.isoformat()})")
        return in_force[-1]


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """Everything that decides the pool's cut of a block."""

    pool: FeeSchedule
    per_miner: Mapping[str, FeeSchedule] = field(default_factory=dict)
    finder_bonus_bps: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.pool, FeeSchedule):
            raise TypeError(f"fee_policy.pool: expected FeeSchedule, "
                            f"got {type(self.pool).__name__}")
        for miner, schedule in self.per_miner.items():
            require_miner_id(miner, "fee_policy.per_miner")
            if not isinstance(schedule, FeeSchedule):
                raise TypeError(f"fee_policy.per_miner[{miner!r}]: expected FeeSchedule")
        object.__setattr__(self, "per_miner", dict(self.per_miner))
        require_int(self.finder_bonus_bps, "fee_policy.finder_bonus_bps",
                    minimum=0, maximum=BPS_DENOMINATOR)

    def bps_for(self, miner_id: str, at: datetime) -> int:
        schedule = self.per_miner.get(miner_id, self.pool)
        return schedule.rate_at(at).bps


def fee_for(gross_sats: int, bps: int) -> int:
    """The fee on ``gross_sats`` at ``bps``: floor(gross * bps / 10000), rounded down."""
    require_sats(gross_sats, "gross_sats")
    require_int(bps, "bps", minimum=0, maximum=BPS_DENOMINATOR)
    return gross_sats * bps // BPS_DENOMINATOR


def finder_bonus(reward_sats: int, bps: int) -> int:
    """The finder's bonus out of ``reward_sats``: floor(reward * bps / 10000)."""
    require_sats(reward_sats, "reward_sats")
    require_int(bps, "finder_bonus_bps", minimum=0, maximum=BPS_DENOMINATOR)
    return reward_sats * bps // BPS_DENOMINATOR


def schedule_from_pairs(pairs: Iterable[tuple[datetime, int]]) -> FeeSchedule:
    """A schedule from ``(effective_from, bps)`` pairs, e.g. rows read from the register."""
    return FeeSchedule(tuple(FeeRate(at, bps) for at, bps in pairs))
