"""The web API's read-only query layer over storage (SQLite and PostgreSQL alike).

Reuses the repositories where they already answer the question (``Ledger``, ``Allocations``,
``SqlPaymentOutbox`` and ``payouts.payments.distribution_rows`` for distributions, the register's
snapshot for license states, ``telemetry_db.recent_work`` for the PPLNS window's fill); what is
new here is only what the page needs and nothing else read before: hashrate per worker and per
time bucket, keyset pages of blocks and payments. Every function takes the engine and returns
plain dicts ready for JSON (ISO 8601 UTC times, integer satoshis); nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Integer, case, cast, distinct, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payouts.payments import DistributionRow, distribution_rows
from poolserver.storage.models import (
    BlockAllocation,
    Distribution,
    FeeRate,
    FoundBlock,
    LedgerEntry,
    Payment,
    PaymentOutput,
    Share,
    ShareRollup,
)
from poolserver.storage.register_models import Miner
from poolserver.storage.repository import Allocations, Ledger, SqlPaymentOutbox

HASHES_PER_DIFFICULTY = 2**32  # a difficulty-1 share is 2^32 hashes on average
SENT = ("broadcast", "confirmed")


def iso(at: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z`` (seconds precision), or None."""
    if at is None:
        return None
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def hashrate(difficulty_sum: float | Fraction, seconds: float) -> float:
    """Hashes per second of ``difficulty_sum`` accepted over ``seconds``."""
    return float(difficulty_sum) * HASHES_PER_DIFFICULTY / seconds if seconds > 0 else 0.0


def _epoch_bucket(engine: AsyncEngine, column: Any, seconds: int) -> Any:
    """The integer bucket number of a timestamp column (Unix time // ``seconds``)."""
    if engine.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / seconds), Integer)
    # SQLite keeps the UTC wall time as ISO text; strftime('%s') reads it as UTC. ``//``: an
    # integer division (SQLAlchemy renders ``/`` as a true division: one group per second)
    return cast(func.strftime("%s", column), Integer) // seconds


def block_state(status: str, credited: bool) -> str:
    """The page's block status: ``matured`` once its allocation is credited to the ledger,
    ``orphaned`` / ``rejected`` as the chain or node decided, ``pending`` before that."""
    if status in ("orphaned", "rejected"):
        return status
    return "matured" if credited else "pending"


@dataclass(frozen=True)
class PoolFigures:
    """What the pool process knows that the database does not (the current job)."""

    network_difficulty: float
    height: int


