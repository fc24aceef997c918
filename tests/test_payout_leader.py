"""Scale-out (issue 12): exactly one payout/maturity leader among instances sharing a database.

The lease (``poolserver/payout_leader.py``) on real SQLite and PostgreSQL with short TTLs: one
holder at a time, a lapsed lease taken over with a new epoch, the new leader ticking at once;
the fence: a leader that lost its lease stores no batch and sends nothing, and a batch a dead
leader marked and sent is reconciled by the successor through the wallet, never sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from payouts.ledger import EntryKind, LedgerEntry
from payouts.payments import LeadershipLost, PaymentStatus, planned_batch, submit
from payouts.payments import PaymentOutput as Output
from poolserver.bitcoin.wallet import EmbeddedWallet
from poolserver.config import ConfigError
from poolserver.metrics import PoolCollector, Sources
from poolserver.payout_leader import FencedOutbox, PayoutLeader, leader_from_config
from poolserver.payout_service import PayoutService
from poolserver.storage.models import Payment
from poolserver.storage.repository import Ledger, SqlPaymentOutbox
from stratum.stats import StratumStats
from tests.payout_support import ADDR, config, seed_register, utcnow
from tests.test_payout_service import funded_chain

TTL = 0.8  # short leases: the lapses below are real time


def leader(engine: Any, holder: str, ttl: float = TTL) -> PayoutLeader:
    return PayoutLeader(engine, ttl, ttl / 4, holder=holder)


async def lapse(ttl: float = TTL) -> None:
    await asyncio.sleep(ttl + 0.2)


async def credit(engine: Any, **amounts: int) -> None:
    await Ledger(engine).append([
        LedgerEntry(f"credit:x:0:{m}", EntryKind.CREDIT, m, sats, block_hash="x")
        for m, sats in amounts.items()])  # fmt: skip


async def test_one_holder_then_takeover_with_a_new_epoch(engine):
    a, b = leader(engine, "host-a:1"), leader(engine, "host-b:2")
    assert await a.try_acquire() and a.stats.epoch == 1 and a.is_leader()
    assert not await b.try_acquire() and not b.is_leader()
    assert await a.try_acquire()  # renewal keeps it
    assert not await b.try_acquire()
    await lapse()  # a stops renewing (killed, hung, cut off)
    assert not a.is_leader()  # by its own clock a no longer leads either
    assert await b.try_acquire() and b.stats.epoch == 2 and b.stats.takeovers == 1
    assert not await a.try_acquire()  # a is back: b holds a live lease
    assert a.stats.losses == 1 and not a.stats.leader
    assert (await b.holder_of())[:2] == ("host-b:2", 2)  # type: ignore[index]
    await b.release()  # a clean stop hands over at once (no TTL wait)
    assert await a.try_acquire() and a.stats.epoch == 3 and a.stats.takeovers == 1


async def test_fence_refuses_a_leader_that_lost_its_lease(engine):
    a, b = leader(engine, "a"), leader(engine, "b")
    assert await a.try_acquire()
    async with engine.begin() as conn:
        assert await a.fence(conn) == 1
    await lapse()
    assert await b.try_acquire()
    with pytest.raises(LeadershipLost):
        async with engine.begin() as conn:
            await a.fence(conn)
    assert a.stats.losses == 1


async def test_stale_leader_stores_no_batch_and_sends_nothing(engine, db_url, tmp_path):
    """a lost the lease while it believed it led (paused past the TTL): its payment run stops
    at the fence with nothing stored or sent; b, the new leader, pays everyone once."""
    await seed_register(engine)
    await credit(engine, alice=500_000, bob=700_000)
    chain = funded_chain()
    wallet = EmbeddedWallet(chain, tmp_path / "wallet.jsonl")
    a, b = leader(engine, "a"), leader(engine, "b")
    assert await a.try_acquire()
    svc_a = PayoutService(engine, config(tmp_path, db_url), chain, wallet, leader=a)
    svc_b = PayoutService(engine, config(tmp_path, db_url), chain, wallet, leader=b)
    assert not (await svc_b.tick()).locked  # b does not lead: does nothing
    await lapse()
    assert await b.try_acquire()
    a._valid_until = float("inf")  # a's view: "still leading" (it was paused, nothing told it)
    report = await svc_a.tick()
    assert any("leadership lost" in e for e in report.errors), report.summary()
    assert wallet.recorded() == [] and await SqlPaymentOutbox(engine).all_batches() == []
    assert not svc_a.stats.leader and a.stats.losses == 1
    report = await svc_b.tick()
    assert report.batches_planned == 1 and not report.errors, report.summary()
    (sent,) = wallet.recorded()
    assert sent.outputs == {ADDR["alice"]: 500_000, ADDR["bob"]: 700_000}
    async with engine.connect() as conn:
        assert (await conn.execute(select(Payment.sending_epoch))).scalars().all() == [2]


async def test_batch_sent_by_a_dead_leader_is_reconciled_not_resent(engine, db_url, tmp_path):
    """a stores a batch, marks it sending (fenced, epoch 1) and sends it, then dies before the
    outbox learns the txid; b takes over and finds the transaction by its comment."""
    await seed_register(engine)
    await credit(engine, alice=500_000)
    chain = funded_chain()
    wallet = EmbeddedWallet(chain, tmp_path / "wallet.jsonl")
    a, b = leader(engine, "a"), leader(engine, "b")
    assert await a.try_acquire()
    outbox_a = FencedOutbox(engine, lambda at: {}, a)
    planned = planned_batch((Output("alice", ADDR["alice"], 500_000),), utcnow(), "pay-dead")
    await outbox_a.add_batch(planned.batch, planned.debits)
    await submit(planned.batch, wallet, outbox_a.mark_sending)  # sent; the txid never stored
    await lapse()
    assert await b.try_acquire()
    svc_b = PayoutService(engine, config(tmp_path, db_url), chain, wallet, leader=b)
    report = await svc_b.tick()
    assert report.batches_planned == 0 and not report.errors, report.summary()
    assert Counter(r.comment for r in wallet.recorded()) == {"qazpool payout pay-dead": 1}
    (batch,) = await SqlPaymentOutbox(engine).all_batches()
    assert batch.status is PaymentStatus.BROADCAST and batch.txid == wallet.recorded()[0].txid
    assert (await SqlPaymentOutbox(engine).sending_epochs()) == {batch.comment: 1}
    assert (await Ledger(engine).balances())["alice"] == 0


async def test_new_leader_ticks_at_once_and_metrics_say_who_leads(engine, db_url, tmp_path):
    """The payout tick is an hour away; the follower still pays within a second or two of the
    leader's lease lapsing, because taking over wakes its payout service."""
    await seed_register(engine)
    await credit(engine, alice=500_000)
    chain = funded_chain()
    wallet = EmbeddedWallet(chain, tmp_path / "wallet.jsonl")
    a = leader(engine, "a")
    assert await a.try_acquire()  # a leads, then "dies": it never renews
    b = leader(engine, "b")
    svc = PayoutService(engine, config(tmp_path, db_url, tick_interval_s=3600.0), chain, wallet,
                        leader=b)  # fmt: skip
    svc.start()
    try:
        for _ in range(100):
            if wallet.recorded():
                break
            await asyncio.sleep(0.05)
        assert len(wallet.recorded()) == 1 and b.stats.takeovers == 1
        families = {m.name: m for m in PoolCollector(
            Sources(StratumStats(), payouts=svc.stats)).collect()}  # fmt: skip
        assert families["qazpool_payout_leader"].samples[0].value == 1
        assert families["qazpool_payout_leader_takeovers"].samples[0].value == 1
        assert families["qazpool_payout_leader_epoch"].samples[0].value == 2
    finally:
        await svc.stop()
    assert not b.stats.leader  # stopped: released
    families = {m.name: m for m in PoolCollector(
        Sources(StratumStats(), payouts=svc.stats)).collect()}  # fmt: skip
    assert families["qazpool_payout_leader"].samples[0].value == 0


def test_leader_options_are_checked(tmp_path):
    cfg = config(tmp_path, "sqlite+aiosqlite:///x", leader_ttl_s=5.0, leader_retry_s=5.0)
    with pytest.raises(ConfigError, match=r"payouts\.leader_retry_s"):
        leader_from_config(None, cfg)  # type: ignore[arg-type]
    cfg = config(tmp_path, "sqlite+aiosqlite:///x", leader_ttl_s=0.0)
    with pytest.raises(ConfigError, match=r"payouts\.leader_ttl_s"):
        leader_from_config(None, cfg)  # type: ignore[arg-type]
