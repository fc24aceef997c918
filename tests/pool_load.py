"""A Stratum load generator that remembers every share the pool acknowledged.

Several connections (cgminer, bitaxe and cpuminer connect sequences in turn, from
``tests/stratum_client``) grind real shares with the hash core and keep ``in_flight`` submits
outstanding each. A reply with
``result: true`` is recorded at once in ``acked`` (keyed by the share's header hash, with worker,
job, extranonce2, ntime, nonce and whether it was a block candidate). When the connection drops
(the pool was killed) the unanswered submits are forgotten, exactly like a miner would, and the
connection is made again until ``stop`` is set, so the same load runs across pool restarts.

Every share gets a globally unique extranonce2 (one counter for all connections and reconnects),
so no two submitted shares can have the same header hash, even when the restarted pool hands out
an extranonce1 it used before.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.stratum_client import Found, NotifiedJob, StratumClient, StratumClientError

FIRMWARE = ("cgminer", "bitaxe", "cpuminer")
REPLY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AckedShare:
    worker: str  # as submitted: "account.worker"
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    share_hash: bytes  # header hash, internal byte order (the shares table's share_hash)
    block: bool  # met the network target: a block candidate

    def describe(self) -> str:
        return (
            f"{self.worker} job {self.job_id} en2 {self.extranonce2} ntime {self.ntime} "
            f"nonce {self.nonce} hash {self.block_hash}{' (block)' if self.block else ''}"
        )

    @property
    def block_hash(self) -> str:
        """Display (RPC) order, as in the found_blocks table."""
        return self.share_hash[::-1].hex()


@dataclass
class LoadStats:
    submitted: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    unanswered: int = 0  # submits whose connection dropped before the reply
    rejected: Counter[str] = field(default_factory=Counter)


class ShareLoad:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int = 6,
        in_flight: int = 4,
        account: str = "kazminer",
    ) -> None:
        self.host = host
        self.port = port
        self.connections = connections
        self.in_flight = in_flight
        self.account = account
        self.acked: dict[bytes, AckedShare] = {}
        self.stats = LoadStats()
        self._en2 = itertools.count(1)

    @property
    def blocks(self) -> list[AckedShare]:
        return [a for a in self.acked.values() if a.block]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._connection(i, stop) for i in range(self.connections)))

    async def _connection(self, i: int, stop: asyncio.Event) -> None:
        firmware = FIRMWARE[i % len(FIRMWARE)]
        worker = f"{self.account}.rig{i}"
        while not stop.is_set():
            try:
                client = await asyncio.wait_for(StratumClient.connect(self.host, self.port), 2)
            except (OSError, TimeoutError):
                self.stats.connect_failures += 1
                await asyncio.sleep(0.05)
                continue
            self.stats.connects += 1
            client._en2_counter = self._en2  # unique extranonce2 across every connection
            try:
                await self._handshake(client, firmware, worker)
                await self._mine(client, worker, stop)
            except (StratumClientError, ConnectionError, OSError, TimeoutError):
                self.stats.disconnects += 1
            finally:
                await client.close()

    @staticmethod
    async def _handshake(client: StratumClient, firmware: str, worker: str) -> None:
        await client.login_as(firmware, worker)
        await client.wait_job(timeout=5)

    async def _mine(self, client: StratumClient, worker: str, stop: asyncio.Event) -> None:
        outstanding: dict[asyncio.Future[dict[str, Any]], tuple[NotifiedJob, Found]] = {}
        try:
            while not stop.is_set():
                if client.closed:
                    raise StratumClientError("connection closed")
                while len(outstanding) < self.in_flight:
                    job = client.last_job
                    assert job is not None
                    found = client.grind(job)
                    msg, fut = client.request_future(
                        "mining.submit", found.params(worker, job.job_id)
                    )
                    fut.add_done_callback(_consume)
                    client.send_lines(msg)
                    outstanding[fut] = (job, found)
                    self.stats.submitted += 1
                    await asyncio.sleep(0)  # let replies in while grinding the next share
                done, _ = await asyncio.wait(
                    outstanding, timeout=REPLY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    raise TimeoutError("no reply to any outstanding submit")
                for fut in done:
                    self._settle(fut, worker, *outstanding.pop(fut))
        finally:
            # Replies that arrived before the connection dropped still count as acknowledged.
            for fut, (job, found) in outstanding.items():
                if fut.done():
                    self._settle(fut, worker, job, found)
                else:
                    self.stats.unanswered += 1

    def _settle(
        self, fut: asyncio.Future[dict[str, Any]], worker: str, job: NotifiedJob, found: Found
    ) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.stats.unanswered += 1
            return
        reply = fut.result()
        if reply.get("result") is True:
            self.acked[found.hash] = AckedShare(
                worker=worker,
                job_id=job.job_id,
                extranonce2=found.extranonce2,
                ntime=found.ntime,
                nonce=found.nonce,
                share_hash=found.hash,
                block=found.meets_network,
            )
        else:
            error = reply.get("error")
            code = str(error[0]) if isinstance(error, list) and error else repr(error)
            self.stats.rejected[code] += 1


def _consume(fut: asyncio.Future[dict[str, Any]]) -> None:
    """Mark a failed reply future's exception as retrieved (a dropped connection is expected)."""
    if not fut.cancelled():
        fut.exception()
