"""Load test (slow): hundreds of firmware-faithful clients on one server, all shares accounted."""

from __future__ import annotations

import asyncio
import resource

import pytest

from tests.stratum_client import StratumClient
from tests.stratum_support import start_server

CLIENTS = 400
SHARES_EACH = 5


@pytest.mark.slow
async def test_hundreds_of_clients_every_share_acked_and_recorded():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * CLIENTS)), hard))
    server, port, sink, _ = await start_server(
        start_difficulty=1e-8, max_connections_per_ip=0, auth_timeout_s=60
    )
    kinds = ["cgminer", "bitaxe", "cpuminer"]
    sem = asyncio.Semaphore(100)

    async def miner(i: int) -> int:
        async with sem:
            c = await StratumClient.connect("127.0.0.1", port)
            kind = kinds[i % 3]
            worker = f"acc{i % 7}.rig{i}"
            await c.login_as(kind, worker)
        job = await c.wait_job(timeout=30)
        vb = 0x2000 if kind != "cpuminer" else None
        futs = []
        for _ in range(SHARES_EACH):  # pipelined: all in flight at once
            found = c.grind(job, version_bits=vb)
            msg, fut = c.request_future("mining.submit", found.params(worker, job.job_id))
            c.send_lines(msg)
            futs.append(fut)
        # one bad share each, too
        bad = c.grind(job, want_share=False, version_bits=vb)
        msg, fut = c.request_future("mining.submit", bad.params(worker, job.job_id))
        c.send_lines(msg)
        replies = await asyncio.wait_for(asyncio.gather(*futs, fut), 60)
        await c.close()
        assert replies[-1]["error"][0] == 23
        return sum(r["result"] is True for r in replies[:-1])

    accepted = await asyncio.gather(*(miner(i) for i in range(CLIENTS)))
    assert sum(accepted) == CLIENTS * SHARES_EACH
    await sink.wait_for(CLIENTS * SHARES_EACH, timeout=30)
    assert server.stats.shares["accepted"] == CLIENTS * SHARES_EACH
    assert server.stats.shares["low_difficulty"] == CLIENTS
    assert len({s.session_id for s in sink.shares}) == CLIENTS  # unique extranonce1 each
    await server.shutdown()
