"""Connection flood against the per-IP cap, with and without the security event log (issue 17).

    .venv/bin/python bench/security_flood.py [--conns 20000] [--parallel 16] [--runs 3]

A server subprocess (uvloop when installed, in-memory share sink) with ``max_connections_per_ip
= 1``; the load generator holds one connection and then opens ``--conns`` more from the same
address, ``--parallel`` at a time, each refused and closed by the server at once. Measured:
refused connections per second seen by the client (connect until EOF), per server kind:

* ``none``: ``NoSecurityEvents`` (the baseline, measured in the same run);
* ``log``: the pool's ``SecurityEventWriter`` on a fresh SQLite database (WAL, FULL), flood
  summaries every second; afterwards the server reports how many events it wrote and dropped.

The point: a flood costs the log one event per IP per window, and the pool no measurable time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def _serve(kind: str, port: int, db: str) -> None:
    from stratum.memory_sink import MemoryShareSink
    from stratum.server import StratumServer
    from stratum.settings import PortSettings, ServerSettings

    security = None
    if kind == "log":
        from poolserver.security.log import SecurityLog
        from poolserver.security.writer import SecurityEventWriter
        from poolserver.storage import schema
        from poolserver.storage.engine import create_engine

        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        await schema.upgrade(engine)
        security = SecurityEventWriter(SecurityLog(engine), flush_interval_s=0.5)
        security.start()
    settings = ServerSettings(
        ports=(PortSettings("127.0.0.1", port, 1.0, 1e-12, 1e15),),
        max_connections_per_ip=1,
        auth_timeout_s=600,
        flood_report_s=1.0,
    )
    server = StratumServer(settings, MemoryShareSink(maxlen=10), security=security)
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # "stop"
    await server.shutdown(reconnect=False)
    if security is not None:
        await security.stop()
        s = security.stats
        print(f"EVENTS written={s.written_total} dropped={s.dropped_total}", flush=True)
    else:
        print("EVENTS written=0 dropped=0", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _flood(port: int, conns: int, parallel: int) -> float:
    held = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.2)
    left = conns

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            r, w = await asyncio.open_connection("127.0.0.1", port)
            await r.read()  # EOF: refused and closed by the pool
            w.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    took = time.perf_counter() - start
    held[1].close()
    return conns / took


def run_one(kind: str, conns: int, parallel: int) -> tuple[float, str]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(port),
             "--db", str(Path(tmp) / "bench.sqlite3")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("READY")
        rate = asyncio.run(_flood(port, conns, parallel))
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        events = proc.stdout.readline().strip()
        proc.wait(30)
    return rate, events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve")
    ap.add_argument("--port", type=int)
    ap.add_argument("--db")
    ap.add_argument("--conns", type=int, default=20000)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.serve:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_serve(args.serve, args.port, args.db))
        return
    rates: dict[str, list[float]] = {"none": [], "log": []}
    for _ in range(args.runs):  # interleaved, so machine load hits both alike
        for kind in rates:
            rate, events = run_one(kind, args.conns, args.parallel)
            rates[kind].append(rate)
            print(f"{kind:5s} {rate:9.0f} refused conns/s  {events}", flush=True)
    base = statistics.median(rates["none"])
    log = statistics.median(rates["log"])
    print(f"median: none {base:.0f}/s, log {log:.0f}/s, ratio log/none {log / base:.3f}")


if __name__ == "__main__":
    main()
