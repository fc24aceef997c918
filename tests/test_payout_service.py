"""The payout service end to end on real SQLite and PostgreSQL: shares through the journal, a
block found through the submitter on the embedded chain, allocation frozen (recomputing gives
the same bytes), the chain advanced to maturity, ledger credit, payment through the embedded
wallet, confirmation; an orphaned block reversed; register fees and suspensions applied."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import select

from payouts.ledger import EntryKind, LedgerEntry
from payouts.payments import (
    DistributionStatus,
    PaymentRejected,
    PaymentStatus,
    WalletUnderfunded,
    distribution_rows,
)
from payouts.types import POOL_ACCOUNT, difficulty_from_bits
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.wallet import DEFAULT_POOL_ADDRESS, EmbeddedWallet
from poolserver.payout_service import PayoutService, payout_lock
from poolserver.storage.models import FoundBlock
from poolserver.storage.repository import Allocations, Ledger
from tests.payout_support import (
    ADDR,
    OTHER_MINER,
    config,
    durable_store,
    expected_weights,
    find_block,
    journal_shares,
    seed_register,
    share_plan,
    utcnow,
)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow() + timedelta(minutes=5)

    def __call__(self) -> Any:
        return self.now


async def _found_row(engine: Any, block_hash: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(FoundBlock.__table__)
                                   .where(FoundBlock.block_hash == block_hash))).one()


async def test_block_to_confirmed_payment(engine, db_url, tmp_path):
    await seed_register(engine)
    plan = share_plan(utcnow() - timedelta(minutes=10))
    await journal_shares(engine, tmp_path / "spool", plan)
    chain = EmbeddedChain("regtest")
    store = durable_store(engine, tmp_path)
    block_hash = await find_block(chain, store, "alice")
    row = await _found_row(engine, block_hash)
    assert row.status == "accepted" and row.data["verdicts"] == {"embedded": None}

    wallet = EmbeddedWallet(chain, tmp_path / "wallet.jsonl")
    clock = Clock()
    service = PayoutService(engine, config(tmp_path, db_url), chain, wallet, found_store=store,
                            clock=clock)

    # tick 1: allocated and frozen, nothing credited (1 confirmation)
    report = await service.tick()
    assert report.allocated == [block_hash] and report.credits == 0, report.summary()
    frozen = await Allocations(engine).get(block_hash)
    assert frozen is not None
    assert frozen.block.reward_sats == row.coinbase_value
    assert frozen.block.network_difficulty == difficulty_from_bits(0x207FFFFF)
    assert frozen.block.finder == "alice"
    # the window: k=2 x D, carol (no license) skipped, independent walk gives the same weights
    window = 2 * difficulty_from_bits(0x207FFFFF)
    want = expected_weights(plan, window, excluded={"carol"})
    got = {ln.miner_id: ln.weight for ln in frozen.lines}
    assert got == want and sum(got.values()) == window
    assert "carol" not in got
    fees = {ln.miner_id: ln.fee_bps for ln in frozen.lines}
    assert fees == {"alice": 250, "bob": 0}  # pool's dated 2.5 %, bob's own 0 %
    # recomputing from the database gives the same bytes; a second tick allocates nothing
    again = await service.compute_allocation(row)
    assert again.to_bytes() == frozen.to_bytes()
    assert (await service.tick()).allocated == []

    # maturity: 99 blocks by the rest of the network -> 100 confirmations -> credit + payment
    chain.generatetoaddress(98, OTHER_MINER)
    report = await service.tick()
    assert report.credits == 0  # 99 confirmations
    chain.generatetoaddress(1, OTHER_MINER)
    report = await service.tick()
    # credited at 100 confirmations, but the wallet spends a coinbase only at depth 101: the
    # payment waits (the old code planned it now and the wallet refused it: paused for 1 h)
    assert report.credits == 3 and report.batches_planned == 0, report.summary()
    assert not report.errors and wallet.recorded() == []
    assert service.stats.payments_waiting_for_funds == 2  # alice and bob
    assert service.stats.wallet_spendable_sats == 0
    chain.generatetoaddress(1, OTHER_MINER)
    report = await service.tick()
    assert report.batches_planned == 1 and not report.errors, report.summary()
    nets = {ln.miner_id: ln.net_sats for ln in frozen.lines}
    (sent,) = wallet.recorded()
    assert sent.outputs == {ADDR["alice"]: nets["alice"], ADDR["bob"]: nets["bob"]}
    balances = await Ledger(engine).balances()
    assert sent.fee > 0  # the pool pays the network fee (default policy): booked on @pool
    assert balances == {"alice": 0, "bob": 0, POOL_ACCOUNT: frozen.pool_total_sats - sent.fee}
    assert sum(nets.values()) + frozen.pool_total_sats == row.coinbase_value
    assert (await _found_row(engine, block_hash)).confirmations == 101
    # the ledger equals the wallet: what is left in it is exactly the pool's balance
    assert (await wallet.balances()).total == balances[POOL_ACCOUNT]

    # the payment confirms after the next block
    batches = await service.outbox.all_batches()
    assert [b.status for b in batches] == [PaymentStatus.BROADCAST]
    chain.generatetoaddress(1, OTHER_MINER)
    await service.tick()
    (batch,) = await service.outbox.all_batches()
    assert batch.status is PaymentStatus.CONFIRMED and batch.txid == sent.txid
    rows = distribution_rows(await Allocations(engine).all(), await Ledger(engine).entries(),
                             [batch])
    assert {(r.miner_id, r.status, r.address, r.txids) for r in rows} == {
        ("alice", DistributionStatus.CONFIRMED, ADDR["alice"], (sent.txid,)),
        ("bob", DistributionStatus.CONFIRMED, ADDR["bob"], (sent.txid,)),
    }
    # nothing more to do: no second payment, no new entries
    n_entries = len(await Ledger(engine).entries())
    report = await service.tick()
    assert report.batches_planned == 0 and len(wallet.recorded()) == 1
    assert len(await Ledger(engine).entries()) == n_entries


class ScriptedChain:
    """getblock as bitcoind answers it (``confirmations`` -1 once the block left the main
    chain). The embedded chain cannot reorganise, so the orphan is scripted here."""

    name = "scripted"

    def __init__(self) -> None:
        self.confirmations: dict[str, int] = {}

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        assert method == "getblock"
        return {"hash": params[0], "confirmations": self.confirmations[params[0]]}


async def test_orphaned_block_is_reversed(engine, db_url, tmp_path):
    await seed_register(engine)
    await journal_shares(engine, tmp_path / "spool", share_plan(utcnow() - timedelta(minutes=9)))
    chain = EmbeddedChain("regtest")
    store = durable_store(engine, tmp_path)
    block_hash = await find_block(chain, store, "bob")
    scripted = ScriptedChain()
    service = PayoutService(engine, config(tmp_path, db_url, maturity_confirmations=3),
                            scripted, None, clock=Clock())
    scripted.confirmations[block_hash] = 2
    assert (await service.tick()).credits == 0
    scripted.confirmations[block_hash] = 3
    assert (await service.tick()).credits == 3
    credited = await Ledger(engine).balances()
    assert credited["alice"] > 0 and credited["bob"] > 0
    scripted.confirmations[block_hash] = -1  # reorg: the block left the main chain
    report = await service.tick()
    assert report.reversals == 3
    assert await Ledger(engine).balances() == {"alice": 0, "bob": 0, POOL_ACCOUNT: 0}
    assert (await _found_row(engine, block_hash)).status == "orphaned"
    kinds = [e.kind for e in await Ledger(engine).entries()]
    assert kinds.count(EntryKind.CREDIT) == 3 and kinds.count(EntryKind.REVERSAL) == 3
    assert (await service.tick()).reversals == 0  # idempotent
    # it comes back and matures again: credited under the next generation
    scripted.confirmations[block_hash] = 5
    assert (await service.tick()).credits == 3
    assert await Ledger(engine).balances() == credited


async def test_allocation_waits_for_delay_and_skips_rejected(engine, db_url, tmp_path):
    await seed_register(engine)
    chain = EmbeddedChain("regtest")
    store = durable_store(engine, tmp_path)
    block_hash = await find_block(chain, store, "alice")
    clock = Clock()
    clock.now = utcnow()
    service = PayoutService(engine, config(tmp_path, db_url, allocation_delay_s=120.0), chain,
                            None, clock=clock)
    assert (await service.tick()).allocated == []
    clock.now += timedelta(seconds=121)
    report = await service.tick()
    assert report.allocated == [block_hash]
    # no shares at all: the whole reward goes to the pool (outcome empty), nothing crashes
    frozen = await Allocations(engine).get(block_hash)
    assert frozen is not None and frozen.outcome.value == "empty"
    assert frozen.pool_remainder_sats == frozen.block.reward_sats
    assert Fraction(0) == sum((ln.weight for ln in frozen.lines), Fraction(0))


class BrokeWallet(EmbeddedWallet):
    """The embedded wallet, refusing like sendmany's ``-6 Insufficient funds`` while broke
    (its coins were spent elsewhere after the balance was read)."""

    broke = True

    async def send_many(self, outputs: Any, comment: str, subtract_fee: bool = False) -> str:
        if self.broke:
            raise WalletUnderfunded("Insufficient funds (code -6)")
        return await super().send_many(outputs, comment, subtract_fee)


def funded_chain() -> EmbeddedChain:
    """One mature coinbase to the pool's address (50 BTC + fees, spendable at depth 101)."""
    chain = EmbeddedChain("regtest")
    chain.generatetoaddress(1, DEFAULT_POOL_ADDRESS)
    chain.generatetoaddress(100, OTHER_MINER)
    return chain


