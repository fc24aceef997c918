"""The database side of the metrics: one read of ledger, payments, blocks, licenses and the PPLNS
window, run by ``telemetry.DbPoller`` every few seconds (never on a scrape).

Several pool instances on one database each export these figures; Prometheus' ``instance`` target
label tells them apart, and dashboards and alerts aggregate them with ``max``, never ``sum``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payouts.types import POOL_ACCOUNT
from poolserver.telemetry import DbSnapshot, expiring_counts, utcnow

# The PPLNS fill looks at most at this many newest shares (a bounded query every poll); a window
# that needs more shares than this is reported as filled once they reach it.
PPLNS_SHARE_LIMIT = 200_000
# found_blocks.status values (poolserver.bitcoin.blocks.BlockStatus + the payout service's
# "orphaned"), always exported so a dashboard shows 0 rather than no data.
FOUND_BLOCK_STATUSES = ("pending", "accepted", "inconclusive", "rejected", "orphaned")


def db_reader(
    engine: AsyncEngine,
    *,
    network: str,
    pplns_k: str,
    network_difficulty: Callable[[], float],
    clock: Callable[[], datetime] = utcnow,
) -> Callable[[], Awaitable[DbSnapshot]]:
    """The async function ``DbPoller`` calls."""
    k = Fraction(pplns_k)

    async def read() -> DbSnapshot:
        snap = DbSnapshot()
        await _money(engine, snap)
        await _licenses(engine, network, clock(), snap)
        diff = network_difficulty()
        if diff > 0:
            snap.pplns_window_difficulty = float(k * Fraction(diff))
            snap.pplns_window_work_difficulty = await recent_work(engine)
        return snap

    return read


async def _money(engine: AsyncEngine, snap: DbSnapshot) -> None:
    from poolserver.storage.models import (
        BlockAllocation,
        FoundBlock,
        LedgerEntry,
        Payment,
        PaymentOutput,
    )

    async with engine.connect() as conn:
        pool_amount = case((LedgerEntry.account == POOL_ACCOUNT, LedgerEntry.amount), else_=0)
        row = (
            await conn.execute(
                select(
                    func.coalesce(func.sum(LedgerEntry.amount), 0),
                    func.coalesce(func.sum(pool_amount), 0),
                )
            )
        ).one()
        ledger = {"mature": int(row[0]) - int(row[1]), "pool": int(row[1])}
        credited = select(LedgerEntry.block_id).where(
            LedgerEntry.kind == "credit", LedgerEntry.block_id.is_not(None)
        )
        immature = await conn.execute(
            select(func.coalesce(func.sum(BlockAllocation.reward), 0))
            .join(FoundBlock, FoundBlock.id == BlockAllocation.block_id)
            .where(BlockAllocation.block_id.not_in(credited))
            .where(FoundBlock.status.not_in(("rejected", "orphaned")))
        )
        ledger["immature"] = int(immature.scalar_one())
        pending = await conn.execute(
            select(
                Payment.status,
                func.count(func.distinct(Payment.id)),
                func.coalesce(func.sum(PaymentOutput.amount), 0),
            )
            .join(PaymentOutput, PaymentOutput.payment_id == Payment.id, isouter=True)
            .group_by(Payment.status)
        )
        payments = {
            s: 0 for s in ("awaiting_approval", "pending", "broadcast", "confirmed", "failed")
        }
        amounts = dict(payments)
        for status, count, amount in pending:
            payments[str(status)] = int(count)
            amounts[str(status)] = int(amount)
        ledger["pending_payout"] = (
            amounts["awaiting_approval"] + amounts["pending"] + amounts["broadcast"]
        )
        fees = await conn.execute(select(func.coalesce(func.sum(Payment.fee_sats), 0)))
        snap.payment_fees_satoshis = int(fees.scalar_one())
        blocks = await conn.execute(
            select(FoundBlock.status, func.count()).group_by(FoundBlock.status)
        )
        snap.found_blocks = dict.fromkeys(FOUND_BLOCK_STATUSES, 0)
        snap.found_blocks.update({str(s): int(n) for s, n in blocks})
    snap.ledger_satoshis = ledger
    snap.payments = payments
    snap.payment_satoshis = amounts


async def _licenses(engine: AsyncEngine, network: str, now: datetime, snap: DbSnapshot) -> None:
    from poolserver.register.licensing import LicenseState
    from poolserver.register.repository import RegisterRepository

    register = await RegisterRepository(engine, network=network).snapshot()
    states = {s.value: 0 for s in LicenseState}
    expiry: dict[str, datetime] = {}
    for account in register.miners:
        status = register.status(account, now)
        states[status.state.value] += 1
        if status.allowed and status.license is not None:
            expiry[account] = status.license.expires_at
    snap.miners_by_license_state = states
    snap.licenses_expiring = expiring_counts(expiry, now)


async def recent_work(engine: AsyncEngine) -> float:
    """Difficulty sum of the newest ``PPLNS_SHARE_LIMIT`` shares (the PPLNS window's fill)."""
    from poolserver.storage.models import Share

    newest = select(Share.difficulty).order_by(Share.id.desc()).limit(PPLNS_SHARE_LIMIT).subquery()
    async with engine.connect() as conn:
        total: Any = (
            await conn.execute(select(func.coalesce(func.sum(newest.c.difficulty), 0)))
        ).scalar_one()
    return float(total)
