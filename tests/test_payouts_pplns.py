from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payouts.pplns import PplnsParams, UnderfillPolicy, WindowOutcome, compute_window
from payouts.types import (
    BlockRecord,
    RollupRecord,
    ShareRecord,
    SuspensionInterval,
    Suspensions,
    difficulty_from_bits,
    exact_difficulty,
)
from tests.payouts_strategies import MINERS, T0, blocks, share_histories


def share(seq: int, miner: str, diff: Fraction | int | str, minute: int) -> ShareRecord:
    return ShareRecord(seq, miner, f"{miner}.rig", Fraction(diff), T0 + timedelta(minutes=minute))


def block(diff: int | Fraction, minute: int = 100, reward: int = 1000,
          finder: str | None = None) -> BlockRecord:
    return BlockRecord(800_000, "ab" * 32, reward, Fraction(diff), T0 + timedelta(minutes=minute),
                       finder)


HISTORY = [share(0, "A", 10, 1), share(1, "B", 10, 2), share(2, "C", 10, 3), share(3, "A", 10, 4)]


def test_edge_share_counts_partially_so_the_window_is_exact() -> None:
    # N = 2 * 12.5 = 25: newest A (10) and C (10) in full, B half (5), the oldest A not at all.
    w = compute_window(block(Fraction(25, 2)), HISTORY)
    assert w.target == 25 and w.filled == 25 and w.outcome is WindowOutcome.FULL
    assert dict(w.weights) == {"A": 10, "B": 5, "C": 10}
    assert w.edge_fraction == Fraction(1, 2)
    assert [i.ref for i in w.items] == ["3", "2", "1"]
    assert w.shares_of_block() == ((("A", Fraction(2, 5)), ("B", Fraction(1, 5)),
                                    ("C", Fraction(2, 5))), 0)


def test_k_is_configurable_and_exact() -> None:
    w = compute_window(block(10), HISTORY, params=PplnsParams(k=Fraction(3, 2)))
    assert w.target == 15
    assert dict(w.weights) == {"A": 10, "C": 5}


def test_shares_after_the_block_belong_to_the_next_block() -> None:
    later = [*HISTORY, share(4, "Z", 1000, 101)]
    assert compute_window(block(10, minute=100), later).weights == \
        compute_window(block(10, minute=100), HISTORY).weights


def test_equal_times_are_ordered_by_journal_seq() -> None:
    same_time = [share(7, "old", 5, 1), share(8, "new", 5, 1)]
    w = compute_window(block(Fraction(5, 2)), same_time)
    assert dict(w.weights) == {"new": 5}


def test_underfilled_normalise_is_the_default_and_recorded() -> None:
    w = compute_window(block(100), HISTORY)
    assert w.outcome is WindowOutcome.NORMALISED
    assert w.filled == 40 and w.target == 200
    fractions, pool = w.shares_of_block()
    assert dict(fractions) == {"A": Fraction(1, 2), "B": Fraction(1, 4), "C": Fraction(1, 4)}
    assert pool == 0


def test_underfilled_pool_remainder_books_the_rest_to_the_pool() -> None:
    w = compute_window(block(100), HISTORY,
                       params=PplnsParams(underfill=UnderfillPolicy.POOL_REMAINDER))
    assert w.outcome is WindowOutcome.POOL_REMAINDER
    fractions, pool = w.shares_of_block()
    assert dict(fractions) == {"A": Fraction(1, 10), "B": Fraction(1, 20), "C": Fraction(1, 20)}
    assert pool == Fraction(4, 5)


def test_no_eligible_work_is_an_empty_window() -> None:
    w = compute_window(block(10), [])
    assert w.outcome is WindowOutcome.EMPTY
    assert w.shares_of_block() == ((), 1)


def test_suspended_shares_earn_nothing_and_the_window_reaches_further_back() -> None:
    susp = Suspensions([SuspensionInterval("C", T0 + timedelta(minutes=3),
                                           T0 + timedelta(minutes=4))])
    w = compute_window(block(Fraction(25, 2)), HISTORY, suspensions=susp)
    assert dict(w.weights) == {"A": 15, "B": 10}  # C's share skipped; the oldest A half counts
    assert w.suspended_weight == 10
    assert [(i.ref, i.suspended) for i in w.items] == [("3", False), ("2", True), ("1", False),
                                                       ("0", False)]
    # the interval is half-open: a share at its end is credited again
    back = Suspensions([SuspensionInterval("C", T0, T0 + timedelta(minutes=3))])
    assert dict(compute_window(block(Fraction(25, 2)), HISTORY, suspensions=back).weights) == \
        {"A": 10, "B": 5, "C": 10}


def test_open_ended_suspension() -> None:
    susp = Suspensions([SuspensionInterval("A", T0)])
    w = compute_window(block(100), HISTORY, suspensions=susp)
    assert dict(w.weights) == {"B": 10, "C": 10}


def hourly(miner: str, hour: int, total: int | Fraction, count: int = 1) -> RollupRecord:
    return RollupRecord(miner, T0 - timedelta(hours=hour + 1), T0 - timedelta(hours=hour),
                        Fraction(total), count)


