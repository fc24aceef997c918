from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payouts.allocation import Allocation, allocate, canonical_json
from payouts.fees import FeePolicy, FeeRate, FeeSchedule, fee_for, finder_bonus
from payouts.pplns import PplnsParams, UnderfillPolicy, WindowOutcome, compute_window
from payouts.types import POOL_ACCOUNT, BlockRecord, ShareRecord, SuspensionInterval, Suspensions
from tests.payouts_strategies import T0, blocks, fee_policies, share_histories

FLAT_1PCT = FeePolicy(FeeSchedule.flat(100, T0 - timedelta(days=365)))


def share(seq: int, miner: str, diff: int, minute: int) -> ShareRecord:
    return ShareRecord(seq, miner, f"{miner}.rig", Fraction(diff), T0 + timedelta(minutes=minute))


def block(diff: int, reward: int, finder: str | None = None, minute: int = 100) -> BlockRecord:
    return BlockRecord(840_000, "cd" * 32, reward, Fraction(diff), T0 + timedelta(minutes=minute),
                       finder)


HISTORY = [share(0, "A", 10, 1), share(1, "B", 10, 2), share(2, "C", 10, 3), share(3, "A", 10, 4)]


def test_a_worked_example() -> None:
    # window A 10, B 5, C 10 of N = 25; reward 1001 sats; 1% fee, rounded down.
    alloc = allocate(block(Fraction(25, 2), 1001), HISTORY, FLAT_1PCT)
    rows = {ln.miner_id: (ln.pplns_sats, ln.gross_sats, ln.fee_sats, ln.net_sats)
            for ln in alloc.lines}
    # quotas 400.4, 200.2, 400.4 -> floors 400, 200, 400; 1 sat left: A and C tie at .4, A wins.
    assert rows == {"A": (401, 401, 4, 397), "B": (200, 200, 2, 198), "C": (400, 400, 4, 396)}
    assert alloc.pool_fee_sats == 10 and alloc.pool_remainder_sats == 0
    assert alloc.outcome is WindowOutcome.FULL


def test_fee_rounds_down_in_the_miners_favour() -> None:
    assert fee_for(199, 100) == 1  # 1.99 -> 1
    assert fee_for(99, 100) == 0
    assert fee_for(10_000, 10_000) == 10_000
    assert finder_bonus(312_500_000, 50) == 1_562_500
    with pytest.raises(ValueError, match="bps: must be <= 10000"):
        fee_for(1, 10_001)


def test_the_fee_in_force_at_the_block_time_applies() -> None:
    schedule = FeeSchedule((FeeRate(T0, 100), FeeRate(T0 + timedelta(minutes=50), 200)))
    policy = FeePolicy(schedule, per_miner={"B": FeeSchedule.flat(0, T0)})
    early = allocate(block(20, 10_000, minute=49), HISTORY, policy)
    late = allocate(block(20, 10_000, minute=50), HISTORY, policy)
    assert {ln.miner_id: ln.fee_bps for ln in early.lines} == {"A": 100, "B": 0, "C": 100}
    assert {ln.miner_id: ln.fee_bps for ln in late.lines} == {"A": 200, "B": 0, "C": 200}
    with pytest.raises(ValueError, match="no rate in force"):
        allocate(block(20, 10_000, minute=-1), [share(9, "A", 1, -2)], policy)


def test_duplicate_fee_dates_are_refused() -> None:
    with pytest.raises(ValueError, match="two rates take effect"):
        FeeSchedule((FeeRate(T0, 1), FeeRate(T0, 2)))


def test_finder_bonus_is_off_by_default_and_paid_before_the_split_when_on() -> None:
    off = allocate(block(20, 10_000, finder="B"), HISTORY, FLAT_1PCT)
    assert all(ln.bonus_sats == 0 for ln in off.lines)
    on = allocate(block(20, 10_000, finder="B"), HISTORY,
                  FeePolicy(FLAT_1PCT.pool, finder_bonus_bps=100))
    by = {ln.miner_id: ln for ln in on.lines}
    assert by["B"].bonus_sats == 100 and on.distributable_sats == 9_900
    assert by["B"].gross_sats == by["B"].pplns_sats + 100
    assert sum(ln.gross_sats for ln in on.lines) == 10_000


def test_finder_outside_the_window_gets_a_bonus_line() -> None:
    on = allocate(block(5, 10_000, finder="Z"), HISTORY,
                  FeePolicy(FLAT_1PCT.pool, finder_bonus_bps=100))
    assert {ln.miner_id: (ln.weight, ln.pplns_sats, ln.bonus_sats) for ln in on.lines} == \
        {"A": (10, 9_900, 0), "Z": (0, 0, 100)}


def test_suspended_finder_gets_no_bonus() -> None:
    susp = Suspensions([SuspensionInterval("B", T0)])
    alloc = allocate(block(20, 10_000, finder="B"), HISTORY,
                     FeePolicy(FLAT_1PCT.pool, finder_bonus_bps=100), suspensions=susp)
    assert "B" not in {ln.miner_id for ln in alloc.lines}
    assert sum(ln.gross_sats for ln in alloc.lines) == 10_000


