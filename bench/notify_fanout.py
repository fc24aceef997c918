"""New block -> every miner notified: time from the new job to the last client's `mining.notify`.

    .venv/bin/python bench/notify_fanout.py [--conns 10000 100000] [--clients 4] [--rounds 3]
                                            [--servers 1]

File descriptors: the script raises RLIMIT_NOFILE (soft and, when permitted, hard) to the
connection count + 10,000 in every process: one server holding 100k connections needs a hard
limit above that (``ulimit -Hn``; raising it needs root with CAP_SYS_RESOURCE, or
``/etc/security/limits.conf``). Where the hard limit cannot be raised (this sandbox: 20,000, no
CAP_SYS_RESOURCE), ``--servers K`` spreads the connections over K server processes that all get
the new job at once (each client process keeps under the limit too: use enough ``--clients``).

One Stratum server process (``stratum.server.StratumServer``, uvloop, the same broadcast code the
pool runs: ``new_job`` writes the job's notify line to every authorized session) and
``--clients`` client processes. Each client process opens its share of the connections (asyncio
+ uvloop, raw protocol: subscribe and authorize, then only read), bound to source addresses
127.0.0.2, 127.0.0.3, ... (one source address has only ~28k ephemeral ports), and records
``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process) when each connection has
read the whole new notify line. Reported per round: the server's time inside ``new_job`` (the
writes), and the time from the start of ``new_job`` until the last connection had its notify
(p50, p99, max). Baseline in the same run: the same clients against a bare uvloop server that
writes the same line to every connection (the floor of this machine's loopback + event loops).
Memory: server RSS per connection and the clients' total RSS are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2
sys.path.insert(0, str(ROOT))


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(n, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, PermissionError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


# ---------------------------------------------------------------------------------------------
# server process


async def serve(kind: str) -> None:
    import dataclasses

    from stratum.memory_sink import MemoryShareSink
    from stratum.server import StratumServer
    from stratum.settings import PortSettings, ServerSettings
    from tests.stratum_support import fixture_builder, fixture_job, hard

    loop = asyncio.get_running_loop()
    builder = fixture_builder(first_job_id=100)
    job = hard(fixture_job(builder=builder))
    if kind == "baseline":
        transports: list[Any] = []
        line = b"".join(
            [
                b'{"id":null,"method":"mining.notify","params":["',
                b"x" * 600,
                b'"]}\n',
            ]
        )

        class Bare(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.t = transport

            def data_received(self, data: bytes) -> None:
                if b"mining.authorize" in data:
                    transports.append(self.t)
                    self.t.write(b'{"id":2,"result":true,"error":null}\n' + line)

        srv = await loop.create_server(Bare, "127.0.0.1", 0, backlog=4096)
        port = srv.sockets[0].getsockname()[1]

        def broadcast() -> float:
            t0 = time.perf_counter()
            for t in transports:
                if not t.is_closing():
                    t.write(line)
            return time.perf_counter() - t0

        count = lambda: len(transports)  # noqa: E731
    else:
        settings = ServerSettings(
            ports=(PortSettings("127.0.0.1", 0, 1e6, 1e-12, 1e15),),
            max_connections_per_ip=0,
            auth_timeout_s=600,
            keepalive_s=3600,  # no keepalive re-send during the run
            idle_timeout_s=3600,
        )
        server = StratumServer(settings, MemoryShareSink(maxlen=10))
        server.new_job(job)
        port = (await server.start())[0][1]

        def broadcast() -> float:
            nj = dataclasses.replace(
                hard(fixture_job(builder=builder)), prevhash=os.urandom(32), clean_jobs=True
            )
            return server.new_job(nj)

        count = lambda: server.stats.authorized_current  # noqa: E731
    print(f"PORT {port}", flush=True)
    reader = await stdin_lines()
    while line_in := await reader.readline():
        cmd = line_in.decode().strip()
        if cmd == "rss":
            print(f"RSS {rss_kib()} {count()}", flush=True)
        elif cmd == "newjob":
            start = time.monotonic()
            took = broadcast()
            print(f"JOB {start:.6f} {took:.6f}", flush=True)


# ---------------------------------------------------------------------------------------------
# client process


class Reader(asyncio.Protocol):
    __slots__ = ("armed", "buf", "owner", "ready", "t")

    def __init__(self, owner: ClientSide) -> None:
        self.owner = owner
        self.buf = b""
        self.t: Any = None
        self.ready = False
        self.armed = False

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["fanout/1"]}\n'
            b'{"id":2,"method":"mining.authorize","params":["bench.w","x"]}\n'
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if b"\n" not in data:
            self.buf = buf
            return
        head, _, self.buf = buf.rpartition(b"\n")
        if b'"mining.notify"' not in head:
            return
        if not self.ready:
            self.ready = True
            self.owner.on_ready()
        elif self.armed:
            self.armed = False
            self.owner.on_notified(time.monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost += 1


class ClientSide:
    def __init__(self) -> None:
        self.conns: list[Reader] = []
        self.ready = 0
        self.lost = 0
        self.times: list[float] = []
        self.all_ready = asyncio.Event()
        self.all_notified = asyncio.Event()
        self.want = 0

    def on_ready(self) -> None:
        self.ready += 1
        if self.ready == self.want:
            self.all_ready.set()

    def on_notified(self, t: float) -> None:
        self.times.append(t)
        if len(self.times) == self.want:
            self.all_notified.set()


async def client(ports: list[int], n: int, sources: list[str], concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    side = ClientSide()
    side.want = n
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            for attempt in range(5):
                sock = socket.socket()
                try:
                    # The port is picked at connect(), not by a linear search at bind().
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((sources[i % len(sources)], 0))
                    sock.setblocking(False)
                    await loop.sock_connect(sock, ("127.0.0.1", ports[i % len(ports)]))
                    _, proto = await loop.create_connection(lambda: Reader(side), sock=sock)
                    side.conns.append(proto)
                    return
                except OSError:
                    sock.close()
                    await asyncio.sleep(0.05 * (attempt + 1))
            failures += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    if failures:
        side.want -= failures
    try:
        await asyncio.wait_for(side.all_ready.wait(), 120)
    except TimeoutError:
        pass
    print(f"CONNECTED {side.ready} {failures}", flush=True)
    reader = await stdin_lines()
    while line_in := await reader.readline():
        cmd = line_in.decode().strip()
        if cmd == "arm":
            side.times = []
            side.all_notified.clear()
            for c in side.conns:
                c.armed = True
            print("ARMED", flush=True)
        elif cmd == "wait":
            try:
                await asyncio.wait_for(side.all_notified.wait(), 60)
            except TimeoutError:
                pass
            times = side.times
            print(f"TIMES {len(times)} {' '.join(f'{t:.6f}' for t in times)}", flush=True)
        elif cmd == "rss":
            print(f"RSS {rss_kib()}", flush=True)
    for c in side.conns:
        c.t.close()


# ---------------------------------------------------------------------------------------------
# driver


class Child:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"child {self.proc.args} ended (exit {self.proc.poll()})")
        return line

    def ask(self, cmd: str) -> str:
        self.send(cmd)
        return self.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def run(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    servers = [Child(["--serve", kind]) for _ in range(args.servers)]
    clients: list[Child] = []
    try:
        ports = ",".join(s.read().split()[1] for s in servers)
        rss0 = sum(int(s.ask("rss").split()[1]) for s in servers)
        sources = [f"127.0.0.{2 + k}" for k in range(max(1, -(-n // 12_000)))]
        per = [n // args.clients + (k < n % args.clients) for k in range(args.clients)]
        t_conn = time.perf_counter()
        for k, m in enumerate(per):
            mine = sources[k :: args.clients] or sources
            clients.append(Child(["--client", ports, "--n", str(m), "--sources", ",".join(mine)]))
        connected = 0
        for c in clients:
            parts = c.read().split()
            connected += int(parts[1])
        t_conn = time.perf_counter() - t_conn
        rss1 = authorized = 0
        for s in servers:
            rss_line = s.ask("rss").split()
            rss1 += int(rss_line[1])
            authorized += int(rss_line[2])
        client_rss = sum(int(c.ask("rss").split()[1]) for c in clients)
        rounds = []
        for _ in range(args.rounds):
            for c in clients:
                c.send("arm")
            for c in clients:
                assert c.read() == "ARMED"
            time.sleep(0.2)
            for s in servers:
                s.send("newjob")
            jobs = [s.read().split() for s in servers]
            start = min(float(j[1]) for j in jobs)
            took = max(float(j[2]) for j in jobs)
            times: list[float] = []
            for c in clients:
                c.send("wait")
            for c in clients:
                parts = c.read().split()
                times.extend(float(x) for x in parts[2:])
            delays = [t - start for t in times]
            rounds.append(
                {
                    "write_ms": took * 1000,
                    "notified": len(times),
                    "p50_ms": pct(delays, 50) * 1000 if delays else float("nan"),
                    "p99_ms": pct(delays, 99) * 1000 if delays else float("nan"),
                    "max_ms": max(delays) * 1000 if delays else float("nan"),
                }
            )
            time.sleep(0.5)
        return {
            "conns": n,
            "connected": connected,
            "authorized": authorized,
            "connect_s": t_conn,
            "server_kib_per_conn": (rss1 - rss0) / max(1, connected),
            "client_rss_mib": client_rss / 1024,
            "rounds": rounds,
        }
    finally:
        for c in clients:
            c.stop()
        for s in servers:
            s.stop()


def main(args: argparse.Namespace) -> None:
    from stratum import hashcore

    print(
        f"hash core {hashcore.backend()}; cores {os.cpu_count()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; RLIMIT_NOFILE "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)}; {args.clients} client processes, "
        f"{args.servers} server process(es)"
    )
    for n in args.conns:
        for kind in ("baseline", "pool"):
            r = run(kind, n, args)
            label = "bare server (baseline)" if kind == "baseline" else "pool StratumServer"
            print(
                f"{n:>7} conns, {label}: {r['connected']} connected in {r['connect_s']:.1f} s"
                + (
                    f", {r['authorized']} authorized, server RSS "
                    f"{r['server_kib_per_conn']:.2f} KiB/conn"
                    if kind == "pool"
                    else ""
                )
                + f", clients' RSS {r['client_rss_mib']:.0f} MiB"
            )
            for i, rd in enumerate(r["rounds"], 1):
                print(
                    f"    round {i}: server write {rd['write_ms']:7.1f} ms; notified "
                    f"{rd['notified']}/{r['connected']}: p50 {rd['p50_ms']:7.1f} ms  p99 "
                    f"{rd['p99_ms']:7.1f} ms  last {rd['max_ms']:7.1f} ms"
                )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--servers",
        type=int,
        default=1,
        help="server processes sharing the connections (where RLIMIT_NOFILE's hard limit is "
        "below the connection count and cannot be raised); all get the new job at once",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--serve")
    ap.add_argument("--client", help="(internal) comma-separated server ports")
    ap.add_argument("--n", type=int)
    ap.add_argument("--sources")
    args = ap.parse_args()
    raise_nofile(max(args.conns) + 10_000)
    if args.serve or args.client:
        from stratum.server import new_loop

        with asyncio.Runner(loop_factory=new_loop) as runner:
            if args.serve:
                runner.run(serve(args.serve))
            else:
                ports = [int(p) for p in args.client.split(",")]
                runner.run(client(ports, args.n, args.sources.split(","), args.concurrency))
    else:
        main(args)
