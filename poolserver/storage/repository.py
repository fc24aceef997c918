"""Repositories: what the rest of the pool reads and writes, mapped to ``payouts`` data types.

* ``ShareHistory.pplns_inputs``: raw shares (newest first, until the window is covered) plus the
  hourly rollups beyond them, as ``payouts.types.ShareRecord`` / ``RollupRecord``. A share's
  weight is ``Fraction(difficulty)`` of the stored IEEE double, the same conversion retention uses
  for its sums, so raw and rolled-up history weigh exactly the same.
* ``FoundBlocks``: found blocks persisted in the database (idempotent by hash).
* ``Allocations.freeze``: a block's allocation is stored once with its canonical bytes and
  inputs' hash, plus its distribution rows; storing it again is a no-op only if the bytes are
  identical, anything else is refused (``AllocationFrozen``).
* ``Ledger``: append-only entries (an ``entry_id`` appended twice is stored once); balances are
  sums.
* ``SqlPaymentOutbox``: ``payouts.payments.PaymentOutbox`` on the database; every method is one
  transaction, so a batch and its ledger debits are stored together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payouts.allocation import Allocation
from payouts.ledger import EntryKind
from payouts.ledger import LedgerEntry as LedgerRecord
from payouts.payments import PaymentBatch, PaymentOutput, PaymentStatus
from payouts.txfee import TxFeePolicy
from payouts.types import RollupRecord, ShareRecord
from poolserver.storage.models import (
    BlockAllocation,
    Distribution,
    FoundBlock,
    LedgerEntry,
    Payment,
    PayoutHold,
    Share,
    ShareRollup,
)
from poolserver.storage.models import (
    PaymentOutput as PaymentOutputRow,
)
from poolserver.storage.retention import HOUR

CHUNK = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def _insert_ignore(engine: AsyncEngine | AsyncConnection, table: Any, key: list[str]) -> Any:
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=key)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=key)


class ShareHistory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def pplns_inputs(
        self, found_at: datetime, need: Fraction
    ) -> tuple[list[ShareRecord], list[RollupRecord]]:
        """Shares at or before ``found_at``, newest first, until their difficulty sum reaches
        ``need`` (the window N); then whole rolled-up hours, newest first, until it does."""
        shares: list[ShareRecord] = []
        total = Fraction(0)
        last: tuple[datetime, int] | None = None
        async with self.engine.connect() as conn:
            while total < need:
                q = select(
                    Share.id, Share.account, Share.worker, Share.difficulty, Share.created_at
                ).where(Share.created_at <= found_at)
                if last is not None:
                    q = q.where(
                        (Share.created_at < last[0])
                        | ((Share.created_at == last[0]) & (Share.id < last[1]))
                    )
                rows = (
                    await conn.execute(
                        q.order_by(Share.created_at.desc(), Share.id.desc()).limit(CHUNK)
                    )
                ).all()
                if not rows:
                    break
                for sid, account, worker, difficulty, created in rows:
                    weight = Fraction(difficulty)
                    shares.append(
                        ShareRecord(
                            seq=sid,
                            miner_id=account,
                            account=f"{account}.{worker}",
                            difficulty=weight,
                            time=created,
                        )
                    )
                    total += weight
                    if total >= need:
                        break
                last = (rows[-1][4], rows[-1][0])
            rollups: list[RollupRecord] = []
            oldest_raw = shares[-1].time if shares else found_at
            if total < need:
                q = select(ShareRollup.__table__).order_by(
                    ShareRollup.bucket_start.desc(), ShareRollup.account
                )
                for r in (await conn.execute(q)).all():
                    period_end = r.bucket_start + HOUR
                    if period_end > found_at:
                        continue
                    if total >= need and rollups and rollups[-1].period_start != r.bucket_start:
                        break
                    if period_end > oldest_raw:
                        raise RuntimeError(
                            f"hour {r.bucket_start.isoformat()} is both rolled up and has raw "
                            "shares (late arrivals); run the retention roll-up to merge them"
                        )
                    rollups.append(
                        RollupRecord(
                            miner_id=r.account,
                            period_start=r.bucket_start,
                            period_end=period_end,
                            difficulty_sum=r.difficulty_sum,
                            share_count=r.share_count,
                        )
                    )
                    total += r.difficulty_sum
        return shares, rollups


class FoundBlocks:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self,
        *,
        block_hash: str,
        height: int,
        prevhash: str,
        account: str,
        worker: str,
        job_id: str,
        block_hex: str,
        coinbase_value: int,
        bits: int,
        found_at: datetime,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Persist a found block (before it is submitted); idempotent by hash. Returns its id."""
        row = dict(
            block_hash=block_hash,
            height=height,
            prevhash=prevhash,
            account=account,
            worker=worker,
            job_id=job_id,
            block_hex=block_hex,
            coinbase_value=coinbase_value,
            bits=bits,
            found_at=found_at,
            status="pending",
            verdict="",
            confirmations=0,
            updated_at=_now(),
            data=dict(data or {}),
        )
        async with self.engine.begin() as conn:
            await conn.execute(_insert_ignore(conn, FoundBlock.__table__, ["block_hash"]), [row])
            return (
                await conn.execute(select(FoundBlock.id).where(FoundBlock.block_hash == block_hash))
            ).scalar_one()

    async def set_status(
        self, block_hash: str, status: str, verdict: str = "", confirmations: int | None = None
    ) -> None:
        values: dict[str, Any] = {"status": status, "verdict": verdict, "updated_at": _now()}
        if confirmations is not None:
            values["confirmations"] = confirmations
        async with self.engine.begin() as conn:
            result = await conn.execute(
                FoundBlock.__table__.update()
                .where(FoundBlock.block_hash == block_hash)
                .values(values)
            )
            if result.rowcount != 1:
                raise KeyError(f"found block {block_hash}: not stored")

    async def get(self, block_hash: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(FoundBlock.__table__).where(FoundBlock.block_hash == block_hash)
                )
            ).first()

    async def unallocated(self, statuses: Sequence[str]) -> list[Any]:
        """Blocks in one of ``statuses`` that have no frozen allocation yet, oldest first."""
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        select(FoundBlock.__table__)
                        .outerjoin(BlockAllocation, BlockAllocation.block_id == FoundBlock.id)
                        .where(FoundBlock.status.in_(statuses), BlockAllocation.id.is_(None))
                        .order_by(FoundBlock.id)
                    )
                ).all()
            )

    async def with_status(self, status: str) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        select(FoundBlock.__table__)
                        .where(FoundBlock.status == status)
                        .order_by(FoundBlock.id)
                    )
                ).all()
            )