def test_rollups_extend_the_window_and_the_edge_period_scales_proportionally() -> None:
    rollups = [hourly("A", 0, 30), hourly("D", 0, 10), hourly("E", 1, 1000)]
    # N = 80: raw 40, then the hour-0 period (40) exactly fills it; the hour-1 period is not used.
    w = compute_window(block(40), HISTORY, rollups)
    assert dict(w.weights) == {"A": 50, "B": 10, "C": 10, "D": 10}
    assert w.edge_fraction is None
    # N = 60: the hour-0 period crosses the edge: 20 of its 40 count, each miner at 1/2.
    w = compute_window(block(30), HISTORY, rollups)
    assert dict(w.weights) == {"A": 35, "B": 10, "C": 10, "D": 5}
    assert w.edge_fraction == Fraction(1, 2)


def test_rollup_inside_or_straddling_a_suspension_earns_nothing() -> None:
    rollups = [hourly("A", 0, 30), hourly("D", 0, 10)]
    inside = Suspensions([SuspensionInterval("D", T0 - timedelta(hours=5), T0)])
    w = compute_window(block(100), HISTORY, rollups, suspensions=inside)
    assert "D" not in dict(w.weights) and w.suspended_weight == 10
    # A suspension back-dated into a rolled-up hour: which of D's shares in that hour came
    # before it is unknowable, so the whole rollup is treated as suspended (never refused,
    # so the block's allocation does not stall).
    straddle = Suspensions([SuspensionInterval("D", T0 - timedelta(minutes=30), T0)])
    w2 = compute_window(block(100), HISTORY, rollups, suspensions=straddle)
    assert "D" not in dict(w2.weights) and w2.suspended_weight == 10
    assert dict(w2.weights) == dict(w.weights)
    [item] = [i for i in w2.items if i.miner_id == "D" and i.kind == "rollup"]
    assert item.suspended and item.counted == 0


def test_rollups_must_be_older_than_raw_shares_and_not_overlap() -> None:
    with pytest.raises(ValueError, match="overlaps raw shares"):
        compute_window(block(100), HISTORY,
                       [RollupRecord("A", T0, T0 + timedelta(minutes=2), Fraction(1), 1)])
    with pytest.raises(ValueError, match="overlap"):
        compute_window(block(100), HISTORY, [
            RollupRecord("A", T0 - timedelta(hours=2), T0, Fraction(1), 1),
            RollupRecord("B", T0 - timedelta(hours=1), T0, Fraction(1), 1),
            RollupRecord("C", T0 - timedelta(hours=3), T0 - timedelta(minutes=90),
                         Fraction(1), 1)])
    with pytest.raises(ValueError, match="two rollups"):
        compute_window(block(100), HISTORY, [hourly("A", 0, 1), hourly("A", 0, 2)])


def test_duplicate_share_seq_is_refused() -> None:
    with pytest.raises(ValueError, match="seq 1 appears twice"):
        compute_window(block(10), [share(1, "A", 1, 1), share(1, "B", 1, 2)])


@pytest.mark.parametrize(("value", "expected"), [
    ("0.001", Fraction(1, 1000)), (0.001, Fraction(0.001)), ("1/3", Fraction(1, 3)), (65536, 65536),
])
def test_difficulty_is_exact(value, expected) -> None:
    assert exact_difficulty(value, "d") == expected


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "share\\[1\\].difficulty: 'abc' is not a decimal"), (0, "must be > 0"),
    (-1, "must be > 0"), (float("nan"), "must be finite"), ("1/0", "is not a decimal"),
])
def test_bad_difficulty_is_named(value, message) -> None:
    with pytest.raises(ValueError, match=message):
        ShareRecord(1, "A", "A.rig", value, T0)


def test_naive_times_and_reserved_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=r"share\[1\]\.time: naive datetime"):
        ShareRecord(1, "A", "w", Fraction(1), datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="reserved for pool accounts"):
        ShareRecord(1, "@pool", "w", Fraction(1), T0)
    with pytest.raises(ValueError, match=r"block\.block_hash"):
        BlockRecord(1, "XYZ", 1, Fraction(1), T0)
    with pytest.raises(TypeError, match=r"block\.reward_sats: satoshis must be int"):
        BlockRecord(1, "ab" * 32, 1.5, Fraction(1), T0)  # type: ignore[arg-type]


def test_difficulty_from_bits_matches_bitcoind() -> None:
    assert difficulty_from_bits(0x1D00FFFF) == 1
    assert difficulty_from_bits(0x207FFFFF) == Fraction(0xFFFF << 208, 0x7FFFFF << 232)
    # block 840000 (bits 0x17034219): bitcoind shows 86388558925171.02
    assert round(float(difficulty_from_bits(0x17034219)), 2) == 86388558925171.02


