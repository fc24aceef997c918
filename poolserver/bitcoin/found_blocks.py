"""Found blocks in the database (``poolserver.bitcoin.blocks.FoundBlockStore``), with a JSONL
fallback.

``SqlFoundBlockStore`` keeps a found block in the ``found_blocks`` table (SQLite
``synchronous=FULL`` / PostgreSQL commit). It is written *after* the block was submitted and
after the local fsync'd record (``poolserver.bitcoin.blocks``: submission is the fast path), so
every write is idempotent (``import_outcome``) and can be retried. Each node's verdict is kept in
``data["verdicts"]`` (node → bitcoind's answer, ``None`` = accepted), a readable summary in
``verdict``, and the submission's outcome in ``status``:

=================  ========================================================================
BlockStatus        ``found_blocks.status``
=================  ========================================================================
PENDING            ``pending`` (replayed at startup)
ACCEPTED           ``accepted``
REJECTED           ``rejected``
INCONCLUSIVE       ``inconclusive``: valid but not on the node's best chain (undecided). The
                   payout service keeps asking the chain about it, so it is allocated and
                   credited should it join the main chain, and marked ``orphaned`` if not.
=================  ========================================================================

The local record is the fsync'd JSONL file ``<data_dir>/found-blocks.jsonl``: every found block
goes there first (the pool keeps mining while the database is down or slow, and a found block
must not wait for it). ``DurableFoundBlockStore`` pairs the file with the database:
``import_fallback`` copies the file's blocks into the database (at startup and on every
payout-service tick), so a database write that failed, or was cut short by a crash or a stop, is
made good. Import is idempotent (by block hash) and never overwrites a status the database has
moved on from ``pending``. Blocks recovered from the chain (``block_recovery``) carry the marker
``RECOVERED`` in ``data["recovered"]`` and account/worker ``""`` (finder unknown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from poolserver.bitcoin.blocks import BlockOutcome, BlockStatus, FoundBlock, JsonlFoundBlockStore
from poolserver.config import Config
from poolserver.storage.models import BlockAllocation, Share
from poolserver.storage.models import FoundBlock as FoundBlockRow
from poolserver.storage.repository import FoundBlocks

log = logging.getLogger(__name__)

DB_STATUS = {
    BlockStatus.PENDING: "pending",
    BlockStatus.ACCEPTED: "accepted",
    BlockStatus.REJECTED: "rejected",
    BlockStatus.INCONCLUSIVE: "inconclusive",
}


def header_bits(block_hex: str) -> int:
    """nBits of a serialized block (header bytes 72..76, little-endian)."""
    try:
        header = bytes.fromhex(block_hex[:160])
    except ValueError:
        raise ValueError("block_hex: not hex") from None
    if len(header) < 80:
        raise ValueError(f"block_hex: {len(header)} bytes, shorter than an 80-byte header")
    return int.from_bytes(header[72:76], "little")


def _summary(verdicts: Mapping[str, str | None]) -> str:
    return ", ".join(f"{n}: {'null' if v is None else v}" for n, v in sorted(verdicts.items()))


async def _stored_data(conn: AsyncConnection, block_hash: str) -> dict[str, Any]:
    """A copy of a stored found block's ``data`` (verdicts, submit outcome) to change and write back
    in the same transaction; KeyError if the block is not stored."""
    row = (
        await conn.execute(select(FoundBlockRow.data).where(FoundBlockRow.block_hash == block_hash))
    ).first()
    if row is None:
        raise KeyError(f"found block {block_hash}: not stored")
    return dict(row.data or {})


def _to_block(row: Any) -> FoundBlock:
    return FoundBlock(
        block_hash=row.block_hash,
        height=row.height,
        prevhash=row.prevhash,
        job_id=row.job_id,
        account=row.account,
        worker=row.worker,
        coinbase_value=row.coinbase_value,
        found_at=row.found_at,
        block_hex=row.block_hex,
    )


class SqlFoundBlockStore:
    """``FoundBlockStore`` on the ``found_blocks`` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.repo = FoundBlocks(engine)

    async def persist(self, block: FoundBlock) -> None:
        await self.repo.add(
            block_hash=block.block_hash,
            height=block.height,
            prevhash=block.prevhash,
            account=block.account,
            worker=block.worker,
            job_id=block.job_id,
            block_hex=block.block_hex,
            coinbase_value=block.coinbase_value,
            bits=header_bits(block.block_hex),
            found_at=block.found_at,
            data={"verdicts": {}, "submit": BlockStatus.PENDING.value},
        )

    async def record_verdict(self, block_hash: str, node: str, verdict: str | None) -> None:
        async with self.engine.begin() as conn:
            data = await _stored_data(conn, block_hash)
            verdicts = dict(data.get("verdicts") or {})
            verdicts[node] = verdict
            data["verdicts"] = verdicts
            await conn.execute(
                FoundBlockRow.__table__.update()
                .where(FoundBlockRow.block_hash == block_hash)
                .values(data=data, verdict=_summary(verdicts), updated_at=datetime.now(UTC))
            )

    async def settle(self, block_hash: str, status: BlockStatus) -> None:
        async with self.engine.begin() as conn:
            data = await _stored_data(conn, block_hash)
            data["submit"] = status.value
            await conn.execute(
                FoundBlockRow.__table__.update()
                .where(FoundBlockRow.block_hash == block_hash)
                .values(status=DB_STATUS[status], data=data, updated_at=datetime.now(UTC))
            )

    async def pending(self) -> list[FoundBlock]:
        return [_to_block(r) for r in await self.repo.with_status("pending")]

    async def outcome(self, block_hash: str) -> BlockOutcome | None:
        row = await self.repo.get(block_hash)
        if row is None:
            return None
        data = row.data or {}
        return BlockOutcome(
            _to_block(row), BlockStatus(data.get("submit", "pending")), dict(data.get("verdicts")
                                                                              or {}))

    async def last_share_at(self, height: int, since: datetime) -> datetime | None:
        """When the pool last recorded a share on work for ``height`` at or after ``since``
        (the bound keeps the query on the ``created_at`` index); None if none."""
        async with self.engine.connect() as conn:
            at = (await conn.execute(select(func.max(Share.created_at))
                                     .where(Share.created_at >= since,
                                            Share.height == height))).scalar()  # fmt: skip
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at

    async def import_recovered(self, block: FoundBlock, bits: int, marker: str) -> bool:
        """Add a block found on the chain (``block_recovery``) as ``accepted``, in one
        transaction; False if the database already has it (also when the block submitter
        recorded it between the scan's look-up and this insert: the unique hash decides)."""
        try:
            async with self.engine.begin() as conn:
                if (await conn.execute(select(FoundBlockRow.id).where(
                        FoundBlockRow.block_hash == block.block_hash))).first() is not None:
                    return False
                now = datetime.now(UTC)
                await conn.execute(FoundBlockRow.__table__.insert().values(
                    block_hash=block.block_hash, height=block.height, prevhash=block.prevhash,
                    account=block.account, worker=block.worker, job_id=block.job_id,
                    block_hex=block.block_hex, coinbase_value=block.coinbase_value, bits=bits,
                    found_at=block.found_at, status=DB_STATUS[BlockStatus.ACCEPTED],
                    verdict=f"recovered from the chain ({marker})", confirmations=0,
                    updated_at=now, data={"verdicts": {}, "submit": BlockStatus.ACCEPTED.value,
                                          "recovered": marker}))  # fmt: skip
        except IntegrityError:
            return False
        return True

    async def adopt_finder(self, block: FoundBlock) -> bool:
        """A block the chain scan imported (finder unknown) that the submitter's own record
        names: take its finder, worker and job, as long as the block is not allocated yet (an
        allocation is frozen with its inputs, the finder among them, and is never rewritten).
        True if the row changed."""
        allocated = select(BlockAllocation.id).where(BlockAllocation.block_id == FoundBlockRow.id)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                FoundBlockRow.__table__.update()
                .where(FoundBlockRow.block_hash == block.block_hash, FoundBlockRow.account == "",
                       ~allocated.exists())
                .values(account=block.account, worker=block.worker, job_id=block.job_id,
                        updated_at=datetime.now(UTC)))  # fmt: skip
        if result.rowcount == 1:
            log.info("found block %s: finder %s.%s taken from the pool's own record (the chain "
                     "scan had imported it first)", block.block_hash, block.account,
                     block.worker)  # fmt: skip
        return result.rowcount == 1

    async def import_outcome(self, outcome: BlockOutcome) -> bool:
        """Copy a block recorded elsewhere (the JSONL fallback) into the table. Returns True if
        anything changed. Never moves a row that is no longer ``pending``."""
        b = outcome.block
        existing = await self.repo.get(b.block_hash)
        changed = False
        if existing is None:
            try:
                await self.persist(b)
            except IntegrityError:  # the chain scan imported it meanwhile (finder unknown)
                return await self.adopt_finder(b) if b.account else False
            changed = True
        elif existing.status != "pending":
            # imported by the chain scan before this record reached the database
            recovered = bool((existing.data or {}).get("recovered"))
            return await self.adopt_finder(b) if recovered and b.account else False
        for node, verdict in sorted(outcome.verdicts.items()):
            await self.record_verdict(b.block_hash, node, verdict)
            changed = True
        if outcome.status is not BlockStatus.PENDING:
            await self.settle(b.block_hash, outcome.status)
            changed = True
        return changed


