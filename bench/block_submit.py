"""Block submission latency: from a block share's submit line to ``submitblock`` on the wire.

    .venv/bin/python bench/block_submit.py [--blocks 200] [--stall 2.0] [--interval-ms 20]

One process, one event loop, real parts: a real ``StratumServer`` on a loopback socket with a
real Stratum client (``tests/stratum_client.py``), the pool's ``BlockSubmitter`` with its
``NodeClient`` (HTTP JSON-RPC), and a minimal node HTTP server (aiohttp) that takes
``time.perf_counter()`` the moment a ``submitblock`` request body has arrived. The job is the
recorded regtest template (network target 0x207fffff), so every share the client grinds at the
network difficulty is a block.

Latency per block = node's body-arrival time - the client's time just before it wrote the
``mining.submit`` line (the closest point to "the share arrived" reachable without editing
``stratum/``). Blocks are sent ``--interval-ms`` apart (each is a new header: no duplicates).

Cases, in the same run:
1. baseline: a bare ``NodeClient.call("submitblock", hex)`` to the same node (the HTTP floor).
2. healthy: found blocks recorded in the fsync'd JSONL file and a real SQLite database.
3. stalled: the same, but every database write of a found block first waits ``--stall`` s (a
   stalled database: lock wait, failover, full disk on the DB host).

It builds the submitter the way the tree it runs in wires it (``database=`` since issue 10 part
3; before it, ``DurableFoundBlockStore`` = the database, JSONL fallback), so the same file
measures the old code: copy it into a checkout of main and run it there.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Node:
    """A loopback JSON-RPC server answering like bitcoind to submitblock (null: accepted),
    stamping the arrival of each submitblock body."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # block header hex -> perf_counter at arrival
        self.port = 0
        self._runner: Any = None

    async def start(self) -> Node:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            at = time.perf_counter()
            import json

            req = json.loads(body)
            if req.get("method") == "submitblock":
                self.arrivals[req["params"][0][:160]] = at
            return web.json_response({"result": None, "error": None, "id": req.get("id")})

        app = web.Application()
        app.router.add_post("/", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def fmt(name: str, ms: list[float], base: float | None = None) -> str:
    p50, p99, mx = statistics.median(ms), pct(ms, 0.99), max(ms)
    ratio = f"  p99 = {p99 / base:.1f} x baseline" if base else ""
    return (f"{name:<10} n={len(ms):4d}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
            f"max {mx:8.2f} ms{ratio}")  # fmt: skip


async def baseline(node: Node, blocks: int, block_hex: str) -> list[float]:
    from poolserver.bitcoin.node import NodeClient

    client = NodeClient(f"http://127.0.0.1:{node.port}/", user="u", password="p", timeout=10)
    out = []
    try:
        for i in range(blocks):
            header = f"{i:08x}" + block_hex[8:160]
            t0 = time.perf_counter()
            await client.call("submitblock", header + block_hex[160:])
            out.append((node.arrivals[header] - t0) * 1000)
    finally:
        await client.close()
    return out


def make_sink(record_path: Path, engine: Any, nodes: list[Any], stall: float) -> Any:
    from poolserver.bitcoin.blocks import BlockSubmitter, JsonlFoundBlockStore
    from poolserver.bitcoin.found_blocks import DurableFoundBlockStore, SqlFoundBlockStore

    class StalledSql(SqlFoundBlockStore):
        async def _stall(self) -> None:
            if stall:
                await asyncio.sleep(stall)

        async def persist(self, block: Any) -> None:
            await self._stall()
            await super().persist(block)

        async def record_verdict(self, *a: Any) -> None:
            await self._stall()
            await super().record_verdict(*a)

        async def settle(self, *a: Any) -> None:
            await self._stall()
            await super().settle(*a)

        async def import_outcome(self, outcome: Any) -> bool:
            await self._stall()
            return bool(await super().import_outcome(outcome))

    sql = StalledSql(engine)
    record = JsonlFoundBlockStore(record_path)
    if "database" in inspect.signature(BlockSubmitter).parameters:  # issue 10 part 3 on
        return BlockSubmitter(record, nodes, database=sql, db_drain_s=60 + 4 * stall)
    return BlockSubmitter(DurableFoundBlockStore(sql, record), nodes)  # the old wiring


async def pool_case(node: Node, blocks: int, stall: float, interval: float, tmp: Path,
                    tag: str) -> tuple[list[float], float]:  # fmt: skip
    from poolserver.bitcoin.node import NodeClient
    from poolserver.storage import schema
    from poolserver.storage.engine import create_engine
    from stratum.difficulty import DIFF1, target_from_nbits
    from stratum.memory_sink import MemoryShareSink
    from stratum.server import StratumServer
    from stratum.settings import PortSettings, ServerSettings
    from tests.stratum_client import StratumClient
    from tests.stratum_support import fixture_job

    engine = create_engine(f"sqlite+aiosqlite:///{tmp / f'{tag}.sqlite3'}")
    await schema.upgrade(engine)
    client_rpc = NodeClient(f"http://127.0.0.1:{node.port}/", user="u", password="p",
                            timeout=10)  # fmt: skip
    sink = make_sink(tmp / f"{tag}-found-blocks.jsonl", engine, [client_rpc], stall)
    settings = ServerSettings(
        ports=(PortSettings("127.0.0.1", 0, 1e-9, 1e-12, 1e15),),
        max_connections_per_ip=0,
        ban_min_submits=10**9,
    )
    server = StratumServer(settings, MemoryShareSink(maxlen=10_000), block_sink=sink)
    server.new_job(fixture_job())
    (host, port), *_ = await server.start()
    c = await StratumClient.connect(host, port)
    await c.cgminer("bench.rig1")
    job = await c.wait_job()
    network_diff = DIFF1 / target_from_nbits(job.nbits)
    sent: dict[bytes, float] = {}
    replies = []
    t_start = time.perf_counter()
    for _ in range(blocks):
        found = c.grind(job, difficulty=network_diff)
        while not found.meets_network:
            found = c.grind(job, difficulty=network_diff)
        header = found.hash  # internal order; the node sees the header, matched below
        sent[header] = time.perf_counter()
        replies.append(asyncio.ensure_future(c.submit(job, found)))
        await asyncio.sleep(interval)
    answers = await asyncio.gather(*replies)
    took = time.perf_counter() - t_start
    from stratum.hashcore import sha256d

    by_hash = {sha256d(bytes.fromhex(h)): at for h, at in node.arrivals.items()}
    lat = [(by_hash[h] - t0) * 1000 for h, t0 in sent.items() if h in by_hash]
    missing = len(sent) - len(lat)
    bad = [a for a in answers if a.get("result") is not True]
    if missing or bad:
        print(f"  {tag}: {missing} blocks never reached the node, {len(bad)} not acked "
              f"(e.g. {bad[:1]})")  # fmt: skip
    await c.close()
    await server.shutdown(reconnect=False)
    await sink.drain()
    await client_rpc.close()
    await engine.dispose()
    node.arrivals.clear()
    return lat, took


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--stall", type=float, default=2.0, help="database stall per write, s")
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--skip-healthy", action="store_true")
    args = ap.parse_args()
    # the pool's log lines are formatted and written as in production, to /dev/null
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
    from stratum import hashcore
    from tests.conftest import load_fixture

    case = load_fixture("solved_block_case.json")
    node = await Node().start()
    print(f"block_submit: {args.blocks} blocks, {args.interval_ms:g} ms apart, stall "
          f"{args.stall:g} s, hash core {hashcore.backend()}, tree {ROOT}")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = await baseline(node, args.blocks, case["block"])
        b99 = pct(base, 0.99)
        print(fmt("baseline", base))
        if not args.skip_healthy:
            healthy, took = await pool_case(node, args.blocks, 0.0, args.interval_ms / 1000,
                                            tmp, "healthy")  # fmt: skip
            print(fmt("healthy", healthy, b99) + f"  ({took:.1f} s)")
        stalled, took = await pool_case(node, args.blocks, args.stall, args.interval_ms / 1000,
                                        tmp, "stalled")  # fmt: skip
        print(fmt("stalled", stalled, b99) + f"  ({took:.1f} s)")
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main())