def reference_weights(shares: list[ShareRecord], blk: BlockRecord, k: Fraction,
                      susp: Suspensions) -> dict[str, Fraction]:
    """Independent formulation: share i counts clamp(N - (work newer than i), 0, d_i)."""
    n = k * blk.network_difficulty
    eligible = [s for s in shares
                if s.time <= blk.found_at and not susp.is_suspended(s.miner_id, s.time)]
    eligible.sort(key=lambda s: (s.time, s.seq), reverse=True)
    result: dict[str, Fraction] = {}
    newer = Fraction(0)
    for s in eligible:
        counted = max(Fraction(0), min(s.difficulty, n - newer))
        newer += s.difficulty
        if counted:
            result[s.miner_id] = result.get(s.miner_id, Fraction(0)) + counted
    return result


suspension_sets = st.lists(
    st.tuples(st.sampled_from(MINERS), st.integers(0, 8000), st.integers(1, 3000)),
    max_size=3,
).map(lambda xs: Suspensions([SuspensionInterval(m, T0 + timedelta(seconds=s),
                                                 T0 + timedelta(seconds=s + d))
                              for m, s, d in xs]))


@given(share_histories(), blocks(), st.fractions(min_value=Fraction(1, 4), max_value=4,
                                                 max_denominator=8), suspension_sets)
def test_window_matches_an_independent_formulation(shares, blk, k, susp) -> None:
    w = compute_window(blk, shares, params=PplnsParams(k=k), suspensions=susp)
    expected = reference_weights(shares, blk, k, susp)
    assert dict(w.weights) == expected
    eligible_total = sum(expected.values(), Fraction(0))
    assert w.filled == min(w.target, eligible_total) == sum(expected.values(), Fraction(0))
    # only the edge item counts partially; everything newer counts fully
    partial = [i for i in w.items if not i.suspended and i.counted != i.difficulty]
    assert len(partial) <= 1
    if partial:
        assert partial[0] is [i for i in w.items if not i.suspended][-1]
        assert w.edge_fraction == partial[0].counted / partial[0].difficulty
    # fractions of the block sum to exactly one
    fractions, pool = w.shares_of_block()
    assert sum((f for _, f in fractions), Fraction(0)) + pool == 1


@settings(max_examples=200)
@given(share_histories(min_size=1), st.one_of(blocks(), blocks(found_at=T0 + timedelta(hours=3))),
       st.integers(0, 60), st.integers(0, 60))
def test_rollups_anywhere_are_exact_unless_the_edge_falls_inside_them(shares, blk, i, j) -> None:
    """Roll up any run of shares (older, newer or in the middle) into per-miner sums of one
    period: the same window as the raw shares unless the edge falls inside that period, and the
    same total even then."""
    lo, hi = sorted((min(i, len(shares)), min(j, len(shares))))
    rolled_up, raw_rest = shares[lo:hi], shares[:lo] + shares[hi:]
    if not rolled_up:
        return
    start = rolled_up[0].time
    end = rolled_up[-1].time + timedelta(microseconds=1)
    if (lo > 0 and shares[lo - 1].time >= start) or (hi < len(shares) and
                                                      shares[hi].time < end):
        return  # equal times across the boundary: that period would hold a raw share
    if end > blk.found_at:
        return
    sums: dict[str, tuple[Fraction, int]] = {}
    for s in rolled_up:
        d, c = sums.get(s.miner_id, (Fraction(0), 0))
        sums[s.miner_id] = (d + s.difficulty, c + 1)
    rollups = [RollupRecord(m, start, end, d, c) for m, (d, c) in sums.items()]

    raw = compute_window(blk, shares)
    mixed = compute_window(blk, raw_rest, rollups)
    assert mixed.filled == raw.filled and mixed.outcome is raw.outcome
    newer = sum((s.difficulty for s in shares[hi:] if s.time <= blk.found_at), Fraction(0))
    rolled_sum = sum((d for d, _ in sums.values()), Fraction(0))
    if newer >= raw.target or newer + rolled_sum <= raw.target:
        assert mixed.weights == raw.weights
    else:
        assert mixed.edge_fraction == (raw.target - newer) / rolled_sum


def test_params_take_the_config_values_exactly_and_name_bad_ones() -> None:
    params = PplnsParams(k="1.5", underfill="pool_remainder")  # type: ignore[arg-type]
    assert params.k == Fraction(3, 2) and params.underfill is UnderfillPolicy.POOL_REMAINDER
    with pytest.raises(ValueError, match=r"pplns\.underfill: 'half' is not one of"):
        PplnsParams(underfill="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pplns\.k: must be > 0"):
        PplnsParams(k=Fraction(0))


def test_suspension_coverage_of_a_period() -> None:
    h = timedelta(hours=1)
    susp = Suspensions([SuspensionInterval("A", T0, T0 + h),
                        SuspensionInterval("A", T0 + h, T0 + 2 * h),  # adjacent: merged
                        SuspensionInterval("B", T0 + 3 * h)])
    assert susp.coverage("A", T0, T0 + 2 * h) == "full"
    assert susp.coverage("A", T0 + h / 2, T0 + 3 * h) == "partial"
    assert susp.coverage("A", T0 + 2 * h, T0 + 3 * h) == "none"
    assert susp.coverage("B", T0 + 4 * h, T0 + 5 * h) == "full"
    assert susp.coverage("B", T0, T0 + 4 * h) == "partial"
    assert susp.coverage("C", T0, T0 + h) == "none"
