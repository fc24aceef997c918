"""Repositories on SQLite and PostgreSQL, wired to the pure payouts functions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from sqlalchemy.exc import IntegrityError

from payouts.allocation import allocate
from payouts.fees import FeePolicy, FeeSchedule
from payouts.ledger import EntryKind, LedgerEntry, balances, credit_entries
from payouts.payments import PaymentStatus, PayoutParams, plan_payments, record_broadcast
from payouts.pplns import compute_window
from payouts.types import BlockRecord, ShareRecord
from poolserver.storage.journal import ShareJournal
from poolserver.storage.repository import (
    AllocationFrozen,
    Allocations,
    FoundBlocks,
    Ledger,
    ShareHistory,
    SqlPaymentOutbox,
)
from poolserver.storage.retention import roll_up
from tests.test_storage_journal import make_share

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
HASH = "00" * 31 + "ab"


def block(found_at: datetime, reward: int = 312_500_000, ndiff: int = 40) -> BlockRecord:
    return BlockRecord(
        height=100,
        block_hash=HASH,
        reward_sats=reward,
        network_difficulty=Fraction(ndiff),
        found_at=found_at,
        finder="m1",
    )


def three_miners_shares() -> list[ShareRecord]:
    """50 shares of difficulty 7, one a minute from T0, from m0, m1, m2 in turn."""
    return [
        ShareRecord(
            seq=i,
            miner_id=f"m{i % 3}",
            account="x",
            difficulty=Fraction(7),
            time=T0 + timedelta(minutes=i),
        )
        for i in range(50)
    ]


async def store_shares(engine, tmp_path, shares) -> None:
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1)
    await journal.start()
    await asyncio.gather(*(journal.put(s) for s in shares))
    await journal.close()


async def add_block(engine, found_at) -> int:
    return await FoundBlocks(engine).add(
        block_hash=HASH,
        height=100,
        prevhash="11" * 32,
        account="m1",
        worker="rig",
        job_id="1f",
        block_hex="00",
        coinbase_value=312_500_000,
        bits=0x207FFFFF,
        found_at=found_at,
    )


async def test_pplns_over_stored_history_equals_pplns_over_the_original_shares(engine, tmp_path):
    """Raw + rolled-up history from the database gives the same window as the raw shares did."""
    diffs = [1.0, 0.001, 3.0, 0.5]
    shares = [
        make_share(
            i,
            account=f"m{i % 4}",
            difficulty=diffs[i % 4],
            created_at=T0 + timedelta(minutes=5 * i),
        )
        for i in range(120)
    ]
    await store_shares(engine, tmp_path, shares)
    found = T0 + timedelta(minutes=5 * 119, seconds=1)
    original = [
        ShareRecord(
            seq=i,
            miner_id=s.account,
            account=s.account,
            difficulty=Fraction(s.difficulty),
            time=s.created_at,
        )
        for i, s in enumerate(shares)
    ]
    history = ShareHistory(engine)
    for ndiff in (5, 40, 10_000):  # edge in raw shares, edge in rollups, underfilled
        b = block(found, ndiff=ndiff)
        want = compute_window(b, original)
        await roll_up(engine, T0 + timedelta(hours=6))
        raw, rollups = await history.pplns_inputs(found, 2 * b.network_difficulty)
        got = compute_window(b, raw, rollups)
        assert (got.target, got.filled, got.outcome) == (want.target, want.filled, want.outcome)
        if ndiff != 40:  # the edge inside a rolled-up hour is proportional, by definition
            assert got.weights == want.weights
        assert sum(w for _, w in got.weights) == got.filled


async def test_found_blocks_and_frozen_allocation(engine):
    found = T0 + timedelta(hours=1)
    bid = await add_block(engine, found)
    assert await add_block(engine, found) == bid  # idempotent
    blocks = FoundBlocks(engine)
    await blocks.set_status(HASH, "accepted", verdict="")
    assert (await blocks.get(HASH)).status == "accepted"
    with pytest.raises(KeyError, match="not stored"):
        await blocks.set_status("ff" * 32, "accepted")

    shares = three_miners_shares()
    fees = FeePolicy(pool=FeeSchedule.flat(150, T0 - timedelta(days=1)))
    alloc = allocate(block(found), shares, fees)
    allocations = Allocations(engine)
    stored = await allocations.freeze(alloc)
    assert stored.to_bytes() == alloc.to_bytes()
    assert await allocations.freeze(alloc) == alloc  # same bytes: no-op
    other = allocate(block(found), shares[:10], fees)
    with pytest.raises(AllocationFrozen, match="already frozen"):
        await allocations.freeze(other)
    again = await allocations.get(HASH)
    assert again is not None and again.to_bytes() == alloc.to_bytes()


async def test_ledger_is_append_only_and_idempotent(engine):
    found = T0 + timedelta(hours=1)
    await add_block(engine, found)
    shares = three_miners_shares()
    alloc = allocate(block(found), shares, FeePolicy(pool=FeeSchedule.flat(100, T0)))
    ledger = Ledger(engine)
    entries = credit_entries(alloc)
    await ledger.append(entries)
    await ledger.append(entries)  # a retried append stores nothing twice
    assert await ledger.entries() == list(entries)
    assert await ledger.balances() == balances(entries)
    assert sum((await ledger.balances()).values()) == alloc.block.reward_sats


async def test_ledger_block_entries_reads_only_the_asked_blocks(engine):
    """The payout service reads the credits/reversals of the blocks it checks, by the stored
    block's id, not the whole ledger."""
    found = T0 + timedelta(hours=1)
    await add_block(engine, found)
    other = "00" * 31 + "cd"
    await FoundBlocks(engine).add(block_hash=other, height=101, prevhash="11" * 32,
                                  account="m1", worker="rig", job_id="20", block_hex="00",
                                  coinbase_value=1, bits=0x207FFFFF, found_at=found)
    ledger = Ledger(engine)
    mine = [LedgerEntry(f"credit:{HASH}:0:m1", EntryKind.CREDIT, "m1", 10, block_hash=HASH),
            LedgerEntry(f"reversal:{HASH}:0:m1", EntryKind.REVERSAL, "m1", -10,
                        block_hash=HASH)]
    theirs = [LedgerEntry(f"credit:{other}:0:m1", EntryKind.CREDIT, "m1", 5, block_hash=other),
              LedgerEntry("payment:b1:m1", EntryKind.PAYMENT, "m1", -3, batch_id="b1")]
    await ledger.append([mine[0], *theirs])
    await ledger.append([mine[1]])
    assert await ledger.block_entries([HASH]) == mine
    assert await ledger.block_entries([HASH, other]) == [mine[0], theirs[0], mine[1]]
    assert await ledger.block_entries([]) == []
    assert await ledger.balances() == {"m1": 2}


