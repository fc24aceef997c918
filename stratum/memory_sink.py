"""An in-memory ``ShareSink`` for tests and for a pool started before storage is wired in.

Not durable: a process crash loses what it holds. ``poolserver.app`` logs a warning when it uses it.
"""

from __future__ import annotations

import asyncio

from stratum.interfaces import AcceptedShare, BlockCandidate


class MemoryShareSink:
    def __init__(self, maxlen: int | None = None) -> None:
        self.shares: list[AcceptedShare] = []
        self._maxlen = maxlen
        self._event = asyncio.Event()
        self.total = 0

    async def put(self, share: AcceptedShare) -> None:
        self.shares.append(share)
        self.total += 1
        if self._maxlen is not None and len(self.shares) > self._maxlen:
            del self.shares[: len(self.shares) - self._maxlen]
        self._event.set()

    async def put_many(self, shares: list[AcceptedShare]) -> None:
        """Batch form used by the server for all shares checked in one loop tick."""
        self.shares.extend(shares)
        self.total += len(shares)
        if self._maxlen is not None and len(self.shares) > self._maxlen:
            del self.shares[: len(self.shares) - self._maxlen]
        self._event.set()

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
