"""Stratum server load benchmark: a load generator process against the pool's server process.

    .venv/bin/python bench/stratum_load.py [--seconds 10] [--conns 100] [--inflight 4]
                                           [--hold 10000] [--skip-hold]

Runs, each against a fresh server subprocess (uvloop, in-memory sink, one job with a
mainnet-like network target so random nonces are full checks that end as "low difficulty"):

1. baseline: a minimal asyncio line server (uvloop + orjson) that parses each line and writes a
   fixed reply, under the same load: the transport + JSON floor of this machine, measured in the
   same run; the pool's figures are printed as ratios to it.
2. throughput: ``--conns`` connections x ``--inflight`` submits in flight, random nonces:
   share checks/s (submit -> reply) and p50/p99 latency.
3. accepted path: the same with nonces ground at difficulty 1e-9 (every share accepted and put
   into the sink before the ack).
4. hold: ``--hold`` authorized connections: server RSS per connection, then a new job broadcast
   to all of them: server-side write time and time until every client has received it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# server side (runs in the subprocess)


def _rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _serve(kind: str, port: int, difficulty: float) -> None:
    from stratum.memory_sink import MemoryShareSink
    from stratum.server import StratumServer
    from stratum.settings import PortSettings, ServerSettings
    from tests.stratum_support import fixture_builder, fixture_job, hard

    loop = asyncio.get_running_loop()
    if kind == "baseline":

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.t = transport
                self.buf = b""
                transport.write(b'{"id":null,"method":"mining.notify","params":["1"]}\n')

            def data_received(self, data: bytes) -> None:
                lines = (self.buf + data).split(b"\n")
                self.buf = lines.pop()
                out = []
                for line in lines:
                    if line:
                        msg = orjson.loads(line)
                        out.append(
                            orjson.dumps({"id": msg["id"], "result": True, "error": None}) + b"\n"
                        )
                if out:
                    self.t.write(b"".join(out))

        srv = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
        print("READY", flush=True)
        await loop.connect_read_pipe(asyncio.Protocol, sys.stdin)
        await srv.serve_forever()
        return

    sink = MemoryShareSink(maxlen=1000)
    settings = ServerSettings(
        ports=(PortSettings("127.0.0.1", port, difficulty, 1e-12, 1e15),),
        max_connections_per_ip=0,
        auth_timeout_s=600,
        ban_min_submits=10**9,
    )
    server = StratumServer(settings, sink)
    job = hard(fixture_job())
    server.new_job(job)
    builder = fixture_builder(first_job_id=100)
    await server.start()
    print("READY", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.strip().decode()
        if cmd == "rss":
            print(f"RSS {_rss_kib()} {server.stats.authorized_current}", flush=True)
        elif cmd == "newjob":
            nj = dataclasses.replace(
                hard(fixture_job(builder=builder)), prevhash=os.urandom(32), clean_jobs=True
            )
            took = server.new_job(nj)
            print(f"JOB {nj.job_id} {took:.6f}", flush=True)
        elif cmd == "profile":
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            print("PROFILING", flush=True)
        elif cmd == "stats":
            if "prof" in locals():
                import pstats

                prof.disable()
                pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
            s = server.stats
            print(f"STATS batches={s.check_batches} checked={s.checked_shares}", flush=True)


# ---------------------------------------------------------------------------------------------
# load generator (the main process)


class Miner(asyncio.Protocol):
    def __init__(self, gen: LoadGen) -> None:
        self.gen = gen
        self.buf = b""
        self.t: Any = None
        self.job_id: str | None = None
        self.en2 = 0
        self.sent: dict[int, float] = {}
        self.next_id = 100
        self.en1 = b""
        self.ready = asyncio.get_running_loop().create_future()
        self.jobs_seen = 0

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["bench/1"]}\n'
            b'{"id":2,"method":"mining.authorize","params":["bench.w","x"]}\n'
        )

    def data_received(self, data: bytes) -> None:
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        now = time.perf_counter()
        gen = self.gen
        for line in lines:
            if not line:
                continue
            msg = orjson.loads(line)
            mid = msg.get("id")
            if mid is None:
                if msg.get("method") == "mining.notify":
                    self.job_id = msg["params"][0]
                    self.jobs_seen += 1
                    gen.on_job(self, now)
                    if not self.ready.done():
                        self.ready.set_result(None)
                continue
            if mid == 1:
                if isinstance(msg.get("result"), list):
                    self.en1 = bytes.fromhex(msg["result"][1])
                continue
            if mid < 100:
                continue
            t0 = self.sent.pop(mid, None)
            if t0 is not None:
                gen.record(now - t0, msg.get("result") is True)
                if gen.running:
                    self.submit()

    def submit(self) -> None:
        self.en2 += 1
        mid = self.next_id
        self.next_id += 1
        nonce = self.gen.nonce_for(self)
        self.sent[mid] = time.perf_counter()
        self.t.write(
            b'{"id":%d,"method":"mining.submit","params":["bench.w","%s","%016x","%s","%s"]}\n'
            % (mid, self.job_id.encode(), self.en2, self.gen.ntime, nonce)
        )


class LoadGen:
    def __init__(self) -> None:
        self.running = False
        self.latencies: list[float] = []
        self.count = 0
        self.accepted = 0
        self.ntime = b""
        self.ground: dict[tuple[bytes, int], bytes] | None = None
        self.job_times: list[float] = []

    def record(self, latency: float, ok: bool) -> None:
        self.count += 1
        self.accepted += ok
        if len(self.latencies) < 2_000_000:
            self.latencies.append(latency)

    def on_job(self, miner: Miner, now: float) -> None:
        self.job_times.append(now)

    def nonce_for(self, miner: Miner) -> bytes:
        if self.ground is not None:
            return self.ground[(miner.en1, miner.en2)]
        return b"%08x" % (miner.en2 * 2654435761 & 0xFFFFFFFF)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (load-independent cost measure)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    def __init__(self, kind: str, difficulty: float = 1e6) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                kind,
                "--port",
                str(self.port),
                "--difficulty",
                str(difficulty),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"server did not start: {line!r}")

    def ask(self, cmd: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _connect(gen: LoadGen, port: int, n: int) -> list[Miner]:
    loop = asyncio.get_running_loop()
    miners: list[Miner] = []
    sem = asyncio.Semaphore(200)

    async def one() -> None:
        async with sem:
            _, m = await loop.create_connection(lambda: Miner(gen), "127.0.0.1", port)
            await asyncio.wait_for(m.ready, 30)
            miners.append(m)

    await asyncio.gather(*(one() for _ in range(n)))
    return miners


async def throughput(
    kind: str, conns: int, inflight: int, seconds: float, grind: bool = False
) -> dict[str, float]:
    difficulty = 1e-9 if grind else 1e6
    srv = ServerProc(kind, difficulty)
    gen = LoadGen()
    from tests.stratum_support import CASE

    gen.ntime = CASE["mining_notify_params"][7].encode()
    try:
        miners = await _connect(gen, srv.port, conns)
        if grind:
            gen.ground = _grind_all(miners, inflight, seconds)
        gen.running = True
        for m in miners:
            for _ in range(inflight):
                m.submit()
        await asyncio.sleep(1.0)  # warm-up
        if os.environ.get("BENCH_PROFILE") and kind != "baseline":
            srv.ask("profile")
        c0, t0, cpu0 = gen.count, time.perf_counter(), _cpu_s(srv.proc.pid)
        gen.latencies.clear()
        await asyncio.sleep(seconds)
        c1, t1, cpu1 = gen.count, time.perf_counter(), _cpu_s(srv.proc.pid)
        gen.running = False
        await asyncio.sleep(0.5)
        stats = srv.ask("stats") if kind != "baseline" else ""
        rate = (c1 - c0) / (t1 - t0)
        return {
            "rate": rate,
            "p50_ms": _pct(gen.latencies, 50) * 1000,
            "p99_ms": _pct(gen.latencies, 99) * 1000,
            "accepted": gen.accepted,
            "cpu_us": (cpu1 - cpu0) / max(1, c1 - c0) * 1e6,
            "stats": stats,  # type: ignore[dict-item]
        }
    finally:
        srv.stop()


def _grind_all(miners: list[Miner], inflight: int, seconds: float) -> dict:
    """Pre-grind nonces at difficulty 1e-9 for the extranonce2 values the miners will use."""
    from stratum import hashcore
    from stratum.difficulty import DIFF1, target_from_difficulty
    from tests.stratum_support import fixture_job, hard

    job = hard(fixture_job())
    share_t = hashcore.target_bytes(target_from_difficulty(1e-9))
    net_t = hashcore.target_bytes(DIFF1)
    per_miner = int(120_000 * (seconds + 3) / len(miners)) + inflight * 4
    out: dict[tuple[bytes, int], bytes] = {}
    for m in miners:
        for en2 in range(1, per_miner + 1):
            en2b = en2.to_bytes(8, "big")
            nonce = 0
            while True:
                ((_h, ok, _),) = hashcore.check_shares(
                    [
                        (
                            job.coinb1,
                            m.en1,
                            en2b,
                            job.coinb2,
                            job.branch,
                            job.version,
                            job.prevhash,
                            job.ntime,
                            job.nbits,
                            nonce,
                            share_t,
                            net_t,
                            0,
                            0,
                        )
                    ]
                )
                if ok:
                    break
                nonce += 1
            out[(m.en1, en2)] = b"%08x" % nonce
    return out


async def hold(n: int) -> dict[str, float]:
    srv = ServerProc("pool", 1e6)
    gen = LoadGen()
    try:
        pid = srv.proc.pid
        rss0 = _rss_kib(pid)
        base = srv.ask("rss")
        miners = await _connect(gen, srv.port, n)
        await asyncio.sleep(1.0)
        rss1 = _rss_kib(pid)
        after = srv.ask("rss")
        # broadcast: time from the command until every miner has the new job
        seen = sum(m.jobs_seen for m in miners)
        gen.job_times.clear()
        t0 = time.perf_counter()
        reply = srv.ask("newjob")
        async with asyncio.timeout(30):
            while sum(m.jobs_seen for m in miners) < seen + n:
                await asyncio.sleep(0.001)
        t_all = max(gen.job_times) - t0
        server_write = float(reply.split()[2])
        for m in miners:
            m.t.close()
        return {
            "conns": n,
            "rss_base_kib": rss0,
            "rss_kib": rss1,
            "per_conn_kib": (rss1 - rss0) / n,
            "server_write_ms": server_write * 1000,
            "all_received_ms": t_all * 1000,
            "base": base,  # type: ignore[dict-item]
            "after": after,  # type: ignore[dict-item]
        }
    finally:
        srv.stop()


async def main(args: argparse.Namespace) -> None:
    from stratum import hashcore

    print(f"hash core backend: {hashcore.backend()}; cores: {os.cpu_count()}")
    base = await throughput("baseline", args.conns, args.inflight, args.seconds)
    print(
        f"baseline line server : {base['rate']:9.0f} replies/s  p50 {base['p50_ms']:.2f} ms"
        f"  p99 {base['p99_ms']:.2f} ms  server CPU {base['cpu_us']:.1f} us/request"
    )
    pool = await throughput("pool", args.conns, args.inflight, args.seconds)
    print(
        f"pool, random nonces  : {pool['rate']:9.0f} checks/s   p50 {pool['p50_ms']:.2f} ms"
        f"  p99 {pool['p99_ms']:.2f} ms  ratio to baseline {pool['rate'] / base['rate']:.2f}"
        f"  server CPU {pool['cpu_us']:.1f} us/check  ({pool['stats']})"
    )
    if not args.skip_accept:
        acc = await throughput("pool", args.conns, args.inflight, args.seconds, grind=True)
        print(
            f"pool, ground shares  : {acc['rate']:9.0f} accepts/s  p50 {acc['p50_ms']:.2f} ms"
            f"  p99 {acc['p99_ms']:.2f} ms  ratio to baseline "
            f"{acc['rate'] / base['rate']:.2f}  accepted={acc['accepted']}"
            f"  server CPU {acc['cpu_us']:.1f} us/share"
        )
    if not args.skip_hold:
        h = await hold(args.hold)
        print(
            f"hold {h['conns']} authorized connections: server RSS {h['rss_base_kib']} -> "
            f"{h['rss_kib']} KiB = {h['per_conn_kib']:.2f} KiB/connection"
        )
        print(
            f"new-job broadcast to {h['conns']}: server write {h['server_write_ms']:.1f} ms,"
            f" all received {h['all_received_ms']:.1f} ms"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--difficulty", type=float, default=1e6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=4)
    ap.add_argument("--hold", type=int, default=10000)
    ap.add_argument("--skip-hold", action="store_true")
    ap.add_argument("--skip-accept", action="store_true")
    args = ap.parse_args()
    soft, hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard_limit, hard_limit))
    from stratum.server import new_loop

    with asyncio.Runner(loop_factory=new_loop) as runner:
        if args.serve:
            runner.run(_serve(args.serve, args.port, args.difficulty))
        else:
            runner.run(main(args))