async def test_wallet_refusal_refunds_and_pauses_payments(engine, db_url, tmp_path):
    await seed_register(engine)
    await Ledger(engine).append([
        LedgerEntry("credit:x:0:alice", EntryKind.CREDIT, "alice", 500_000, block_hash="x")])
    chain = funded_chain()
    wallet = BrokeWallet(chain, tmp_path / "wallet.jsonl")
    clock = Clock()
    service = PayoutService(engine, config(tmp_path, db_url, payment_retry_after_s=600.0),
                            chain, wallet, clock=clock)
    report = await service.tick()
    assert report.batches_planned == 1 and "wallet refused" in report.summary()
    (failed,) = await service.outbox.all_batches()
    assert failed.status is PaymentStatus.FAILED
    assert (await Ledger(engine).balances())["alice"] == 500_000  # refunded
    wallet.broke = False
    clock.now += timedelta(seconds=300)
    report = await service.tick()
    assert report.batches_planned == 0 and report.payments_skipped.startswith("paused")
    clock.now += timedelta(seconds=301)
    report = await service.tick()
    assert report.batches_planned == 1 and len(wallet.recorded()) == 1
    assert (await Ledger(engine).balances())["alice"] == 0


async def test_only_one_process_runs_a_tick(engine, db_url, tmp_path):
    service = PayoutService(engine, config(tmp_path, db_url), EmbeddedChain("regtest"), None,
                            clock=Clock())
    async with payout_lock(engine) as held:
        assert held
        report = await service.tick()
        assert not report.locked and "another process" in report.summary()
    assert (await service.tick()).locked