class AllocationFrozen(RuntimeError):
    """A different allocation is already frozen for this block."""


class Allocations:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def freeze(self, allocation: Allocation) -> Allocation:
        """Store ``allocation`` for its block once; return the frozen one (identical bytes)."""
        data = allocation.to_bytes()
        block_hash = allocation.block.block_hash
        async with self.engine.begin() as conn:
            block_id = (
                await conn.execute(select(FoundBlock.id).where(FoundBlock.block_hash == block_hash))
            ).scalar_one_or_none()
            if block_id is None:
                raise KeyError(f"allocation for block {block_hash}: block not stored")
            existing = (
                await conn.execute(
                    select(BlockAllocation.canonical).where(BlockAllocation.block_id == block_id)
                )
            ).first()
            if existing is not None:
                if bytes(existing[0]) != data:
                    raise AllocationFrozen(
                        f"block {block_hash}: allocation already frozen with different inputs "
                        f"(stored inputs hash differs from {allocation.inputs_hash})"
                    )
                return Allocation.from_bytes(bytes(existing[0]))
            alloc_id = (
                await conn.execute(
                    BlockAllocation.__table__.insert()
                    .values(
                        block_id=block_id,
                        inputs_hash=allocation.inputs_hash,
                        canonical=data,
                        policy=allocation.outcome.value,
                        reward=allocation.block.reward_sats,
                        pool_fee=allocation.pool_fee_sats,
                        created_at=_now(),
                    )
                    .returning(BlockAllocation.id)
                )
            ).scalar_one()
            lines = [
                dict(
                    allocation_id=alloc_id,
                    account=ln.miner_id,
                    gross=ln.gross_sats,
                    fee=ln.fee_sats,
                    net=ln.net_sats,
                )
                for ln in allocation.lines
            ]
            if lines:
                await conn.execute(Distribution.__table__.insert(), lines)
        return allocation

    async def get(self, block_hash: str) -> Allocation | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(BlockAllocation.canonical)
                    .join(FoundBlock, FoundBlock.id == BlockAllocation.block_id)
                    .where(FoundBlock.block_hash == block_hash)
                )
            ).first()
        return None if row is None else Allocation.from_bytes(bytes(row[0]))

    async def undecided(self, horizon: int) -> list[tuple[Allocation, str, int]]:
        """Allocated blocks the chain may still change: (allocation, status, confirmations) of
        every one not ``accepted`` with at least ``horizon`` confirmations, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(BlockAllocation.canonical, FoundBlock.status, FoundBlock.confirmations)
                    .join(FoundBlock, FoundBlock.id == BlockAllocation.block_id)
                    .where(
                        (FoundBlock.status != "accepted") | (FoundBlock.confirmations < horizon)
                    )
                    .order_by(BlockAllocation.id)
                )
            ).all()
        return [(Allocation.from_bytes(bytes(c)), st, conf) for c, st, conf in rows]

    async def all(self) -> list[Allocation]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(BlockAllocation.canonical).order_by(BlockAllocation.id))
            ).all()
        return [Allocation.from_bytes(bytes(r[0])) for r in rows]

    async def of_account(self, account: str) -> list[Allocation]:
        """The allocations with a distribution line of ``account`` (by the indexed
        ``distributions.account``), oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(BlockAllocation.canonical)
                    .join(Distribution, Distribution.allocation_id == BlockAllocation.id)
                    .where(Distribution.account == account)
                    .order_by(BlockAllocation.id)
                )
            ).all()
        return [Allocation.from_bytes(bytes(r[0])) for r in rows]


