"""Retention: raw shares older than ``[storage].retention_days`` become exact per-miner hourly sums.

A whole UTC hour is rolled up at once, so a period is either raw or rolled up (PPLNS relies on
it). ``difficulty_sum`` is the exact rational sum of ``Fraction(difficulty)`` over the hour's
shares (counted in SQL per distinct difficulty, multiplied exactly in Python), so PPLNS over a
rollup gives the same weight as over the shares it replaced. Shares that arrive late for an hour
already rolled up (a spool replayed after the cut-off) are merged into that hour's row by the
next run. Each hour is one transaction: the rows counted are exactly the rows deleted.

**What is kept for the law** (issue 17, ``[storage].legal_retention_years``, default 5): the
only rows this module ever deletes are raw ``shares`` older than ``retention_days``, replaced in
the same transaction by their exact hourly sums. Everything a report or an inspection needs
(``LEGAL`` below: the hourly sums, found blocks, frozen allocations, distributions, the ledger,
payments, the registers and their audit log, the security log, KZT rates) is append-only and
never deleted by qazpool; ``retention_status`` shows per table what it holds, its rows, its
oldest row and the date until which the law wants it kept. Every table of the schema is in
exactly one of ``RAW``, ``LEGAL`` or ``OPERATIONAL`` (a test keeps it so), so a new table needs
a retention decision. Filed reports and test protocols are files (``[reports].out_dir``); keep
them, and backups, for the same period.

The unique index on ``shares.share_hash`` holds over the raw rows only: a rolled-up hour keeps
no hashes. A duplicate of a rolled-up share would have to be a spooled share replayed more than
``retention_days`` (at least one day) after its tip was mined on; every duplicate path the pool
has (job ids on one tip, restarts, several instances) is caught while the first row is raw.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from poolserver.storage.models import Share, ShareRollup

HOUR = timedelta(hours=1)

# table -> what it holds; the README's "Evidence and retention" table says the same.
RAW = {
    "shares": "every accepted share (miner, worker, session, IP, job, difficulty, time): rolled "
    "up into share_rollups after retention_days",
}
LEGAL = {
    "share_rollups": "exact per-miner hourly share counts and difficulty sums (PPLNS inputs)",
    "share_conflicts": "duplicate shares refused or replayed, with their source",
    "found_blocks": "every block found: height, hash, reward, status, confirmations",
    "block_allocations": "the frozen PPLNS allocation of each block (canonical bytes, hash)",
    "distributions": "per block and miner: gross, pool fee, net (Art. 10(4) distributions)",
    "ledger_entries": "credits, reversals, payments, refunds, fees, deposits (satoshis)",
    "payments": "payment batches: status, txid, network fee, hold reason, approver",
    "payment_outputs": "each payment output: miner, address, amount, fee share",
    "payout_holds": "payouts the wallet refused, with the reason",
    "fee_rates": "the pool's dated fee rates",
    "kzt_rates": "the imported daily BTC/KZT rates the reports value income at",
    "reg_miners": "the miner register (legal name, IIN/BIN)",
    "reg_licenses": "mining licenses (number, subtype, validity, revocation)",
    "reg_suspensions": "license suspensions",
    "reg_payout_addresses": "dated payout addresses",
    "reg_miner_fee_rates": "dated per-miner fee rates",
    "reg_machines": "the hardware register (a removed machine's row is kept in reg_audit)",
    "reg_audit": "the hash-chained audit log of register changes and payout approvals",
    "security_events": "the hash-chained security log (refusals, bans, floods, operator "
    "actions, config changes)",
}
OPERATIONAL = {
    "instance_leases": "which process holds which node id now (no history)",
    "probe_results": "firmware probe results with their evidence; pruned after [probe].keep_days "
    "except each machine's latest",
    "web_tokens": "miners' web read tokens (SHA-256 only), issued and revoked by the operator",
    "alembic_version": "the schema revision",
}


def floor_hour(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("retention cut-off must be a timezone-aware datetime")
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RollupReport:
    cutoff: datetime
    hours: int
    shares: int


def retention_cutoff(now: datetime, retention_days: int) -> datetime:
    if retention_days < 1:
        raise ValueError("storage.retention_days: must be at least 1")
    return floor_hour(now - timedelta(days=retention_days))


async def roll_up(engine: AsyncEngine, before: datetime) -> RollupReport:
    """Roll up every whole UTC hour that ends at or before ``before`` (floored to the hour)."""
    cutoff = floor_hour(before)
    hours = shares = 0
    while True:
        async with engine.connect() as conn:
            oldest = (
                await conn.execute(
                    select(func.min(Share.created_at)).where(Share.created_at < cutoff)
                )
            ).scalar_one()
        if oldest is None:
            return RollupReport(cutoff=cutoff, hours=hours, shares=shares)
        start = floor_hour(oldest)
        async with _write_transaction(engine) as conn:
            shares += await _roll_hour(conn, start)
        hours += 1


def _write_transaction(engine: AsyncEngine) -> AbstractAsyncContextManager[AsyncConnection]:
    if engine.dialect.name == "postgresql":
        # One snapshot: the shares counted are exactly the ones deleted, even while the
        # journal keeps inserting.
        return engine.execution_options(isolation_level="REPEATABLE READ").begin()
    return engine.begin()


async def _roll_hour(conn: AsyncConnection, start: datetime) -> int:
    end = start + HOUR
    in_hour = (Share.created_at >= start) & (Share.created_at < end)
    if conn.dialect.name == "sqlite":
        # Take the write lock first so no other writer can slip in between count and delete.
        await conn.execute(
            ShareRollup.__table__.update().where(ShareRollup.id == -1).values(share_count=0)
        )
    groups = (
        await conn.execute(
            select(
                Share.account,
                Share.difficulty,
                func.count(),
                func.min(Share.id),
                func.max(Share.id),
                func.min(Share.created_at),
                func.max(Share.created_at),
            )
            .where(in_hour)
            .group_by(Share.account, Share.difficulty)
        )
    ).all()
    per_miner: dict[str, list[Any]] = {}
    for account, difficulty, count, lo, hi, first, last in groups:
        first, last = _aware(first), _aware(last)
        acc = per_miner.setdefault(account, [0, Fraction(0), lo, hi, first, last])
        acc[0] += count
        acc[1] += Fraction(difficulty) * count
        acc[2], acc[3] = min(acc[2], lo), max(acc[3], hi)
        acc[4], acc[5] = min(acc[4], first), max(acc[5], last)
    total = 0
    for account, (count, dsum, lo, hi, first, last) in sorted(per_miner.items()):
        existing = (
            await conn.execute(
                select(ShareRollup.__table__).where(
                    (ShareRollup.account == account) & (ShareRollup.bucket_start == start)
                )
            )
        ).first()
        if existing is None:
            await conn.execute(
                ShareRollup.__table__.insert().values(
                    account=account,
                    bucket_start=start,
                    share_count=count,
                    difficulty_sum=dsum,
                    first_share_id=lo,
                    last_share_id=hi,
                    first_at=first,
                    last_at=last,
                )
            )
        else:
            row = existing
            await conn.execute(
                ShareRollup.__table__.update()
                .where(ShareRollup.id == row.id)
                .values(
                    share_count=row.share_count + count,
                    difficulty_sum=row.difficulty_sum + dsum,
                    first_share_id=min(row.first_share_id, lo),
                    last_share_id=max(row.last_share_id, hi),
                    first_at=min(row.first_at, first),
                    last_at=max(row.last_at, last),
                )
            )
        total += count
    deleted = (await conn.execute(delete(Share).where(in_hour))).rowcount
    if deleted != total:
        raise RuntimeError(
            f"retention: hour {start.isoformat()} counted {total} shares but deleted {deleted}"
        )
    return total


def _aware(value: datetime | str) -> datetime:
    """Aggregates bypass the column type on SQLite (text comes back); normalise to aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class TableRetention:
    table: str
    holds: str
    kept: str  # "retention_days (N)", "at least N years", "current state only"
    rows: int
    oldest: datetime | None  # the oldest row's time (None: empty or no time column)
    keep_until: datetime | None  # oldest + the legal period (LEGAL tables)