async def test_allocation_waits_for_the_share_spool(engine, db_url, tmp_path):
    """Shares acked during a database outage sit in the spool until replayed; a window read
    before that could miss them, so the block is allocated only once the spool is empty."""
    from poolserver.storage.spool import Spool

    await seed_register(engine)
    chain = EmbeddedChain("regtest")
    block_hash = await find_block(chain, durable_store(engine, tmp_path), "alice")
    cfg = config(tmp_path, db_url)
    service = PayoutService(engine, cfg, chain, None, clock=Clock())
    spool = Spool(tmp_path / "data" / "spool")
    spool.append([{"uid": bytes(16), "share_hash": bytes(32), "created_at": utcnow()}])
    report = await service.tick()
    assert report.allocated == [] and "spool" in report.summary()
    spool.active.unlink()
    assert (await service.tick()).allocated == [block_hash]


class PickyWallet(EmbeddedWallet):
    """The embedded wallet refusing any transaction with an output to ``refused`` (as Bitcoin
    Core refuses a whole sendmany for one bad output; nothing is sent)."""

    refused = ADDR["bob"]

    async def send_many(self, outputs: Any, comment: str, subtract_fee: bool = False) -> str:
        if self.refused in outputs:
            raise PaymentRejected(f"Invalid amount for {self.refused} (code -3)")
        return await super().send_many(outputs, comment, subtract_fee)


async def test_one_refused_output_does_not_hold_back_the_batch(engine, db_url, tmp_path):
    """The old code failed the whole batch (alice unpaid too) and paused payments for an hour;
    now bob's output is isolated and held with the wallet's reason, alice is paid at once."""
    await seed_register(engine)
    await Ledger(engine).append([
        LedgerEntry("credit:x:0:alice", EntryKind.CREDIT, "alice", 500_000, block_hash="x"),
        LedgerEntry("credit:x:0:bob", EntryKind.CREDIT, "bob", 700_000, block_hash="x")])
    chain = funded_chain()
    wallet = PickyWallet(chain, tmp_path / "wallet.jsonl")
    service = PayoutService(engine, config(tmp_path, db_url), chain, wallet, clock=Clock())
    report = await service.tick()
    assert report.held == ["bob"] and not report.errors, report.summary()
    assert service.stats.payouts_held == 1 and service.stats.outputs_held_total == 1
    (sent,) = wallet.recorded()
    assert sent.outputs == {ADDR["alice"]: 500_000}
    balances = await Ledger(engine).balances()
    assert balances["alice"] == 0 and balances["bob"] == 700_000  # refunded, held
    holds = await service.outbox.holds()
    assert holds["bob"][0] == ADDR["bob"] and "Invalid amount" in holds["bob"][1]
    # held: not planned again (no refusal loop, no pause) while the address is the same
    report = await service.tick()
    assert report.batches_planned == 0 and not report.errors
    assert len(wallet.recorded()) == 1
    # released by the operator (say the wallet was fixed): paid
    wallet.refused = "nobody"
    assert await service.outbox.release_hold("bob") == 1
    report = await service.tick()
    assert report.batches_planned == 1 and (await Ledger(engine).balances())["bob"] == 0


async def test_min_payout_below_dust_is_a_config_error(engine, db_url, tmp_path):
    from poolserver.config import ConfigError

    with pytest.raises(ConfigError, match=r"payouts.min_payout_sats: 545 sat is below the dust"):
        PayoutService(engine, config(tmp_path, db_url, min_payout_sats=545),
                      EmbeddedChain("regtest"), None)
    with pytest.raises(ConfigError, match=r"payouts.fee_policy"):
        PayoutService(engine, config(tmp_path, db_url, fee_policy="operator"),
                      EmbeddedChain("regtest"), None)