async def pool_fee_bps(engine: AsyncEngine, now: datetime, default_bps: int) -> int:
    """The pool-wide fee in force at ``now`` (the dated ``fee_rates``, else the config's)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(FeeRate.fee_bps)
                .where(FeeRate.effective_from <= now)
                .order_by(FeeRate.effective_from.desc(), FeeRate.id.desc())
                .limit(1)
            )
        ).first()
    return int(row[0]) if row is not None else default_bps


def _credited() -> Any:
    return exists().where(LedgerEntry.block_id == FoundBlock.id, LedgerEntry.kind == "credit")


async def blocks_page(
    engine: AsyncEngine, limit: int, before_id: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Found blocks newest first (by id: the order they were found), ``limit`` of them after
    the cursor; returns (blocks, next cursor or None)."""
    fb, ba = FoundBlock, BlockAllocation
    miners = (
        select(func.count(Distribution.id))
        .where(Distribution.allocation_id == ba.id)
        .scalar_subquery()
    )
    q = (
        select(fb.id, fb.height, fb.block_hash, fb.coinbase_value, fb.status, fb.confirmations,
               fb.found_at, ba.reward, ba.pool_fee, ba.policy, ba.inputs_hash,
               miners.label("miners"), _credited().label("credited"))
        .outerjoin(ba, ba.block_id == fb.id)
        .order_by(fb.id.desc())
        .limit(limit + 1)
    )  # fmt: skip
    if before_id is not None:
        q = q.where(fb.id < before_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [
        {
            "height": r.height,
            "hash": r.block_hash,
            "reward_sats": int(r.coinbase_value),
            "status": block_state(r.status, bool(r.credited)),
            "confirmations": int(r.confirmations),
            "found_at": iso(r.found_at),
            "allocation": None
            if r.reward is None
            else {
                "reward_sats": int(r.reward),
                "pool_fee_sats": int(r.pool_fee),
                "miners": int(r.miners or 0),
                "policy": r.policy,
                "inputs_hash": r.inputs_hash,
            },
        }
        for r in rows
    ]
    return out, (rows[-1].id if more and rows else None)


async def pool_stats(
    engine: AsyncEngine,
    now: datetime,
    *,
    window_s: int,
    pplns_k: str,
    default_fee_bps: int,
    figures: PoolFigures,
) -> dict[str, Any]:
    from poolserver.telemetry_db import recent_work

    since = now - timedelta(seconds=window_s)
    async with engine.connect() as conn:
        diff_sum, workers, miners = (
            await conn.execute(
                select(
                    func.coalesce(func.sum(Share.difficulty), 0.0),
                    func.count(distinct(Share.account + "." + Share.worker)),
                    func.count(distinct(Share.account)),
                ).where(Share.created_at >= since, Share.created_at <= now)
            )
        ).one()
        found = (await conn.execute(select(func.count(FoundBlock.id)))).scalar_one()
    last, _ = await blocks_page(engine, 5)
    k = Fraction(pplns_k)
    window = float(k * Fraction(figures.network_difficulty)) if figures.network_difficulty else 0.0
    work = await recent_work(engine) if window else 0.0
    return {
        "time": iso(now),
        "hashrate_hs": hashrate(diff_sum, window_s),
        "hashrate_window_s": window_s,
        "workers": int(workers),
        "miners": int(miners),
        "network_difficulty": figures.network_difficulty,
        "height": figures.height,
        "blocks_found": int(found),
        "last_blocks": last,
        "fee_bps": await pool_fee_bps(engine, now, default_fee_bps),
        "pplns": {
            "k": pplns_k,
            "window_difficulty": window,
            "window_fill": min(1.0, work / window) if window else 0.0,
        },
    }


def share_buckets(engine: AsyncEngine, start: datetime, end: datetime, bucket_s: int) -> Any:
    """(bucket number, difficulty sum, share count) of the raw shares in [start, end), grouped
    in the database (one row per bucket, whatever the number of shares)."""
    bucket = _epoch_bucket(engine, Share.created_at, bucket_s).label("b")
    return (
        select(bucket, func.sum(Share.difficulty), func.count(Share.id))
        .where(Share.created_at >= start, Share.created_at < end)
        .group_by(bucket)
    )


async def hashrate_history(
    engine: AsyncEngine, start: datetime, end: datetime, bucket_s: int,
    account: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Hashrate per ``bucket_s`` bucket in [start, end), oldest first: raw shares bucketed in
    SQL, plus the hourly roll-ups of shares older than the retention (hour buckets)."""
    q = share_buckets(engine, start, end, bucket_s)
    rq = select(ShareRollup.bucket_start, ShareRollup.difficulty_sum,
                ShareRollup.share_count).where(
        ShareRollup.bucket_start >= start, ShareRollup.bucket_start < end)  # fmt: skip
    if account is not None:
        q = q.where(Share.account == account)
        rq = rq.where(ShareRollup.account == account)
    sums: dict[int, list[Any]] = defaultdict(lambda: [Fraction(0), 0])
    async with engine.connect() as conn:
        for b, total, count in (await conn.execute(q)).all():
            sums[int(b)][0] += Fraction(total)
            sums[int(b)][1] += int(count)
        for bucket_start, total, count in (await conn.execute(rq)).all():
            b = int(bucket_start.timestamp()) // bucket_s
            sums[b][0] += total
            sums[b][1] += int(count)
    first, last = int(start.timestamp()) // bucket_s, (int(end.timestamp()) - 1) // bucket_s
    return [
        {
            "start": iso(datetime.fromtimestamp(b * bucket_s, UTC)),
            "hashrate_hs": hashrate(sums[b][0], bucket_s) if b in sums else 0.0,
            "shares": sums[b][1] if b in sums else 0,
        }
        for b in range(first, last + 1)
    ]


async def workers(
    engine: AsyncEngine, account: str, now: datetime, window_s: int, history_h: int
) -> list[dict[str, Any]]:
    """The account's workers with a share in the last ``history_h`` hours: last share time,
    hashrate over the last ``window_s`` seconds, shares in that window."""
    since = now - timedelta(hours=history_h)
    recent = now - timedelta(seconds=window_s)
    in_window = Share.created_at >= recent
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    Share.worker,
                    func.max(Share.created_at),
                    func.coalesce(func.sum(case((in_window, Share.difficulty), else_=0.0)), 0.0),
                    func.coalesce(func.sum(case((in_window, 1), else_=0)), 0),
                )
                .where(Share.account == account, Share.created_at >= since,
                       Share.created_at <= now)
                .group_by(Share.worker)
                .order_by(Share.worker)
            )
        ).all()  # fmt: skip
    return [
        {
            "worker": w,
            "last_share_at": iso(last),
            "hashrate_hs": hashrate(diff, window_s),
            "shares": int(n),
        }
        for w, last, diff, n in rows
    ]


async def balance(engine: AsyncEngine, account: str) -> dict[str, int]:
    """``immature``: the account's net share of allocated blocks not yet credited (and not
    orphaned or rejected); ``mature``: its ledger balance (credited, not yet paid);
    ``pending_payout``: in payment batches not yet sent; ``paid``: debited by sent batches."""
    d, ba, fb = Distribution, BlockAllocation, FoundBlock
    async with engine.connect() as conn:
        immature = (
            await conn.execute(
                select(func.coalesce(func.sum(d.net), 0))
                .join(ba, ba.id == d.allocation_id)
                .join(fb, fb.id == ba.block_id)
                .where(d.account == account, ~_credited(),
                       fb.status.not_in(("rejected", "orphaned")))
            )
        ).scalar_one()  # fmt: skip
        mature = (
            await conn.execute(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.account == account
                )
            )
        ).scalar_one()
        by_status = dict(
            (
                await conn.execute(
                    select(Payment.status, func.coalesce(func.sum(PaymentOutput.amount), 0))
                    .join(Payment, Payment.id == PaymentOutput.payment_id)
                    .where(PaymentOutput.account == account)
                    .group_by(Payment.status)
                )
            ).all()
        )
    return {
        "immature_sats": int(immature),
        "mature_sats": int(mature),
        "pending_payout_sats": int(by_status.get("pending", 0)),
        "paid_sats": sum(int(by_status.get(s, 0)) for s in SENT),
    }


async def payments_page(
    engine: AsyncEngine, account: str, limit: int, before_id: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """The account's payment outputs newest first (keyset on the output id)."""
    po, p = PaymentOutput, Payment
    q = (
        select(po.id, po.address, po.amount, po.fee_sats, p.txid, p.status, p.created_at)
        .join(p, p.id == po.payment_id)
        .where(po.account == account)
        .order_by(po.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        q = q.where(po.id < before_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [
        {
            "created_at": iso(r.created_at),
            "amount_sats": int(r.amount),
            "network_fee_sats": int(r.fee_sats or 0),
            "received_sats": int(r.amount) - int(r.fee_sats or 0),
            "address": r.address,
            "txid": r.txid,
            "status": r.status,
        }
        for r in rows
    ]
    return out, (rows[-1].id if more and rows else None)


def distribution_json(r: DistributionRow) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "account": r.miner_id,
        "height": r.height,
        "block_hash": r.block_hash,
        "found_at": iso(r.found_at),
        "gross_sats": r.gross_sats,
        "fee_sats": r.fee_sats,
        "net_sats": r.net_sats,
        "address": r.address,
        "txids": list(r.txids),
        "status": r.status.value,
    }


def _in_range(rows: Sequence[DistributionRow], start: datetime | None, end: datetime | None
              ) -> list[DistributionRow]:  # fmt: skip
    return [r for r in rows if (start is None or r.found_at >= start)
            and (end is None or r.found_at < end)]  # fmt: skip


async def account_distributions(
    engine: AsyncEngine, account: str, start: datetime | None = None,
    end: datetime | None = None,
) -> list[DistributionRow]:  # fmt: skip
    """The account's distribution rows (``payouts.payments.distribution_rows`` over its own
    allocations, ledger entries and payment batches), newest block first."""
    rows = distribution_rows(
        await Allocations(engine).of_account(account),
        await Ledger(engine).account_entries(account),
        await SqlPaymentOutbox(engine).batches_of(account),
    )
    mine = [r for r in rows if r.miner_id == account]
    return list(reversed(_in_range(mine, start, end)))


async def all_distributions(
    engine: AsyncEngine, start: datetime, end: datetime
) -> dict[str, list[DistributionRow]]:
    """Every miner's distribution rows of blocks found in [start, end), by account."""
    rows = distribution_rows(
        await Allocations(engine).all(),
        await Ledger(engine).entries(),
        await SqlPaymentOutbox(engine).all_batches(),
    )
    out: dict[str, list[DistributionRow]] = defaultdict(list)
    for r in _in_range(rows, start, end):
        out[r.miner_id].append(r)
    return out


async def workers_in_range(
    engine: AsyncEngine, start: datetime, end: datetime, account: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per account, the workers that sent shares in [start, end): first and last share, count.
    (Shares already rolled up keep no worker names: the range should lie in the retention.)"""
    q = (
        select(Share.account, Share.worker, func.min(Share.created_at),
               func.max(Share.created_at), func.count(Share.id))
        .where(Share.created_at >= start, Share.created_at < end)
        .group_by(Share.account, Share.worker)
        .order_by(Share.account, Share.worker)
    )  # fmt: skip
    if account is not None:
        q = q.where(Share.account == account)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for acc, worker, first, last, n in rows:
        out[acc].append({"worker": worker, "first_share_at": iso(first),
                         "last_share_at": iso(last), "shares": int(n)})  # fmt: skip
    return out


async def registered_accounts(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [a for (a,) in (await conn.execute(select(Miner.account).order_by(Miner.account)))]
