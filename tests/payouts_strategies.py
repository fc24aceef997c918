"""Hypothesis strategies shared by the tests/test_payouts_*.py files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import strategies as st

from payouts.fees import FeePolicy, FeeRate, FeeSchedule
from payouts.types import BlockRecord, ShareRecord

T0 = datetime(2025, 1, 1, tzinfo=UTC)
MINERS = ("010203040506", "110203040507", "210203040508", "a", "b", "z")

# Share difficulties as the pool sends them: integers, CPU-miner fractions, odd rationals.
difficulties = st.one_of(
    st.integers(min_value=1, max_value=5000).map(Fraction),
    st.sampled_from([Fraction(1, 1000), Fraction(1, 3), Fraction(7, 2), Fraction(1024)]),
    st.fractions(min_value=Fraction(1, 100), max_value=Fraction(3000), max_denominator=997),
)


@st.composite
def share_histories(draw: st.DrawFn, min_size: int = 0, max_size: int = 60) -> list[ShareRecord]:
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    gaps = draw(st.lists(st.integers(min_value=0, max_value=120), min_size=n, max_size=n))
    shares = []
    t = T0
    for seq, gap in enumerate(gaps):
        t += timedelta(seconds=gap)  # gap 0: equal times, ordered by seq
        shares.append(ShareRecord(seq=seq, miner_id=draw(st.sampled_from(MINERS)),
                                  account="w1", difficulty=draw(difficulties), time=t))
    return shares


@st.composite
def blocks(draw: st.DrawFn, found_at: datetime | None = None, height: int | None = None
           ) -> BlockRecord:
    h = height if height is not None else draw(st.integers(min_value=1, max_value=900_000))
    return BlockRecord(
        height=h,
        block_hash=f"{h:064x}",
        reward_sats=draw(st.one_of(st.integers(min_value=1, max_value=10_000),
                                   st.integers(min_value=312_500_000, max_value=350_000_000))),
        network_difficulty=draw(st.one_of(
            st.integers(min_value=1, max_value=30_000).map(Fraction),
            st.fractions(min_value=Fraction(1, 10), max_value=Fraction(30_000),
                         max_denominator=10_007))),
        found_at=found_at or T0 + timedelta(seconds=draw(st.integers(0, 8000))),
        finder=draw(st.one_of(st.none(), st.sampled_from(MINERS))),
    )


@st.composite
def fee_policies(draw: st.DrawFn) -> FeePolicy:
    bps = st.integers(min_value=0, max_value=10_000)
    pool = FeeSchedule((FeeRate(T0 - timedelta(days=1), draw(bps)),
                        FeeRate(T0 + timedelta(seconds=draw(st.integers(0, 8000))), draw(bps))))
    special = draw(st.lists(st.sampled_from(MINERS), max_size=2, unique=True))
    per_miner = {m: FeeSchedule.flat(draw(bps), T0 - timedelta(days=2)) for m in special}
    return FeePolicy(pool, per_miner,
                     finder_bonus_bps=draw(st.one_of(st.just(0), st.integers(0, 2000))))
