"""Accepted, durably journaled shares end to end: the real pool process on SQLite / PostgreSQL.

    .venv/bin/python bench/accept_path.py [--db sqlite|postgres|both] [--instances 1 3]
                                          [--seconds 10] [--conns 100] [--inflight 4]

Each pool instance is ``python -m poolserver --config FILE run`` (embedded chain with a
mainnet-like network target, so no blocks; the durable share journal, acks only after the group
commit) with two listeners:

* a "reject" port at difficulty 1e6: random nonces are fully checked (precheck, the batched C
  hash core) and answered "low difficulty": the share-check path, the **baseline measured in the
  same run**;
* an "accept" port at difficulty 1e-12 (a share target of 2^256-1): every share with a valid
  job, extranonce2, ntime and a fresh header hash is accepted, journaled and only then acked.

A load generator (this process; uvloop, raw protocol) keeps ``--conns`` connections with
``--inflight`` submits in flight each (closed loop), spread round-robin over the instances, and
measures submit -> reply. Reported per phase: replies/s, p50/p99 latency, **server CPU per
share** (user+system of every pool process from /proc, the figure least disturbed by other load
on the machine), and on PostgreSQL the database's own CPU per share (postmaster and all its
children). The ratio "accept / reject" is CPU per accepted share over CPU per rejected check:
the issue's aim is <= 2. With ``--instances 1 3`` the three-instance run (on one PostgreSQL)
is compared with the one-instance run of the same invocation (aim: <= 1.2x CPU per share).

At the end every instance is stopped gracefully and the ``shares`` table is counted: it must
hold at least every share that was acknowledged (acks only after commit).

``--profile DIR`` samples the (first) pool process with py-spy during the accept phase, if
``py-spy`` is on PATH or in the venv (``.venv/bin/pip install py-spy``), and writes
``DIR/<db>-<n>.txt`` (top functions by own and total samples).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stratum_load import LoadGen, Miner, _pct  # noqa: E402

from tests.pool_process import PoolProcess, free_port  # noqa: E402

ACCEPT_DIFFICULTY = 1e-12
REJECT_DIFFICULTY = 1e6
MAINNET_BITS = "1d00ffff"  # network target of difficulty 1: no share is a block


def clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (plus its reaped children's when asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / clk_tck()


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds of a process and its live children, plus the children it has reaped: for
    PostgreSQL, the postmaster and every backend/background process."""
    total = proc_cpu_s(root_pid, children=True)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        if int(rest[1]) == root_pid:  # ppid
            total += (int(rest[11]) + int(rest[12])) / clk_tck()
    return total


class BenchMiner(Miner):
    """The stratum_load miner, with the ntime of its own pool's latest notify (instances run
    their own embedded chains, whose templates' times differ)."""

    ntime = b""

    def data_received(self, data: bytes) -> None:
        if b'"mining.notify"' in data:
            import orjson

            for line in data.split(b"\n"):
                if b'"mining.notify"' in line:
                    msg = orjson.loads(line)
                    if msg.get("method") == "mining.notify":
                        self.ntime = msg["params"][7].encode()
        super().data_received(data)

    def submit(self) -> None:
        self.en2 += 1
        mid = self.next_id
        self.next_id += 1
        self.sent[mid] = time.perf_counter()
        self.t.write(
            b'{"id":%d,"method":"mining.submit","params":["bench.w","%s","%016x","%s","%08x"]}\n'
            % (mid, self.job_id.encode(), self.en2, self.ntime, self.en2 * 2654435761 & 0xFFFFFFFF)
        )


@dataclass
class Instance:
    node_id: int
    dir: Path
    accept_port: int = field(default_factory=free_port)
    reject_port: int = field(default_factory=free_port)
    proc: PoolProcess | None = None

    def write_config(self, url: str) -> Path:
        path = self.dir / "pool.toml"
        self.dir.mkdir(parents=True, exist_ok=True)
        listeners = ""
        for port, diff in ((self.accept_port, ACCEPT_DIFFICULTY),
                           (self.reject_port, REJECT_DIFFICULTY)):  # fmt: skip
            listeners += f"""
[[stratum.listeners]]
host = "127.0.0.1"
port = {port}
start_difficulty = {diff!r}
min_difficulty = {diff!r}
max_difficulty = {diff!r}
"""
        path.write_text(
            f"""[pool]
data_dir = "{self.dir / "data"}"
node_id = {self.node_id}
log_level = "INFO"

[stratum]
max_connections_per_ip = 0
auth_timeout_s = 600.0
{listeners}
[chain]
bits = "{MAINNET_BITS}"

[storage]
url = "{url}"

[metrics]
enabled = false
"""
        )
        return path