async def test_payment_outbox_round_trip(engine):
    found = T0 + timedelta(hours=1)
    await add_block(engine, found)
    shares = three_miners_shares()
    alloc = allocate(block(found), shares, FeePolicy(pool=FeeSchedule.flat(100, T0)))
    ledger = Ledger(engine)
    await ledger.append(credit_entries(alloc))
    addresses = {"m0": "bcrt1qaddr0", "m1": "bcrt1qaddr1", "m2": "bcrt1qaddr2"}
    outbox = SqlPaymentOutbox(engine, addresses=lambda at: addresses)
    plan = plan_payments(
        await outbox.balances(), await outbox.payout_addresses(found), PayoutParams(), found
    )
    (planned,) = plan.batches
    await outbox.add_batch(planned.batch, planned.debits)
    assert await outbox.unfinished() == [planned.batch]
    bal = await outbox.balances()
    assert all(bal.get(m, 0) == 0 for m in addresses)  # debited with the batch, atomically
    moved = record_broadcast(planned.batch, "cd" * 32)
    await outbox.update_batch(moved.batch, moved.entries)
    (b,) = await outbox.unfinished()
    assert b.status is PaymentStatus.BROADCAST and b.txid == "cd" * 32
    with pytest.raises(IntegrityError):  # unique comment: the same batch cannot be added twice
        await outbox.add_batch(planned.batch, ())