_TIME_COLUMNS = ("created_at", "at", "bucket_start", "found_at", "detected_at", "imported_at")


async def retention_status(
    engine: AsyncEngine, retention_days: int, legal_years: int
) -> list[TableRetention]:
    """Per table: what it holds, how long qazpool keeps it, its rows and oldest row."""
    from sqlalchemy import Table, inspect
    from sqlalchemy import table as table_clause

    from poolserver.storage.metadata import load_all_models

    metadata = load_all_models()
    out = []
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        for group, kept in (
            (RAW, f"{retention_days} days raw, then as hourly sums"),
            (LEGAL, f"at least {legal_years} years (never deleted by qazpool)"),
            (OPERATIONAL, "current state only"),
        ):
            for table, holds in group.items():
                if table not in names:
                    continue
                t: Table | None = metadata.tables.get(table)
                rows = (
                    await conn.execute(select(func.count()).select_from(table_clause(table)))
                ).scalar_one()
                oldest = None
                column = next((c for c in _TIME_COLUMNS if t is not None and c in t.c), None)
                if t is not None and column is not None:
                    oldest = (await conn.execute(select(func.min(t.c[column])))).scalar_one()
                    oldest = None if oldest is None else _aware(oldest)
                until = None
                if group is LEGAL and oldest is not None:
                    day = 28 if (oldest.month, oldest.day) == (2, 29) else oldest.day
                    until = oldest.replace(year=oldest.year + legal_years, day=day)
                out.append(TableRetention(table, holds, kept, int(rows), oldest, until))
    return out