async def load_phase(
    instances: list[Instance], port_of: str, conns: int, inflight: int, seconds: float,
    pg_pid: int | None, profile: Path | None,
) -> dict[str, Any]:  # fmt: skip
    loop = asyncio.get_running_loop()
    gen = LoadGen()
    miners: list[Miner] = []
    sem = asyncio.Semaphore(100)

    async def connect(i: int) -> None:
        inst = instances[i % len(instances)]
        port = getattr(inst, port_of)
        async with sem:
            _, m = await loop.create_connection(lambda: BenchMiner(gen), "127.0.0.1", port)
            try:
                await asyncio.wait_for(m.ready, 90)
            except TimeoutError:
                assert inst.proc is not None
                raise RuntimeError(
                    f"no job from instance {inst.node_id} within 90 s:\n{inst.proc.log_tail()}"
                ) from None
            miners.append(m)

    await asyncio.gather(*(connect(i) for i in range(conns)))
    pids = [i.proc.proc.pid for i in instances if i.proc and i.proc.proc]
    gen.running = True
    for m in miners:
        for _ in range(inflight):
            m.submit()
    await asyncio.sleep(1.5)  # warm-up
    spy = None
    if profile is not None:
        spy = start_py_spy(pids[0], profile, seconds)
    c0, a0, t0 = gen.count, gen.accepted, time.perf_counter()
    cpu0 = [proc_cpu_s(p) for p in pids]
    pg0 = tree_cpu_s(pg_pid) if pg_pid else 0.0
    me0 = time.process_time()
    gen.latencies.clear()
    await asyncio.sleep(seconds)
    c1, a1, t1 = gen.count, gen.accepted, time.perf_counter()
    cpu1 = [proc_cpu_s(p) for p in pids]
    pg1 = tree_cpu_s(pg_pid) if pg_pid else 0.0
    me1 = time.process_time()
    gen.running = False
    lat = list(gen.latencies)
    await asyncio.sleep(1.0)  # let the in-flight submits come back
    for m in miners:
        m.t.close()
    if spy is not None:
        await asyncio.to_thread(spy.wait, 60)
    n = c1 - c0
    per_inst = [(b - a) for a, b in zip(cpu0, cpu1, strict=True)]
    return {
        "replies": n,
        "accepted": a1 - a0,
        "acked_total": gen.accepted,
        "rate": n / (t1 - t0),
        "p50_ms": _pct(lat, 50) * 1000,
        "p99_ms": _pct(lat, 99) * 1000,
        "cpu_us": sum(per_inst) / max(1, n) * 1e6,
        "cpu_inst_s": per_inst,
        "pg_cpu_us": (pg1 - pg0) / max(1, n) * 1e6 if pg_pid else None,
        "gen_cpu_us": (me1 - me0) / max(1, n) * 1e6,
        "wall": t1 - t0,
    }


def py_spy_bin() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    exe = py_spy_bin()
    if exe is None:
        print("  (py-spy not found: no profile)")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw",
         "-o", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def migrate(url: str) -> None:
    from poolserver.storage import schema
    from poolserver.storage.engine import create_engine

    engine = create_engine(url)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()


async def count_shares(url: str) -> int:
    from sqlalchemy import func, select

    from poolserver.storage.engine import create_engine
    from poolserver.storage.models import Share

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(Share))).scalar_one())
    finally:
        await engine.dispose()


async def run_config(
    db: str, n_inst: int, url: str, tmp: Path, args: argparse.Namespace, pg_pid: int | None
) -> dict[str, Any]:
    instances = [Instance(node_id=k + 1, dir=tmp / f"{db}-{n_inst}-{k}") for k in range(n_inst)]
    # Migrate first: instances starting at once on an empty database race on Alembic's own
    # CREATE TABLE alembic_version (a deployment runs `poolserver db upgrade` before scaling out).
    await migrate(url)
    for inst in instances:
        cfg = inst.write_config(url)
        inst.proc = PoolProcess(cfg, inst.dir / "pool.log")
        inst.proc.start()
    try:
        for inst in instances:
            assert inst.proc is not None
            await inst.proc.wait_ready(120)
        # fixed cost of a running instance (timers, lease renewal, template refresh) with no load
        pids = [i.proc.proc.pid for i in instances if i.proc and i.proc.proc]
        idle0 = sum(proc_cpu_s(p) for p in pids)
        await asyncio.sleep(3.0)
        idle_us_per_s = (sum(proc_cpu_s(p) for p in pids) - idle0) / 3.0 * 1e6 / len(pids)
        prof = Path(args.profile) if args.profile else None
        rej = await load_phase(
            instances, "reject_port", args.conns, args.inflight, args.seconds, pg_pid,
            prof and prof / f"{db}-{n_inst}-reject.txt",
        )  # fmt: skip
        acc = await load_phase(
            instances, "accept_port", args.conns, args.inflight, args.seconds, pg_pid,
            prof and prof / f"{db}-{n_inst}-accept.txt",
        )  # fmt: skip
    finally:
        for inst in instances:
            if inst.proc is not None and inst.proc.proc is not None:
                await inst.proc.terminate(60)
    stored = await count_shares(url)
    return {"reject": rej, "accept": acc, "stored": stored, "idle_us_per_s": idle_us_per_s}