class DurableFoundBlockStore:
    """The fsync'd JSONL record first, then the database (one attempt: a block the database
    missed is imported from the file later). As a ``FoundBlockStore`` (tests, tools); the pool
    itself gives ``BlockSubmitter`` the file as its record and ``SqlFoundBlockStore`` as its
    database (retried in the background) and uses this class for ``import_fallback``."""

    def __init__(self, sql: SqlFoundBlockStore, fallback: JsonlFoundBlockStore) -> None:
        self.sql = sql
        self.fallback = fallback  # the local record
        self._synced: set[str] = set()  # settled in the file and imported: not read again
        # the file's size when a read left nothing to import: the file only grows by appends,
        # so an unchanged size means there is nothing new (the record holds every block's hex)
        self._synced_size: int | None = None
        self._import_lock = asyncio.Lock()

    async def persist(self, block: FoundBlock) -> None:
        try:
            await self.fallback.persist(block)
        except Exception as exc:
            log.error("found block %s: local record %s failed (%r); database only",
                      block.block_hash, self.fallback.path, exc)  # fmt: skip
            await self.sql.persist(block)  # raises if neither could take it
            return
        await self._db(self.sql.import_outcome(BlockOutcome(block, BlockStatus.PENDING)),
                       block.block_hash)  # fmt: skip

    async def record_verdict(self, block_hash: str, node: str, verdict: str | None) -> None:
        await self.fallback.record_verdict(block_hash, node, verdict)
        await self._db(self.sql.record_verdict(block_hash, node, verdict), block_hash)

    async def settle(self, block_hash: str, status: BlockStatus) -> None:
        await self.fallback.settle(block_hash, status)
        await self._db(self.sql.settle(block_hash, status), block_hash)

    async def _db(self, write: Any, block_hash: str) -> None:
        try:
            await write
        except Exception as exc:
            log.error("found block %s: database write failed (%r); kept in %s and imported "
                      "when the database is back", block_hash, exc,
                      self.fallback.path)  # fmt: skip

    async def pending(self) -> list[FoundBlock]:
        await self.import_fallback()
        blocks: dict[str, FoundBlock] = {}
        for b in await self.fallback.pending():
            blocks[b.block_hash] = b
        try:
            for b in await self.sql.pending():
                blocks.setdefault(b.block_hash, b)
        except Exception as exc:
            log.error("found blocks: database unreachable reading pending blocks (%s); "
                      "using %s only", exc, self.fallback.path)  # fmt: skip
        return list(blocks.values())

    async def import_fallback(self) -> int:
        """Copy the JSONL file's blocks into the database; returns how many rows changed."""
        async with self._import_lock:
            size = self.fallback.size()
            if size is not None and size == self._synced_size:
                return 0
            outcomes = await asyncio.to_thread(self.fallback.read)
            changed = 0
            for outcome in outcomes:
                block_hash = outcome.block.block_hash
                if block_hash in self._synced:
                    continue
                try:
                    if await self.sql.import_outcome(outcome):
                        changed += 1
                        log.warning("found block %s (height %d) imported from %s", block_hash,
                                    outcome.block.height, self.fallback.path)  # fmt: skip
                except Exception as exc:
                    log.error("found blocks: import from %s deferred (%s)", self.fallback.path,
                              exc)  # fmt: skip
                    return changed
                if outcome.status is not BlockStatus.PENDING:
                    self._synced.add(block_hash)
            if all(o.block.block_hash in self._synced for o in outcomes):
                self._synced_size = size
            return changed


FALLBACK_FILE = "found-blocks.jsonl"


def found_block_store(engine: AsyncEngine, config: Config) -> DurableFoundBlockStore:
    """The pool's found blocks: the local record ``<data_dir>/found-blocks.jsonl`` and the
    database."""
    return DurableFoundBlockStore(SqlFoundBlockStore(engine),
                                  JsonlFoundBlockStore(config.data_path / FALLBACK_FILE))