def _entry_row(e: LedgerRecord, created: datetime, block_ids: Mapping[str, int]) -> dict[str, Any]:
    return dict(
        entry_key=e.entry_id,
        account=e.account,
        kind=e.kind.value,
        amount=e.amount_sats,
        block_id=block_ids.get(e.block_hash) if e.block_hash else None,
        payment_id=None,
        created_at=created,
        data={"block_hash": e.block_hash, "batch_id": e.batch_id, "generation": e.generation,
              **({"note": e.note} if e.note else {})},
    )


def _entry_record(row: Any) -> LedgerRecord:
    d = row.data or {}
    return LedgerRecord(
        entry_id=row.entry_key,
        kind=EntryKind(row.kind),
        account=row.account,
        amount_sats=row.amount,
        block_hash=d.get("block_hash"),
        batch_id=d.get("batch_id"),
        generation=d.get("generation", 0),
        note=d.get("note"),
    )


async def _append(conn: AsyncConnection, entries: Sequence[LedgerRecord]) -> None:
    if entries:
        now = _now()
        hashes = sorted({e.block_hash for e in entries if e.block_hash})
        block_ids: dict[str, int] = {}
        if hashes:
            rows = await conn.execute(
                select(FoundBlock.block_hash, FoundBlock.id).where(
                    FoundBlock.block_hash.in_(hashes)
                )
            )
            block_ids = {h: i for h, i in rows.all()}
        await conn.execute(
            _insert_ignore(conn, LedgerEntry.__table__, ["entry_key"]),
            [_entry_row(e, now, block_ids) for e in entries],
        )


async def _balances(conn: AsyncConnection) -> dict[str, int]:
    rows = (
        await conn.execute(
            select(LedgerEntry.account, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.account)
        )
    ).all()
    return {account: int(total) for account, total in rows}