def report(db: str, n_inst: int, r: dict[str, Any]) -> None:
    rej, acc = r["reject"], r["accept"]
    tag = f"{db}, {n_inst} instance{'s' if n_inst > 1 else ''}"
    pg = lambda x: f"  postgres CPU {x['pg_cpu_us']:.1f} us/share" if x["pg_cpu_us"] else ""  # noqa: E731
    print(
        f"{tag:24s} reject path (baseline): {rej['rate']:8.0f} checks/s  p50 {rej['p50_ms']:.2f}"
        f" ms  p99 {rej['p99_ms']:.2f} ms  server CPU {rej['cpu_us']:.2f} us/check{pg(rej)}"
        f"  [generator {rej['gen_cpu_us']:.1f} us]"
    )
    print(
        f"{tag:24s} accept path           : {acc['rate']:8.0f} shares/s  p50 {acc['p50_ms']:.2f}"
        f" ms  p99 {acc['p99_ms']:.2f} ms  server CPU {acc['cpu_us']:.2f} us/share{pg(acc)}"
        f"  [generator {acc['gen_cpu_us']:.1f} us]"
    )
    per = ", ".join(f"{c:.2f}" for c in acc["cpu_inst_s"])
    print(
        f"{tag:24s}   CPU seconds per instance in the accept phase: {per}; idle (no load): "
        f"{r['idle_us_per_s'] / 1e3:.1f} ms CPU per second per instance"
    )
    ratio = acc["cpu_us"] / rej["cpu_us"]
    ok = "met" if ratio <= 2 else "NOT met"
    print(
        f"{tag:24s}   accepted shares per CPU-second = 1/{ratio:.2f} of checks per CPU-second "
        f"(aim <= 2x: {ok}); accepted {acc['accepted']} of {acc['replies']} replies"
    )
    lost = r["stored"] < acc["acked_total"]
    print(
        f"{tag:24s}   shares table holds {r['stored']} rows, {acc['acked_total']} acked"
        f" -> {'LOST ACKED SHARES' if lost else 'every acked share stored'}"
    )
    if lost:
        raise SystemExit(1)


async def bench_db(db: str, args: argparse.Namespace, tmp: Path) -> None:
    pg = None
    pg_pid = None
    results: dict[int, dict[str, Any]] = {}
    try:
        if db == "postgres":
            from tests.storage_fixtures import PgServer

            pg = PgServer()
            pg.start()
            pg_pid = int((pg.data / "postmaster.pid").read_text().split()[0])
        for n_inst in args.instances:
            if db == "sqlite" and n_inst > 1:
                print(f"sqlite: skipping {n_inst} instances (one database file per instance)")
                continue
            for rep in range(args.repeat):
                if pg is not None:
                    url = pg.url(pg.new_database())
                else:
                    url = f"sqlite+aiosqlite:///{tmp / f'sqlite-{n_inst}-{rep}.sqlite3'}"
                r = await run_config(db, n_inst, url, tmp / f"r{rep}", args, pg_pid)
                report(db, n_inst, r)
                results.setdefault(n_inst, r)
                if n_inst > 1 and 1 in results:
                    one = results[1]["accept"]["cpu_us"]
                    many = r["accept"]["cpu_us"]
                    print(
                        f"{db}: CPU per accepted share, {n_inst} instances / 1 instance = "
                        f"{many:.2f} / {one:.2f} us = {many / one:.2f}x (aim <= 1.2x)"
                    )
    finally:
        if pg is not None:
            pg.destroy()


async def main(args: argparse.Namespace) -> None:
    from stratum import hashcore

    print(
        f"hash core {hashcore.backend()}; cores {os.cpu_count()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.conns} connections x "
        f"{args.inflight} in flight, {args.seconds:g} s per phase"
    )
    tmp = Path(tempfile.mkdtemp(prefix="qazpool-accept-"))
    try:
        dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
        for db in dbs:
            await bench_db(db, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--instances", type=int, nargs="+", default=[1])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", help="directory for py-spy profiles of the accept phase")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from stratum.server import new_loop

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main(args))
