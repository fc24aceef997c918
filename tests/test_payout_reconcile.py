"""Proof that the ledger equals the wallet: a full embedded-chain run (shares through the
journal, blocks found through the submitter, maturity, payments in several batches through the
coin-tracking embedded wallet) after which, and at every tick of which, ``reconcile`` reports
zero difference, on SQLite and PostgreSQL, with either fee policy; also mid-payment states
(a batch planned but not sent, a batch sent whose reply was lost)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from payouts.payments import PaymentStatus
from payouts.types import POOL_ACCOUNT
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.wallet import EmbeddedWallet
from poolserver.payout_service import PayoutService
from poolserver.storage.repository import Ledger
from tests.payout_support import (
    ADDR,
    OTHER_MINER,
    config,
    durable_store,
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


class FlakyWallet(EmbeddedWallet):
    """The embedded wallet with a node that goes away: ``lose_reply`` sends and then loses the
    reply; ``down`` fails the comment lookup before anything is sent."""

    lose_reply = False
    down = False

    async def find_by_comment(self, comment: str) -> str | None:
        if self.down:
            self.down = False
            raise ConnectionError("wallet node unreachable")
        return await super().find_by_comment(comment)

    async def send_many(self, outputs: Any, comment: str, subtract_fee: bool = False) -> str:
        txid = await super().send_many(outputs, comment, subtract_fee)
        if self.lose_reply:
            self.lose_reply = False
            raise ConnectionError("reply lost after the send")
        return txid


async def _zero(service: PayoutService) -> Any:
    result = await service.reconcile()
    assert result.difference_sats == 0, "\n".join(f"{k}\t{v}" for k, v in result.lines())
    return result


@pytest.mark.parametrize("fee_policy", ["pool", "miners"])
async def test_full_run_reconciles_to_zero_at_every_tick(engine, db_url, tmp_path, fee_policy):
    await seed_register(engine)
    await journal_shares(engine, tmp_path / "spool", share_plan(utcnow() - timedelta(minutes=10)))
    chain = EmbeddedChain("regtest")
    store = durable_store(engine, tmp_path)
    wallet = FlakyWallet(chain, tmp_path / "wallet.jsonl", fee_rate_sat_vb=5)
    service = PayoutService(
        engine, config(tmp_path, db_url, fee_policy=fee_policy, max_outputs_per_batch=1,
                       min_payout_sats=1000),
        chain, wallet, found_store=store, clock=Clock())  # fmt: skip
    # nothing yet: zero on both sides
    assert (await _zero(service)).wallet_sats == 0
    found = [await find_block(chain, store, "alice")]
    result = await _zero(service)  # found, not allocated: all of it immature
    assert result.immature_sats == result.wallet_sats > 0
    await service.tick()
    await _zero(service)
    for step in range(40):  # blocks by the network, another found block, ticks throughout
        chain.generatetoaddress(5, OTHER_MINER)
        if step == 10:
            found.append(await find_block(chain, store, "bob"))
        report = await service.tick()
        assert not report.errors, report.summary()
        await _zero(service)
    balances = await Ledger(engine).balances()
    assert all(v == 0 for k, v in balances.items() if k != POOL_ACCOUNT), balances
    batches = await service.outbox.all_batches()
    paid = [b for b in batches if b.status is not PaymentStatus.FAILED]
    assert len(paid) >= 4 and len(wallet.recorded()) == len(paid)  # 2 blocks x 2 miners
    fees = sum(r.fee for r in wallet.recorded())
    assert fees == sum(b.fee_sats or 0 for b in paid) > 0
    if fee_policy == "pool":
        assert balances[POOL_ACCOUNT] == (await _zero(service)).wallet_sats
        assert (await _zero(service)).ledger_by_kind["tx_fee"] == -fees
    else:
        for batch, record in zip(paid, wallet.recorded(), strict=True):
            assert sum(o.fee_sats for o in batch.outputs) == batch.fee_sats == record.fee
            for o in batch.outputs:
                assert record.outputs[o.address] == o.amount_sats - o.fee_sats
        assert (await _zero(service)).ledger_by_kind["tx_fee"] == 0
    assert len(found) == 2


async def test_in_flight_batches_reconcile(engine, db_url, tmp_path):
    """A batch planned but not sent (the node went away) and a batch sent whose reply was lost:
    the books still equal the wallet, through the unsent / unbooked-fee terms."""
    await seed_register(engine)
    await journal_shares(engine, tmp_path / "spool", share_plan(utcnow() - timedelta(minutes=10)))
    chain = EmbeddedChain("regtest")
    store = durable_store(engine, tmp_path)
    await find_block(chain, store, "alice")
    wallet = FlakyWallet(chain, tmp_path / "wallet.jsonl")
    service = PayoutService(engine, config(tmp_path, db_url, max_outputs_per_batch=1),
                            chain, wallet, found_store=store, clock=Clock())  # fmt: skip
    await service.tick()
    chain.generatetoaddress(100, OTHER_MINER)  # credited (100) ... and spendable (101)
    wallet.down = True
    with pytest.raises(ConnectionError):
        await service.tick()
    result = await _zero(service)
    assert result.unsent_sats > 0 and result.unbooked_fee_sats == 0
    wallet.lose_reply = True
    with pytest.raises(ConnectionError):
        await service.tick()  # the first batch is sent now, its reply lost
    result = await _zero(service)
    assert result.unbooked_fee_sats > 0
    report = await service.tick()  # reconciled by comment, fee booked; the second batch sent
    assert not report.errors, report.summary()
    result = await _zero(service)
    assert result.unsent_sats == result.unbooked_fee_sats == 0
    assert len(wallet.recorded()) == 2
    assert {o for r in wallet.recorded() for o in r.outputs} == {ADDR["alice"], ADDR["bob"]}
