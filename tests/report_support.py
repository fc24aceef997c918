"""A ledger with known distributions for the income report tests (issue 13), built through the
real code: register (RegisterRepository), PPLNS allocations (payouts.allocate, frozen by
Allocations), ledger entries (payouts.ledger, Ledger.append), payments (SqlPaymentOutbox).
Only the ledger rows' recording times are then set to the scenario's times (the payout service
stamps them with the clock).

October 2026 (Kazakhstan time, UTC+5):
* B1 (h 100): alice + bob, credited 10-05 15:00; alice paid 10-25 (pool pays a 1 000 sat fee).
* B5 (h 105): dana + bob, credited 10-08; orphaned, reversed 11-03 (a November adjustment).
* B2 (h 110): dana's share falls in her suspension (10-10 .. 11-10) and earns nothing; credited
  10-15 17:00, after alice's payout address changed (10-14).
* B3 (h 120): underfilled window with pool_remainder: alice gets half, the pool the rest;
  credited 10-31 18:59:59 UTC = 23:59:59 in Astana (October).
* B4 (h 130): credited 10-31 19:00:00 UTC = 11-01 00:00 in Astana (November).
* bob's B1 credit is paid late, on 11-05 (November).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from payouts.allocation import Allocation, allocate
from payouts.fees import FeePolicy, FeeRate, FeeSchedule
from payouts.ledger import ChainStatus, EntryKind, LedgerEntry, block_entries, credit_entries
from payouts.payments import PaymentBatch, PaymentOutput, PaymentStatus
from payouts.pplns import PplnsParams, UnderfillPolicy
from payouts.types import POOL_ACCOUNT, BlockRecord, ShareRecord, SuspensionInterval, Suspensions
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.cli import main
from poolserver.register.repository import RegisterRepository
from poolserver.storage.engine import create_engine
from poolserver.storage.models import LedgerEntry as LedgerRow
from poolserver.storage.models import Payment
from poolserver.storage.repository import Allocations, FoundBlocks, Ledger, SqlPaymentOutbox
from reporting.model import KZ
from reporting.rates import Rate
from tests.payout_support import (
    ADDR,
    IDS,
    OTHER_MINER,
    durable_store,
    find_block,
    journal_shares,
    seed_register,
    share_plan,
    utcnow,
)

REWARD = 312_512_345
NAMES = {"alice": "«Әсем Қуат» ЖШС", "bob": "Бөбек Ғаниұлы ЖК", "dana": "«Һұнар Әлемі» ТОО"}
ALICE_NEW = "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua"
DANA_ADDR = "bcrt1qyt3hpyd3d7ufvruar9zxte5en2u3cc4cvqut6s"
SUSPENDED = (datetime(2026, 10, 10, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC))
FEES = FeePolicy(FeeSchedule((FeeRate(datetime(2026, 1, 1, tzinfo=UTC), 250),)))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rates(first: date = date(2026, 10, 1), last: date = date(2026, 11, 30)) -> list[Rate]:
    out, day = [], first
    while day <= last:
        out.append(Rate(day, Decimal("45123456.78") + (day - first).days * Decimal("1000.37"),
                        "KGD published rate"))
        day += timedelta(days=1)
    return out


def rates_csv(rows: list[Rate]) -> str:
    return "date,rate,source\n" + "".join(f"{r.day},{r.kzt_per_btc},{r.source}\n" for r in rows)


async def _block(engine: Any, height: int, found: datetime, shares: list[tuple[str, datetime]],
                 underfill: UnderfillPolicy = UnderfillPolicy.NORMALISE) -> Allocation:
    h = f"{height:064x}"
    await FoundBlocks(engine).add(block_hash=h, height=height, prevhash="00" * 32,
                                  account=shares[0][0], worker="w", job_id="j", block_hex="00",
                                  coinbase_value=REWARD, bits=0x207FFFFF, found_at=found)
    block = BlockRecord(height, h, REWARD, Fraction(1), found)
    records = [ShareRecord(i, m, m, Fraction(1), t) for i, (m, t) in enumerate(shares)]
    alloc = allocate(block, records, FEES, params=PplnsParams(Fraction(2), underfill),
                     suspensions=Suspensions([SuspensionInterval("dana", *SUSPENDED)]))
    return await Allocations(engine).freeze(alloc)


async def _stamp(engine: Any, keys: list[str], at: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(LedgerRow).where(LedgerRow.entry_key.in_(keys))
                           .values(created_at=at))


async def _append(engine: Any, entries: tuple[LedgerEntry, ...] | list[LedgerEntry],
                  at: datetime) -> None:
    await Ledger(engine).append(list(entries))
    await _stamp(engine, [e.entry_id for e in entries], at)


async def _pay(engine: Any, batch_id: str, miner: str, address: str, amount: int,
               at: datetime, txid: str, fee: int) -> None:
    batch = PaymentBatch(batch_id, f"qazpool payout {batch_id}", at,
                         (PaymentOutput(miner, address, amount),),
                         status=PaymentStatus.BROADCAST, txid=txid, fee_sats=fee)
    debit = LedgerEntry(f"payment:{batch_id}:{miner}", EntryKind.PAYMENT, miner, -amount,
                        batch_id=batch_id)
    await SqlPaymentOutbox(engine).add_batch(batch, [debit])
    fee_entry = LedgerEntry(f"tx_fee:{batch_id}", EntryKind.TX_FEE, POOL_ACCOUNT, -fee,
                            batch_id=batch_id)
    await Ledger(engine).append([fee_entry])
    await _stamp(engine, [debit.entry_id, fee_entry.entry_id], at)
    async with engine.begin() as conn:
        await conn.execute(sa.update(Payment).where(Payment.comment == batch.comment)
                           .values(updated_at=at))


async def build_ledger(engine: Any) -> dict[str, Allocation]:
    now = [utc(2026, 9, 1)]  # the register's clock: changes are entered when they happen
    reg = RegisterRepository(engine, network="regtest", clock=lambda: now[0])
    for i, name in enumerate(("alice", "bob", "dana")):
        await reg.add_miner("op", name, NAMES[name], IDS[i])
        await reg.add_license("op", name, f"KZ-{name.upper()}-1", date(2025, 3, 1), "I")
    await reg.set_payout_address("op", "alice", ADDR["alice"], utc(2026, 9, 1))
    await reg.set_payout_address("op", "bob", ADDR["bob"], utc(2026, 9, 1))
    await reg.set_payout_address("op", "dana", DANA_ADDR, utc(2026, 9, 1))
    now[0] = SUSPENDED[0]
    await reg.suspend("op", "KZ-DANA-1", SUSPENDED[0], "authorized body's order",
                      ends_at=SUSPENDED[1])
    now[0] = utc(2026, 10, 14)
    await reg.set_payout_address("op", "alice", ALICE_NEW, utc(2026, 10, 14))

    b1 = await _block(engine, 100, utc(2026, 9, 28), [("alice", utc(2026, 9, 27)),
                                                      ("bob", utc(2026, 9, 27, 1))])
    b5 = await _block(engine, 105, utc(2026, 10, 1), [("dana", utc(2026, 9, 30)),
                                                      ("bob", utc(2026, 9, 30, 1))])
    b2 = await _block(engine, 110, utc(2026, 10, 12), [("alice", utc(2026, 10, 11)),
                                                       ("bob", utc(2026, 10, 11, 1)),
                                                       ("dana", utc(2026, 10, 11, 2))])
    b3 = await _block(engine, 120, utc(2026, 10, 20), [("alice", utc(2026, 10, 19))],
                      UnderfillPolicy.POOL_REMAINDER)
    b4 = await _block(engine, 130, utc(2026, 10, 25), [("alice", utc(2026, 10, 24)),
                                                       ("bob", utc(2026, 10, 24, 1))])
    await _append(engine, credit_entries(b1), utc(2026, 10, 5, 10))
    await _append(engine, credit_entries(b5), utc(2026, 10, 8, 10))
    await _append(engine, credit_entries(b2), utc(2026, 10, 15, 12))
    await _append(engine, credit_entries(b3), utc(2026, 10, 31, 18, 59, 59))
    await _append(engine, credit_entries(b4), utc(2026, 10, 31, 19))
    alice_b1 = next(ln.net_sats for ln in b1.lines if ln.miner_id == "alice")
    bob_b1 = next(ln.net_sats for ln in b1.lines if ln.miner_id == "bob")
    await _pay(engine, "pay-1", "alice", ADDR["alice"], alice_b1, utc(2026, 10, 25, 6),
               "a1" * 32, 1_000)
    reversal = block_entries([b5], {b5.block.block_hash: ChainStatus(b5.block.block_hash,
                                                                      False, 0)},
                             await Ledger(engine).entries())
    await _append(engine, reversal, utc(2026, 11, 3, 8))
    await _pay(engine, "pay-2", "bob", ADDR["bob"], bob_b1, utc(2026, 11, 5, 6), "b2" * 32,
               1_200)
    return {"b1": b1, "b2": b2, "b3": b3, "b4": b4, "b5": b5}


def paid_pool_ready_for_reports(db_url: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """A pool config on ``db_url`` whose books hold real distributions: shares journaled, a block
    the embedded chain mined, allocated, credited and paid by ``payouts run-once``, the day's
    BTC/KZT rates imported and a report key made. Returns the CLI's ``--config`` arguments and
    the report period (yesterday..tomorrow in Kazakhstan time: midnight-proof)."""
    data = tmp_path / "data"
    cfg = tmp_path / "pool.toml"
    cfg.write_text(
        f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{db_url}"\n'
        '[chain]\nbits = "207fffff"\n'
        "[payouts]\nallocation_delay_s = 0.0\nmaturity_confirmations = 1\n"
    )
    base = ["--config", str(cfg)]

    async def setup() -> None:
        engine = create_engine(db_url)
        try:
            await seed_register(engine)
            await journal_shares(
                engine, tmp_path / "spool", share_plan(utcnow() - timedelta(minutes=10))
            )
            chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
            await find_block(chain, durable_store(engine, data), "alice")
            chain.generatetoaddress(100, OTHER_MINER)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    assert main([*base, "payouts", "run-once"]) == 0  # allocate, credit, pay
    today = datetime.now(UTC).astimezone(KZ).date()
    days = [today - timedelta(days=1), today, today + timedelta(days=1)]
    rates = tmp_path / "rates.csv"
    rates.write_text("date,rate,source\n" + "".join(f"{d},45000000.00,KGD\n" for d in days))
    assert main([*base, "rates", "import", str(rates)]) == 0
    assert main([*base, "report", "keygen"]) == 0
    return base, ["--from", str(days[0]), "--to", str(days[2])]
