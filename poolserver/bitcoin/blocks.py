"""Found blocks: assemble, submit to every node at once, record concurrently (``BlockSink``).

API (for the Stratum server wiring)::

    record = JsonlFoundBlockStore(data_dir / "found-blocks.jsonl")  # the local fsync'd record
    sink = BlockSubmitter(record, submit_targets(rpc), database=SqlFoundBlockStore(engine),
                          on_submitted=feed.refresh_now)
    await sink.replay_pending()        # at startup: blocks recorded but never settled
    await sink.block_found(candidate)  # submitted at once; returns once the block is recorded
    await sink.drain()                 # at shutdown / in tests

Order (issue 10 part 3): submission is the fast path. ``block_found`` assembles the block and
starts ``submitblock`` to every node *before* any storage I/O; the local fsync'd record is
written concurrently, then the database. ``block_found`` returns once the local record is
durable and raises ``BlockNotRecorded`` only if neither the record nor the database could take
the block -- it has been submitted regardless. A storage failure is logged at ERROR, counted in
``BlockStats`` (``record_errors``, ``db_errors``, ``db_behind``) and the database write is
retried in the background until it succeeds; it is never a reason not to submit. A crash
between the send and the record can lose the record, not the block: a block that reached the
chain is found again by ``poolserver.bitcoin.block_recovery`` (scan of the recent chain for
coinbases paying the pool).

Each node gets the block; transport errors are retried with backoff for ``retry_window_s``.
bitcoind's verdict is recorded per node once the record exists: ``None`` → accepted,
``duplicate`` → accepted (our own block, e.g. resubmitted after a restart), ``inconclusive`` →
stored off the best chain, anything else (``high-hash``, ``bad-txnmrklroot``, ``bad-cb-amount``,
...) → rejected and logged at ERROR as an alert.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from poolserver.bitcoin.node import NodeGroup, NodeUnavailable, Rpc, RpcError, RpcTransientError
from stratum.interfaces import BlockCandidate
from stratum.jobs import BlockAssemblyError, assemble_block
from stratum.stats import Histogram

# Share arrival -> submitblock handed to the node client (seconds); the target is p99 < 20 ms.
SUBMIT_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip

log = logging.getLogger(__name__)


class BlockStatus(Enum):
    PENDING = "pending"  # persisted, submission not settled (replayed at startup)
    ACCEPTED = "accepted"  # at least one node took it (null or "duplicate")
    INCONCLUSIVE = "inconclusive"  # valid but not on the node's best chain (stale race)
    REJECTED = "rejected"  # every node that answered refused it


@dataclass(frozen=True, slots=True)
class FoundBlock:
    block_hash: str  # display hex
    height: int
    prevhash: str  # display hex
    job_id: str
    account: str
    worker: str
    coinbase_value: int  # satoshis
    found_at: datetime  # UTC, aware
    block_hex: str

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["found_at"] = self.found_at.isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FoundBlock:
        d = dict(d)
        d["found_at"] = datetime.fromisoformat(d["found_at"])
        return cls(**d)


@dataclass
class BlockOutcome:
    block: FoundBlock
    status: BlockStatus
    verdicts: dict[str, str | None] = field(default_factory=dict)  # node → bitcoind's answer


class FoundBlockStore(Protocol):
    """The local record of found blocks; ``persist`` returns only when the block is durable."""

    async def persist(self, block: FoundBlock) -> None: ...

    async def record_verdict(self, block_hash: str, node: str, verdict: str | None) -> None: ...

    async def settle(self, block_hash: str, status: BlockStatus) -> None: ...

    async def pending(self) -> list[FoundBlock]: ...


class JsonlFoundBlockStore:
    """Append-only JSON lines, fsync'd on every write. Records: ``found`` (the block),
    ``verdict`` (one node's answer), ``settled`` (final status). A torn last line from a crash
    mid-write is skipped on reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def _append_sync(self, record: dict[str, Any]) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if new:  # make the new directory entry durable too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def _append(self, record: dict[str, Any]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._append_sync, record)

    async def persist(self, block: FoundBlock) -> None:
        await self._append({"type": "found", **block.to_json()})

    async def record_verdict(self, block_hash: str, node: str, verdict: str | None) -> None:
        await self._append({"type": "verdict", "block_hash": block_hash, "node": node,
                            "verdict": verdict, "at": datetime.now(UTC).isoformat()})  # fmt: skip

    async def settle(self, block_hash: str, status: BlockStatus) -> None:
        await self._append({"type": "settled", "block_hash": block_hash, "status": status.value,
                            "at": datetime.now(UTC).isoformat()})  # fmt: skip

    def size(self) -> int | None:
        """The file's size in bytes (None while it does not exist)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return None

    def read(self) -> list[BlockOutcome]:
        """Every block in the file with its verdicts and status (PENDING if not settled)."""
        if not self.path.exists():
            return []
        outcomes: dict[str, BlockOutcome] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                kind = rec.pop("type")
                if kind == "found":
                    block = FoundBlock.from_json(rec)
                    outcomes.setdefault(block.block_hash, BlockOutcome(block, BlockStatus.PENDING))
                elif kind == "verdict" and rec["block_hash"] in outcomes:
                    outcomes[rec["block_hash"]].verdicts[rec["node"]] = rec["verdict"]
                elif kind == "settled" and rec["block_hash"] in outcomes:
                    outcomes[rec["block_hash"]].status = BlockStatus(rec["status"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s line %d unreadable (%s)%s", self.path, n, exc,
                            ", torn last write ignored" if n == len(lines) else "")  # fmt: skip
        return list(outcomes.values())

    async def pending(self) -> list[FoundBlock]:
        async with self._lock:
            outcomes = await asyncio.to_thread(self.read)
        return [o.block for o in outcomes if o.status is BlockStatus.PENDING]


StatusCallback = Callable[[BlockOutcome], Awaitable[None] | None]


class FoundBlockDatabase(Protocol):
    """The database side of found blocks (``poolserver.bitcoin.found_blocks.SqlFoundBlockStore``):
    written after the local record, idempotently, so a write can simply be retried."""

    async def import_outcome(self, outcome: BlockOutcome) -> bool: ...

    async def pending(self) -> list[FoundBlock]: ...


class BlockNotRecorded(RuntimeError):
    """Neither the local record nor the database took the block (it was submitted all the same)."""


@dataclass
class BlockStats:
    found: int = 0
    accepted: int = 0
    rejected: int = 0
    inconclusive: int = 0
    unsettled: int = 0  # gave up for now on transport errors; replayed at next start
    submit_errors: int = 0
    # storage (alerts): the local fsync'd record failed (the block was submitted regardless)
    record_errors: int = 0
    # failed database writes of found blocks (each retried in the background until it succeeds)
    db_errors: int = 0
    # gauge: found blocks the database does not have completely yet (retrying in the background)
    db_behind: int = 0
    # blocks paying the pool found on the chain but missing from the database, imported
    recovered_from_chain: int = 0
    # node name -> seconds from the solving share's arrival (the submit line read) to the first
    # submitblock handed to that node's client (replayed blocks have no arrival: not observed)
    submit_latency: dict[str, Histogram] = field(default_factory=dict)


class BlockSubmitter:
    """``stratum.interfaces.BlockSink``: submit to every node first, record concurrently."""

    def __init__(
        self,
        store: FoundBlockStore,
        nodes: Sequence[Rpc],
        *,
        database: FoundBlockDatabase | None = None,
        retry_s: float = 0.5,
        retry_max_s: float = 10.0,
        retry_window_s: float = 600.0,
        db_retry_s: float = 1.0,
        db_retry_max_s: float = 60.0,
        db_drain_s: float = 10.0,
        on_status: StatusCallback | None = None,
        on_submitted: Callable[[str], None] | None = None,
        stats: BlockStats | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("BlockSubmitter needs at least one node")
        self.store = store  # the local record (fsync'd JSONL in the pool)
        self.database = database
        self.nodes = list(nodes)
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.retry_window_s = retry_window_s
        self.db_retry_s = db_retry_s
        self.db_retry_max_s = db_retry_max_s
        self.db_drain_s = db_drain_s
        self.on_status = on_status
        self.on_submitted = on_submitted
        self.stats = stats if stats is not None else BlockStats()
        self._tasks: set[asyncio.Task[BlockOutcome]] = set()
        self._db_tasks: set[asyncio.Task[None]] = set()

    async def block_found(self, candidate: BlockCandidate) -> None:
        job = candidate.job
        block_hash = candidate.block_hash[::-1].hex()
        try:
            raw = assemble_block(
                job, candidate.extranonce1, candidate.extranonce2, candidate.header
            )
        except BlockAssemblyError as exc:
            log.error("BLOCK %s at height %d could not be assembled: %s", block_hash, job.height,
                      exc)  # fmt: skip
            raise
        block = FoundBlock(
            block_hash=block_hash,
            height=job.height,
            prevhash=job.prevhash[::-1].hex(),
            job_id=job.job_id,
            account=candidate.account,
            worker=candidate.worker,
            coinbase_value=job.template.coinbase_value,
            found_at=datetime.now(UTC),
            block_hex=raw.hex(),
        )
        self.stats.found += 1
        # The submissions are started before any storage I/O: they run as soon as this
        # coroutine first yields (in the record's write below), never after it.
        recorded = self._start(block, db_has=False, arrived=candidate.arrived)
        local_ok = db_ok = False
        try:
            local_ok = await self._record_locally(block)
            if not local_ok and self.database is not None:
                try:
                    await self.database.import_outcome(BlockOutcome(block, BlockStatus.PENDING))
                    db_ok = True
                except Exception as exc:
                    self.stats.db_errors += 1
                    log.error("BLOCK %s height %d: database write failed too (%r); retried in "
                              "the background", block_hash, block.height, exc)  # fmt: skip
        finally:  # also when cancelled: the submission's task must not wait for ever
            recorded.set_result(local_ok)
        if not (local_ok or db_ok):
            raise BlockNotRecorded(f"block {block_hash} at height {block.height} was submitted "
                                   "but could not be recorded")  # fmt: skip

    async def _record_locally(self, block: FoundBlock) -> bool:
        try:
            await self.store.persist(block)
            return True
        except Exception as exc:
            self.stats.record_errors += 1
            log.error("BLOCK %s height %d: local record FAILED (%r); it was submitted all the "
                      "same", block.block_hash, block.height, exc)  # fmt: skip
            return False

    def _start(
        self, block: FoundBlock, *, db_has: bool, arrived: float = 0.0
    ) -> asyncio.Future[bool]:
        """Start the submissions to every node now; returns the future the caller resolves
        once the local record is written (True) or failed (False). ``arrived``: monotonic time
        the solving share was read (0.0 = unknown, e.g. a replay)."""
        submits = [asyncio.create_task(self._submit_one(n, block, arrived)) for n in self.nodes]
        loop = asyncio.get_running_loop()
        recorded: asyncio.Future[bool] = loop.create_future()
        settled: asyncio.Future[BlockOutcome] = loop.create_future()
        task = asyncio.create_task(self._submit_all(block, submits, recorded, settled))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.database is not None:
            db = asyncio.create_task(self._to_database(block, recorded, settled, db_has))
            self._db_tasks.add(db)
            db.add_done_callback(self._db_tasks.discard)
        return recorded

    async def replay_pending(self) -> int:
        """Resubmit blocks recorded by an earlier run but never settled (in the local record or,
        from before the record came first, in the database)."""
        blocks = {b.block_hash: b for b in await self.store.pending()}
        in_db: set[str] = set()
        if self.database is not None:
            try:
                for b in await self.database.pending():
                    in_db.add(b.block_hash)
                    if b.block_hash not in blocks:
                        blocks[b.block_hash] = b
                        await self._record_locally(b)
            except Exception as exc:
                log.error("found blocks: database unreachable reading pending blocks (%r); "
                          "replaying the local record's only", exc)  # fmt: skip
        for b in blocks.values():
            log.warning("replaying found block %s (height %d) recorded at %s", b.block_hash,
                        b.height, b.found_at.isoformat())  # fmt: skip
            self._start(b, db_has=b.block_hash in in_db).set_result(True)
        return len(blocks)

    async def drain(self) -> list[BlockOutcome]:
        """Wait for every submission to settle, then up to ``db_drain_s`` for the database;
        database writes still failing are given up (the local record is imported at the next
        start or payout tick)."""
        outcomes = list(await asyncio.gather(*list(self._tasks)))
        if self._db_tasks:
            _, late = await asyncio.wait(list(self._db_tasks), timeout=self.db_drain_s)
            for t in late:
                t.cancel()
            if late:
                log.error("%d found block(s) not yet in the database at shutdown; the local "
                          "record is imported at the next start", len(late))  # fmt: skip
                await asyncio.gather(*late, return_exceptions=True)
        return outcomes

    async def _submit_all(
        self,
        block: FoundBlock,
        submits: list[asyncio.Task[tuple[bool, str | None]]],
        recorded: asyncio.Future[bool],
        settled: asyncio.Future[BlockOutcome],
    ) -> BlockOutcome:
        """Wait for every node's answer, then record it once the block's record exists; never
        raises (``drain`` runs on shutdown before storage closes)."""
        try:
            answers = await asyncio.gather(*submits)
            outcome = self._judge(block, answers)
            if outcome.status is not BlockStatus.PENDING and self.on_submitted is not None:
                self.on_submitted(f"block {block.block_hash} submitted")
            if not settled.done():
                settled.set_result(outcome)
            if not await recorded:
                return outcome  # no local record: the database gets the outcome
            try:
                for node, verdict in outcome.verdicts.items():
                    await self.store.record_verdict(block.block_hash, node, verdict)
                if outcome.status is not BlockStatus.PENDING:
                    await self.store.settle(block.block_hash, outcome.status)
            except Exception as exc:
                self.stats.unsettled += 1
                log.error("block %s height %d: found-block record failed (%r); it stays "
                          "pending and is replayed at the next start", block.block_hash,
                          block.height, exc)  # fmt: skip
                return BlockOutcome(block, BlockStatus.PENDING, outcome.verdicts)
        except BaseException:
            if not settled.done():
                settled.cancel()
            raise
        if self.on_status is not None and outcome.status is not BlockStatus.PENDING:
            try:
                r = self.on_status(outcome)
                if inspect.isawaitable(r):
                    await r
            except Exception:
                log.exception("block status callback failed for %s", block.block_hash)
        return outcome

    def _judge(self, block: FoundBlock, answers: Sequence[tuple[bool, str | None]]
               ) -> BlockOutcome:  # fmt: skip
        verdicts = {n.name: v for n, (ok, v) in zip(self.nodes, answers, strict=True) if ok}
        normalized = [None if v == "duplicate" else v for v in verdicts.values()]
        if any(v is None for v in normalized):
            status = BlockStatus.ACCEPTED
            self.stats.accepted += 1
            log.warning("BLOCK %s height %d by %s.%s ACCEPTED (%s)", block.block_hash,
                        block.height, block.account, block.worker, _fmt(verdicts))  # fmt: skip
        elif "inconclusive" in normalized:
            status = BlockStatus.INCONCLUSIVE
            self.stats.inconclusive += 1
            log.warning("block %s height %d inconclusive: valid but not on the best chain (%s)",
                        block.block_hash, block.height, _fmt(verdicts))  # fmt: skip
        elif verdicts:
            status = BlockStatus.REJECTED
            self.stats.rejected += 1
            log.error("BLOCK %s height %d REJECTED: %s; block hex kept in the found-block store",
                      block.block_hash, block.height, _fmt(verdicts))  # fmt: skip
        else:
            status = BlockStatus.PENDING
            self.stats.unsettled += 1
            log.error("block %s height %d could not be submitted to any node; it stays pending "
                      "and is replayed at the next start", block.block_hash,
                      block.height)  # fmt: skip
        return BlockOutcome(block, status, verdicts)

    async def _to_database(
        self,
        block: FoundBlock,
        recorded: asyncio.Future[bool],
        settled: asyncio.Future[BlockOutcome],
        db_has: bool,
    ) -> None:
        """The database after the local record: the block, then its verdicts and status, each
        retried with backoff until the database takes it."""
        self.stats.db_behind += 1
        try:
            if not await recorded:
                db_has = False  # block_found tried once and counted it; retry from here on
            if not db_has:
                await self._db_write(BlockOutcome(block, BlockStatus.PENDING))
            try:
                outcome = await settled
            except asyncio.CancelledError:
                if settled.cancelled():
                    return
                raise
            if outcome.verdicts or outcome.status is not BlockStatus.PENDING:
                await self._db_write(outcome)
        finally:
            self.stats.db_behind -= 1

    async def _db_write(self, outcome: BlockOutcome) -> None:
        assert self.database is not None
        delay = self.db_retry_s
        failures = 0
        b = outcome.block
        while True:
            try:
                await self.database.import_outcome(outcome)
            except Exception as exc:
                failures += 1
                self.stats.db_errors += 1
                log.error("found block %s height %d: database write failed (%r, attempt %d); "
                          "kept in the local record, retrying in %.1f s", b.block_hash, b.height,
                          exc, failures, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.db_retry_max_s)
                continue
            if failures:
                log.warning("found block %s height %d: in the database after %d failed "
                            "attempt(s)", b.block_hash, b.height, failures)  # fmt: skip
            return

    async def _submit_one(
        self, node: Rpc, block: FoundBlock, arrived: float = 0.0
    ) -> tuple[bool, str | None]:
        """(answered, verdict). Retries transport errors within the retry window."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_window_s
        delay = self.retry_s
        if arrived:
            latency = self.stats.submit_latency.get(node.name)
            if latency is None:
                latency = self.stats.submit_latency[node.name] = Histogram(SUBMIT_LATENCY_BUCKETS)
            latency.observe(max(0.0, time.monotonic() - arrived))
        while True:
            try:
                verdict = await node.call("submitblock", block.block_hex)
            except (NodeUnavailable, RpcTransientError) as exc:
                self.stats.submit_errors += 1
                if loop.time() + delay > deadline:
                    log.error("giving up submitting %s to %s for now: %s", block.block_hash,
                              node.name, exc)  # fmt: skip
                    return False, None
                log.warning("submitblock %s to %s failed (%s); retrying in %.1f s",
                            block.block_hash, node.name, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except RpcError as exc:
                verdict = f"rpc-error {exc.code}: {exc.message}"
            except Exception as exc:  # a node adapter bug must not stop the other nodes
                log.error("submitblock %s to %s: unexpected error %r", block.block_hash,
                          node.name, exc)  # fmt: skip
                return False, None
            if verdict is not None and not isinstance(verdict, str):
                verdict = f"unexpected answer {verdict!r}"
            return True, verdict


def submit_targets(rpc: Rpc) -> list[Rpc]:
    """Every node a block must reach: each member of a ``NodeGroup``, else the one ``rpc``."""
    return list(rpc.members) if isinstance(rpc, NodeGroup) else [rpc]


def _fmt(verdicts: dict[str, str | None]) -> str:
    return ", ".join(f"{n}: {'null' if v is None else v}" for n, v in verdicts.items())