class Ledger:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def append(self, entries: Sequence[LedgerRecord]) -> None:
        async with self.engine.begin() as conn:
            await _append(conn, entries)

    async def entries(self) -> list[LedgerRecord]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(LedgerEntry.__table__).order_by(LedgerEntry.id))
            ).all()
        return [_entry_record(r) for r in rows]

    async def account_entries(self, account: str) -> list[LedgerRecord]:
        """One account's entries in append order (by the indexed ``account``)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(LedgerEntry.__table__)
                    .where(LedgerEntry.account == account)
                    .order_by(LedgerEntry.id)
                )
            ).all()
        return [_entry_record(r) for r in rows]

    async def block_entries(self, block_hashes: Sequence[str]) -> list[LedgerRecord]:
        """The credit and reversal entries of these stored blocks (by the indexed ``block_id``),
        in append order: what ``payouts.ledger.block_entries`` needs, without the rest."""
        if not block_hashes:
            return []
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(LedgerEntry.__table__)
                    .join(FoundBlock, FoundBlock.id == LedgerEntry.block_id)
                    .where(
                        FoundBlock.block_hash.in_(list(block_hashes)),
                        LedgerEntry.kind.in_([EntryKind.CREDIT.value, EntryKind.REVERSAL.value]),
                    )
                    .order_by(LedgerEntry.id)
                )
            ).all()
        return [_entry_record(r) for r in rows]

    async def balances(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            return await _balances(conn)


def _batch_data(batch: PaymentBatch) -> dict[str, Any]:
    data: dict[str, Any] = {"batch_id": batch.batch_id, "failure": batch.failure}
    if batch.hold_reason is not None:
        data["hold_reason"] = batch.hold_reason
    if batch.approved_by is not None:
        data["approved_by"] = batch.approved_by
    if batch.approved_at is not None:
        data["approved_at"] = batch.approved_at.astimezone(UTC).isoformat()
    return data


def _parse_time(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text).astimezone(UTC)


class SqlPaymentOutbox:
    """``payouts.payments.PaymentOutbox`` on the database. ``addresses`` gives each miner's
    payout address in force at a time (the register's table; injected by the composition root)."""

    def __init__(
        self, engine: AsyncEngine, addresses: Callable[[datetime], Any] | None = None
    ) -> None:
        self.engine = engine
        self._addresses = addresses

    async def unfinished(self) -> Sequence[PaymentBatch]:
        async with self.engine.connect() as conn:
            pays = (
                await conn.execute(
                    select(Payment.__table__)
                    .where(Payment.status.in_(["pending", "broadcast"]))
                    .order_by(Payment.id)
                )
            ).all()
            return [await self._batch(conn, p) for p in pays]

    async def all_batches(self) -> list[PaymentBatch]:
        async with self.engine.connect() as conn:
            pays = (await conn.execute(select(Payment.__table__).order_by(Payment.id))).all()
            return [await self._batch(conn, p) for p in pays]

    async def batch_on(self, conn: AsyncConnection, batch_id: str) -> PaymentBatch | None:
        p = (
            await conn.execute(
                select(Payment.__table__).where(Payment.comment == f"qazpool payout {batch_id}")
            )
        ).first()
        return None if p is None else await self._batch(conn, p)
    async def batches_of(self, account: str) -> list[PaymentBatch]:
        """The batches with an output to ``account``, oldest first (every output of each)."""
        async with self.engine.connect() as conn:
            ids = select(PaymentOutputRow.payment_id).where(PaymentOutputRow.account == account)
            pays = (
                await conn.execute(
                    select(Payment.__table__).where(Payment.id.in_(ids)).order_by(Payment.id)
                )
            ).all()
            return [await self._batch(conn, p) for p in pays]

    async def _batch(self, conn: AsyncConnection, p: Any) -> PaymentBatch:
        outs = (
            await conn.execute(
                select(PaymentOutputRow.__table__)
                .where(PaymentOutputRow.payment_id == p.id)
                .order_by(PaymentOutputRow.account)
            )
        ).all()
        return PaymentBatch(
            batch_id=p.data["batch_id"],
            comment=p.comment,
            created_at=p.created_at,
            outputs=tuple(
                PaymentOutput(
                    miner_id=o.account, address=o.address, amount_sats=o.amount,
                    fee_sats=o.fee_sats or 0,
                )
                for o in outs
            ),
            status=PaymentStatus(p.status),
            txid=p.txid,
            failure=p.data.get("failure"),
            fee_sats=p.fee_sats,
            fee_policy=TxFeePolicy(p.fee_policy or "pool"),
            hold_reason=p.data.get("hold_reason"),
            approved_by=p.data.get("approved_by"),
            approved_at=_parse_time(p.data.get("approved_at")),
        )

    async def awaiting(self) -> Sequence[PaymentBatch]:
        """Batches held for an operator's approval (hot-wallet caps), oldest first."""
        async with self.engine.connect() as conn:
            pays = (
                await conn.execute(
                    select(Payment.__table__)
                    .where(Payment.status == "awaiting_approval")
                    .order_by(Payment.id)
                )
            ).all()
            return [await self._batch(conn, p) for p in pays]

    async def get(self, batch_id: str) -> PaymentBatch | None:
        async with self.engine.connect() as conn:
            return await self.batch_on(conn, batch_id)

    async def released_since(self, start: datetime) -> int:
        """Satoshis of pending, broadcast or confirmed batches released (approved, else
        planned) at or after ``start``."""
        async with self.engine.connect() as conn:
            pays = (
                await conn.execute(
                    select(Payment.__table__).where(
                        Payment.status.in_(["pending", "broadcast", "confirmed"]),
                        Payment.updated_at >= start,
                    )
                )
            ).all()
            total = 0
            for p in pays:
                batch = await self._batch(conn, p)
                if batch.released_at >= start:
                    total += batch.total_sats
            return total

    async def balances(self) -> Mapping[str, int]:
        async with self.engine.connect() as conn:
            return await _balances(conn)

    async def payout_addresses(self, at: datetime) -> Mapping[str, str]:
        if self._addresses is None:
            raise RuntimeError("payout addresses: no register wired into SqlPaymentOutbox")
        result = self._addresses(at)
        if hasattr(result, "__await__"):
            result = await result
        return dict(result)

    async def add_batch(self, batch: PaymentBatch, entries: Sequence[LedgerRecord]) -> None:
        async with self.engine.begin() as conn:
            pid = (
                await conn.execute(
                    Payment.__table__.insert()
                    .values(
                        comment=batch.comment,
                        status=batch.status.value,
                        txid=batch.txid,
                        fee_sats=batch.fee_sats,
                        fee_policy=batch.fee_policy.value,
                        created_at=batch.created_at,
                        updated_at=_now(),
                        data=_batch_data(batch),
                    )
                    .returning(Payment.id)
                )
            ).scalar_one()
            await conn.execute(
                PaymentOutputRow.__table__.insert(),
                [
                    dict(
                        payment_id=pid, account=o.miner_id, address=o.address,
                        amount=o.amount_sats, fee_sats=o.fee_sats,
                    )
                    for o in batch.outputs
                ],
            )
            await _append(conn, entries)

    async def update_batch(self, batch: PaymentBatch, entries: Sequence[LedgerRecord]) -> None:
        async with self.engine.begin() as conn:
            await self.update_batch_on(conn, batch, entries)

    async def update_batch_on(
        self,
        conn: AsyncConnection,
        batch: PaymentBatch,
        entries: Sequence[LedgerRecord],
        *,
        from_status: str | None = None,
    ) -> None:
        """``update_batch`` inside the caller's transaction (an operator's approval is written
        with its audit entry); ``from_status``: only if the stored batch is still in it."""
        where = Payment.comment == batch.comment
        if from_status is not None:
            where = where & (Payment.status == from_status)
        result = await conn.execute(
            Payment.__table__.update()
            .where(where)
            .values(
                status=batch.status.value,
                txid=batch.txid,
                fee_sats=batch.fee_sats,
                updated_at=_now(),
                data=_batch_data(batch),
            )
        )
        if result.rowcount != 1:
            state = f" in status {from_status}" if from_status else ""
            raise KeyError(f"payment batch {batch.batch_id}: not stored{state}")
        pid = (
            await conn.execute(select(Payment.id).where(Payment.comment == batch.comment))
        ).scalar_one()
        for o in batch.outputs:
            await conn.execute(
                PaymentOutputRow.__table__.update()
                .where(PaymentOutputRow.payment_id == pid,
                       PaymentOutputRow.account == o.miner_id)
                .values(fee_sats=o.fee_sats)
            )
        await _append(conn, entries)

    async def holds(self) -> Mapping[str, tuple[str, str]]:
        """Miners whose payouts are held (not released): miner -> (address, reason), the
        newest hold of each miner."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(PayoutHold.account, PayoutHold.address, PayoutHold.reason)
                    .where(PayoutHold.released_at.is_(None))
                    .order_by(PayoutHold.id)
                )
            ).all()
        return {account: (address, reason) for account, address, reason in rows}

    async def add_hold(self, miner_id: str, address: str, reason: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                PayoutHold.__table__.insert().values(
                    account=miner_id, address=address, reason=reason, created_at=_now()
                )
            )

    async def release_hold(self, miner_id: str) -> int:
        """Release every hold of ``miner_id``; returns how many there were."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                PayoutHold.__table__.update()
                .where(PayoutHold.account == miner_id, PayoutHold.released_at.is_(None))
                .values(released_at=_now())
            )
            return int(result.rowcount or 0)