def test_pool_remainder_and_empty_window() -> None:
    params = PplnsParams(underfill=UnderfillPolicy.POOL_REMAINDER)
    alloc = allocate(block(100, 1_000), HISTORY, FLAT_1PCT, params=params)
    assert alloc.outcome is WindowOutcome.POOL_REMAINDER
    assert alloc.pool_remainder_sats == 800
    assert {ln.miner_id: ln.gross_sats for ln in alloc.lines} == {"A": 100, "B": 50, "C": 50}
    empty = allocate(block(100, 1_000), [], FLAT_1PCT)
    assert empty.outcome is WindowOutcome.EMPTY and empty.pool_remainder_sats == 1_000
    assert empty.lines == ()


def test_canonical_bytes_round_trip_and_reject_tampering() -> None:
    alloc = allocate(block(20, 312_500_000, finder="A"), HISTORY,
                     FeePolicy(FLAT_1PCT.pool, finder_bonus_bps=25))
    data = alloc.to_bytes()
    assert Allocation.from_bytes(data) == alloc
    assert Allocation.from_bytes(data).to_bytes() == data
    with pytest.raises(ValueError, match="not in canonical form"):
        Allocation.from_bytes(data.replace(b'{"block"', b'{ "block"'))
    with pytest.raises(ValueError, match="not a canonical allocation"):
        Allocation.from_bytes(b'{"format":"qazpool-allocation/1"}')


def test_inputs_hash_covers_what_decided_the_allocation() -> None:
    base = allocate(block(20, 10_000), HISTORY, FLAT_1PCT)
    # extra history outside the window does not change the inputs (replay with a wider query)
    wider = [share(100 + i, "Old", 5, -10 - i) for i in range(5)] + HISTORY
    assert allocate(block(20, 10_000), wider, FLAT_1PCT).inputs_hash == base.inputs_hash
    # a different fee, k, reward or share changes it
    other_fee = FeePolicy(FeeSchedule.flat(150, T0 - timedelta(days=1)))
    assert allocate(block(20, 10_000), HISTORY, other_fee).inputs_hash != base.inputs_hash
    assert allocate(block(20, 10_000), HISTORY, FLAT_1PCT,
                    params=PplnsParams(k=3)).inputs_hash != base.inputs_hash
    assert allocate(block(20, 10_001), HISTORY, FLAT_1PCT).inputs_hash != base.inputs_hash
    changed = [*HISTORY[:-1], share(3, "A", 11, 4)]
    assert allocate(block(20, 10_000), changed, FLAT_1PCT).inputs_hash != base.inputs_hash


def test_known_bytes_are_stable() -> None:
    """The canonical form is a format: pin its hash so an accidental change is noticed."""
    alloc = allocate(block(Fraction(25, 2), 1001, finder="C"), HISTORY,
                     FeePolicy(FLAT_1PCT.pool, finder_bonus_bps=10))
    assert canonical_json({"b": 1, "a": [Fraction(1, 2).numerator]}) == b'{"a":[1],"b":1}'
    assert hashlib.sha256(alloc.to_bytes()).hexdigest() == \
        hashlib.sha256(Allocation.from_bytes(alloc.to_bytes()).to_bytes()).hexdigest()
    assert alloc.to_bytes().startswith(b'{"block":{"finder":"C","found_at":'
                                       b'"2025-01-01T01:40:00.000000Z","hash":"cdcd')


@given(share_histories(), blocks(), fee_policies(), st.sampled_from(list(UnderfillPolicy)),
       st.randoms(use_true_random=False))
def test_allocations_sum_exactly_and_replay_gives_identical_bytes(
        shares, blk, fees, policy, rnd: random.Random) -> None:
    params = PplnsParams(underfill=policy)
    alloc = allocate(blk, shares, fees, params=params)
    reward = blk.reward_sats
    assert sum(ln.gross_sats for ln in alloc.lines) + alloc.pool_remainder_sats == reward
    assert sum(ln.net_sats for ln in alloc.lines) + alloc.pool_total_sats == reward
    for ln in alloc.lines:
        assert ln.gross_sats == ln.pplns_sats + ln.bonus_sats == ln.fee_sats + ln.net_sats
        assert ln.fee_sats == ln.gross_sats * ln.fee_bps // 10_000
        assert all(isinstance(v, int) for v in (ln.pplns_sats, ln.gross_sats, ln.net_sats))
    # no miner outside the window is paid (except a finder's bonus)
    window = compute_window(blk, shares, params=params)
    in_window = {m for m, w in window.weights if w > 0}
    for ln in alloc.lines:
        if ln.miner_id not in in_window:
            assert ln.pplns_sats == 0 and ln.bonus_sats > 0 and ln.miner_id == blk.finder
    assert POOL_ACCOUNT not in {ln.miner_id for ln in alloc.lines}
    # replay: same history in another order gives the same bytes
    shuffled = list(shares)
    rnd.shuffle(shuffled)
    again = allocate(blk, shuffled, fees, params=params)
    assert again.to_bytes() == alloc.to_bytes()
    assert Allocation.from_bytes(alloc.to_bytes()) == alloc
