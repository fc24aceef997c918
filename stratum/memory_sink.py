"""An in-memory ``ShareSink`` for tests and for a pool started before storage is wired in.

Not durable: a process crash loses what it holds. ``poolserver.app`` logs a warning when it uses it.
"""

from __future__ import annotations

import asyncio

from stratum.interfaces import AcceptedShare, BlockCandidate, DuplicateShare


class MemoryShareSink:
    """``dedupe=True`` refuses a share hash it already holds (``DuplicateShare``), as the storage
    journal does; tests may also add hashes to ``held`` to simulate shares stored before."""

    def __init__(self, maxlen: int | None = None, *, dedupe: bool = False) -> None:
        self.shares: list[AcceptedShare] = []
        self._maxlen = maxlen
        self._event = asyncio.Event()
        self.total = 0
        self.dedupe = dedupe
        self.held: set[bytes] = set()

    def _refuse(self, share: AcceptedShare) -> DuplicateShare | None:
        if not self.dedupe:
            return None
        if share.share_hash in self.held:
            return DuplicateShare(f"share {share.share_hash[::-1].hex()} is already stored")
        self.held.add(share.share_hash)
        return None

    async def put(self, share: AcceptedShare) -> None:
        refused = self._refuse(share)
        if refused is not None:
            raise refused
        self.shares.append(share)
        self.total += 1
        if self._maxlen is not None and len(self.shares) > self._maxlen:
            del self.shares[: len(self.shares) - self._maxlen]
        self._event.set()

    async def put_many(self, shares: list[AcceptedShare]) -> list[DuplicateShare | None] | None:
        """Batch form used by the server for all shares checked in one loop tick: None when all
        were stored, else one outcome per share (None = stored, ``DuplicateShare`` = refused)."""
        outcomes = [self._refuse(s) for s in shares] if self.dedupe else None
        stored = shares if outcomes is None else [
            s for s, o in zip(shares, outcomes, strict=True) if o is None
        ]  # fmt: skip
        self.shares.extend(stored)
        self.total += len(stored)
        if self._maxlen is not None and len(self.shares) > self._maxlen:
            del self.shares[: len(self.shares) - self._maxlen]
        self._event.set()
        if outcomes is None or not any(outcomes):
            return None
        return outcomes

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[AcceptedShare]:
        """Wait until at least ``count`` shares were put (tests)."""
        async with asyncio.timeout(timeout):
            while self.total < count:
                self._event.clear()
                await self._event.wait()
        return list(self.shares)


class MemoryBlockSink:
    """Records block candidates (tests; the real sink is ``poolserver.bitcoin.blocks``)."""

    def __init__(self) -> None:
        self.candidates: list[BlockCandidate] = []
        self._event = asyncio.Event()

    async def block_found(self, candidate: BlockCandidate) -> None:
        self.candidates.append(candidate)
        self._event.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[BlockCandidate]:
        async with asyncio.timeout(timeout):
            while len(self.candidates) < count:
                self._event.clear()
                await self._event.wait()
        return list(self.candidates)
