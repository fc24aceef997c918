from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payouts.allocation import Allocation, allocate
from payouts.fees import FeePolicy, FeeSchedule
from payouts.ledger import (
    ChainStatus,
    EntryKind,
    LedgerEntry,
    balances,
    block_entries,
    credit_entries,
)
from payouts.types import POOL_ACCOUNT, BlockRecord, ShareRecord
from tests.payouts_strategies import T0, blocks, fee_policies, share_histories

FEES = FeePolicy(FeeSchedule.flat(200, T0 - timedelta(days=1)))
SHARES = [ShareRecord(i, m, "w", Fraction(d), T0 + timedelta(minutes=i))
          for i, (m, d) in enumerate([("A", 3), ("B", 1), ("A", 2), ("C", 4)])]


def alloc(height: int, reward: int = 1_000_000) -> Allocation:
    blk = BlockRecord(height, f"{height:064x}", reward, Fraction(4), T0 + timedelta(hours=1))
    return allocate(blk, SHARES, FEES)


def status(a: Allocation, confirmations: int, main: bool = True) -> dict[str, ChainStatus]:
    return {a.block.block_hash: ChainStatus(a.block.block_hash, main, confirmations)}


def test_credit_only_at_maturity_then_idempotent() -> None:
    a = alloc(10)
    assert block_entries([a], status(a, 99), []) == ()
    new = block_entries([a], status(a, 100), [])
    assert {e.account: e.amount_sats for e in new} == {
        **{ln.miner_id: ln.net_sats for ln in a.lines}, POOL_ACCOUNT: a.pool_total_sats}
    assert sum(e.amount_sats for e in new) == a.block.reward_sats
    assert all(e.kind is EntryKind.CREDIT for e in new)
    assert block_entries([a], status(a, 150), new) == ()


def test_maturity_is_configurable() -> None:
    a = alloc(10)
    assert block_entries([a], status(a, 5), [], maturity=6) == ()
    assert block_entries([a], status(a, 6), [], maturity=6) != ()
    with pytest.raises(ValueError, match="maturity: must be >= 1"):
        block_entries([a], status(a, 6), [], maturity=0)


def test_orphan_reverses_with_new_entries_and_restores_balances() -> None:
    a, b = alloc(10), alloc(11, 2_000_000)
    ledger = list(block_entries([a, b], {**status(a, 100), **status(b, 100)}, []))
    before_b = balances(e for e in ledger if e.block_hash == a.block.block_hash)
    reversal = block_entries([a, b], {**status(a, 101), **status(b, 0, main=False)}, ledger)
    assert {e.kind for e in reversal} == {EntryKind.REVERSAL}
    ledger += reversal
    assert {k: v for k, v in balances(ledger).items() if v} == before_b
    assert block_entries([a, b], {**status(a, 101), **status(b, 0, main=False)}, ledger) == ()
    # the block comes back (reorg back) and matures again: a second generation
    again = block_entries([a, b], {**status(a, 300), **status(b, 100)}, ledger)
    assert {e.generation for e in again} == {1}
    ledger += again
    assert sum(balances(ledger).values()) == a.block.reward_sats + b.block.reward_sats


def test_immature_block_leaving_the_chain_needs_nothing_and_unknown_blocks_are_left_alone() -> None:
    a = alloc(10)
    assert block_entries([a], status(a, 0, main=False), []) == ()
    assert block_entries([a], {}, []) == ()


def test_entries_validate_their_sign_and_references() -> None:
    with pytest.raises(ValueError, match="wrong sign"):
        LedgerEntry("x", EntryKind.CREDIT, "A", -1, block_hash="h")
    with pytest.raises(ValueError, match="wrong sign"):
        LedgerEntry("x", EntryKind.PAYMENT, "A", 0, batch_id="b")
    with pytest.raises(ValueError, match="block_hash: required"):
        LedgerEntry("x", EntryKind.REVERSAL, "A", -1)
    with pytest.raises(ValueError, match="a reversal without a credit"):
        a = alloc(10)
        block_entries([a], status(a, 200, main=False),
                      [LedgerEntry("r", EntryKind.REVERSAL, "A", -1,
                                   block_hash=a.block.block_hash)])


# A chain event: (block index, confirmations, in main chain)
events = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 200), st.booleans()), max_size=40)


@given(st.lists(st.tuples(share_histories(min_size=1, max_size=15), blocks()), min_size=1,
                max_size=6), fee_policies(), events, st.integers(1, 120))
def test_ledger_follows_the_chain_over_random_block_sequences(histories, fees, evs,
                                                                maturity) -> None:
    allocs = []
    for i, (shares, blk) in enumerate(histories):
        blk = BlockRecord(i, f"{i:064x}", blk.reward_sats, blk.network_difficulty, blk.found_at,
                          blk.finder)
        allocs.append(allocate(blk, shares, fees))
    chain: dict[str, ChainStatus] = {}
    ledger: list[LedgerEntry] = []
    live: set[int] = set()  # the model: which blocks are credited now
    for index, confirmations, main in evs:
        if index >= len(allocs):
            continue
        h = allocs[index].block.block_hash
        chain[h] = ChainStatus(h, main, confirmations)
        new = block_entries(allocs, chain, ledger, maturity)
        ledger += new
        assert block_entries(allocs, chain, ledger, maturity) == ()  # idempotent
        if not main:
            live.discard(index)
        elif confirmations >= maturity:
            live.add(index)
        expected: dict[str, int] = {}
        for i in live:
            for e in credit_entries(allocs[i]):
                expected[e.account] = expected.get(e.account, 0) + e.amount_sats
        assert {k: v for k, v in balances(ledger).items() if v} == \
            {k: v for k, v in expected.items() if v}
        assert sum(balances(ledger).values()) == sum(allocs[i].block.reward_sats for i in live)
    assert len({e.entry_id for e in ledger}) == len(ledger)  # ids unique: append-only keys
