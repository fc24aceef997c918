"""Found blocks: assemble, persist durably, then submit to every node (``BlockSink``).

API (for the Stratum server wiring)::

    store = JsonlFoundBlockStore(data_dir / "found-blocks.jsonl")   # or the storage engineer's DB
    sink = BlockSubmitter(store, submit_targets(rpc), on_status=...,
                          on_submitted=feed.refresh_now)
    await sink.replay_pending()        # at startup: blocks persisted but never settled
    await sink.block_found(candidate)  # returns once the block is on disk; submits in background
    await sink.drain()                 # at shutdown / in tests

Order matters: a found block is written and fsync'd *before* the first ``submitblock``, so a
crash between the two cannot lose it (``replay_pending`` resubmits it at the next start). Each
node gets the block; transport errors are retried with backoff for ``retry_window_s``.
bitcoind's verdict is recorded per node: ``None`` → accepted, ``duplicate`` → accepted (our own
block, e.g. resubmitted after a restart), ``inconclusive`` → stored off the best chain,
anything else (``high-hash``, ``bad-txnmrklroot``, ``bad-cb-amount``, ...) → rejected and
logged at ERROR as an alert.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from poolserver.bitcoin.node import NodeGroup, NodeUnavailable, Rpc, RpcError, RpcTransientError
from stratum.interfaces import BlockCandidate
from stratum.jobs import BlockAssemblyError, assemble_block

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
    """Where found blocks live; ``persist`` returns only when the block is durable."""

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


@dataclass
class BlockStats:
    found: int = 0
    accepted: int = 0
    rejected: int = 0
    inconclusive: int = 0
    unsettled: int = 0  # gave up for now on transport errors; replayed at next start
    submit_errors: int = 0


class BlockSubmitter:
    """``stratum.interfaces.BlockSink``: persist first, then submit to every node."""

    def __init__(
        self,
        store: FoundBlockStore,
        nodes: Sequence[Rpc],
        *,
        retry_s: float = 0.5,
        retry_max_s: float = 10.0,
        retry_window_s: float = 600.0,
        on_status: StatusCallback | None = None,
        on_submitted: Callable[[str], None] | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("BlockSubmitter needs at least one node")
        self.store = store
        self.nodes = list(nodes)
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.retry_window_s = retry_window_s
        self.on_status = on_status
        self.on_submitted = on_submitted
        self.stats = BlockStats()
        self._tasks: set[asyncio.Task[BlockOutcome]] = set()

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
        await self.store.persist(block)  # durable before anything is sent
        self.stats.found += 1
        log.warning("BLOCK FOUND height %d hash %s by %s.%s; persisted, submitting to %d node(s)",
                    block.height, block_hash, block.account, block.worker,
                    len(self.nodes))  # fmt: skip
        self._spawn(block)

    def _spawn(self, block: FoundBlock) -> asyncio.Task[BlockOutcome]:
        task = asyncio.create_task(self._submit_all(block))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def replay_pending(self) -> int:
        """Resubmit blocks persisted by an earlier run but never settled."""
        blocks = await self.store.pending()
        for b in blocks:
            log.warning("replaying found block %s (height %d) persisted at %s", b.block_hash,
                        b.height, b.found_at.isoformat())  # fmt: skip
            self._spawn(b)
        return len(blocks)

    async def drain(self) -> list[BlockOutcome]:
        return list(await asyncio.gather(*list(self._tasks)))

    async def _submit_all(self, block: FoundBlock) -> BlockOutcome:
        """Submit and settle; never raises (``drain`` runs on shutdown before storage closes)."""
        try:
            return await self._submit_and_settle(block)
        except Exception as exc:  # the store failed after the block was persisted
            self.stats.unsettled += 1
            log.error("block %s height %d: found-block store failed (%r); it stays pending and "
                      "is replayed at the next start", block.block_hash, block.height,
                      exc)  # fmt: skip
            return BlockOutcome(block, BlockStatus.PENDING)

    async def _submit_and_settle(self, block: FoundBlock) -> BlockOutcome:
        answers = await asyncio.gather(*(self._submit_one(n, block) for n in self.nodes))
        verdicts = {n.name: v for n, (ok, v) in zip(self.nodes, answers, strict=True) if ok}
        normalized = [None if v == "duplicate" else v for v in verdicts.values()]
        if any(v is None for v in normalized):
            status = BlockStatus.ACCEPTED
            self.stats.accepted += 1
            log.warning("BLOCK %s height %d ACCEPTED (%s)", block.block_hash, block.height,
                        _fmt(verdicts))  # fmt: skip
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
            self.stats.unsettled += 1
            log.error("block %s height %d could not be submitted to any node; it stays pending "
                      "and is replayed at the next start", block.block_hash,
                      block.height)  # fmt: skip
            return BlockOutcome(block, BlockStatus.PENDING, verdicts)
        await self.store.settle(block.block_hash, status)
        outcome = BlockOutcome(block, status, verdicts)
        if self.on_submitted is not None:
            self.on_submitted(f"block {block.block_hash} submitted")
        if self.on_status is not None:
            try:
                r = self.on_status(outcome)
                if inspect.isawaitable(r):
                    await r
            except Exception:
                log.exception("block status callback failed for %s", block.block_hash)
        return outcome

    async def _submit_one(self, node: Rpc, block: FoundBlock) -> tuple[bool, str | None]:
        """(answered, verdict). Retries transport errors within the retry window."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_window_s
        delay = self.retry_s
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
            if verdict is not None and not isinstance(verdict, str):
                verdict = f"unexpected answer {verdict!r}"
            await self.store.record_verdict(block.block_hash, node.name, verdict)
            return True, verdict


def submit_targets(rpc: Rpc) -> list[Rpc]:
    """Every node a block must reach: each member of a ``NodeGroup``, else the one ``rpc``."""
    return list(rpc.members) if isinstance(rpc, NodeGroup) else [rpc]


def _fmt(verdicts: dict[str, str | None]) -> str:
    return ", ".join(f"{n}: {'null' if v is None else v}" for n, v in verdicts.items())
