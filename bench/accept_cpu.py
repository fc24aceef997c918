"""CPU per accepted share, in process: where the accept path's time goes, without sockets.

``StratumServer.submit`` + ``_flush`` + ``_record`` (ack after the sink stored the share) for
rounds of 400 shares (100 connections x 4 in flight), measured with ``time.process_time`` (CPU of
every thread of the process, so the SQLite driver's worker thread counts; far less sensitive to a
loaded machine than wall time). Cases, in one run:

* ``reject``: random nonces at difficulty 1e6, answered "low difficulty" (the baseline: the
  share-check path);
* ``accept, memory sink``: every share accepted (difficulty 1e-12) into the in-memory sink: the
  Stratum side of accepting;
* ``accept, journal sqlite`` (and ``postgres`` with ``--pg``): the durable share journal (group
  commit, ack after commit; SQLite WAL + synchronous=FULL, PostgreSQL fsync on); the database
  server's own CPU is not in this figure (see bench/accept_path.py).

    .venv/bin/python bench/accept_cpu.py [--pg] [--rounds 150] [--reps 5] [--profile]

Run it from a checkout to compare two versions (it imports from the current directory). Prints
the minimum and median µs per share over ``--reps`` repetitions; ``--profile`` prints a cProfile
of one SQLite repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())

from stratum.memory_sink import MemoryShareSink
from stratum.server import StratumServer
from stratum.session import Session
from stratum.settings import PortSettings, ServerSettings
from tests.stratum_support import FIXTURE_NOW, fixture_job, hard

ROUND = 400
ACCEPT, REJECT = 1e-12, 1e6


def make_sessions(server: StratumServer, port: PortSettings, job: Any, n: int) -> list[Session]:
    out = []
    for k in range(n):
        s = Session(server, port)
        s.subscribed = True
        s.workers = {"a.b": ("kz1", "rig")}
        s.jobs = {job.job_id: port.start_difficulty}
        s.extranonce1 = k.to_bytes(4, "big")
        s.session_id = f"{k:08x}"
        s.peer = "127.0.0.1"
        out.append(s)
    return out


async def run_case(sink: Any, difficulty: float, rounds: int, reps: int) -> list[float]:
    port = PortSettings("127.0.0.1", 0, difficulty, min_difficulty=1e-12, max_difficulty=1e12)
    server = StratumServer(ServerSettings(ports=(port,)), sink, clock=lambda: FIXTURE_NOW)
    job = hard(fixture_job())
    server.new_job(job)
    sessions = make_sessions(server, port, job, 100)
    en2 = itertools.count(1)
    rnd = random.Random(1)
    ntime = f"{job.ntime:08x}"
    runs = []
    for _ in range(reps + 1):  # the first repetition warms up
        t0 = time.process_time()
        for _ in range(rounds):
            for i in range(ROUND):
                s = sessions[i % 100]
                params = ["a.b", job.job_id, f"{next(en2):016x}", ntime,
                          f"{rnd.getrandbits(32):08x}"]  # fmt: skip
                server.submit(s, i, params)
            server._flush()
            await server._drained.wait()
            for s in sessions:
                s._out = None  # the replies are not written anywhere
                s.submits = s.invalid = 0  # no ban
        runs.append((time.process_time() - t0) / (ROUND * rounds) * 1e6)
    assert server.stats.sink_errors == 0, "the sink failed shares"
    return runs[1:]


async def journal_sink(url: str, spool: Path) -> tuple[Any, Any]:
    from poolserver.storage import schema
    from poolserver.storage.engine import create_engine
    from poolserver.storage.journal import ShareJournal

    engine = create_engine(url)
    await schema.upgrade(engine)
    journal = ShareJournal(engine, spool)
    await journal.start()
    return journal, engine


def line(name: str, runs: list[float], base: float) -> str:
    med = statistics.median(runs)
    return (
        f"{name:28s} µs/share min {min(runs):7.2f} median {med:7.2f}  x reject {med / base:5.2f}"
        f"  [{' '.join(f'{r:.2f}' for r in runs)}]"
    )


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="qazpool-acceptcpu-"))
    print(f"{os.getcwd()}: load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds x {ROUND}")
    rej = await run_case(MemoryShareSink(maxlen=1000), REJECT, args.rounds, args.reps)
    base = statistics.median(rej)
    print(line("reject (baseline)", rej, base))
    if not args.journal_only:
        mem = await run_case(MemoryShareSink(maxlen=1000), ACCEPT, args.rounds, args.reps)
        print(line("accept, memory sink", mem, base))
    url = f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}"
    journal, engine = await journal_sink(url, tmp / "spool")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        await run_case(journal, ACCEPT, args.rounds, 1)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    sq = await run_case(journal, ACCEPT, args.rounds, args.reps)
    await journal.close()
    await engine.dispose()
    print(line("accept, journal sqlite", sq, base))
    if args.pg:
        from tests.storage_fixtures import PgServer

        pg = PgServer()
        pg.start()
        try:
            journal, engine = await journal_sink(pg.url(pg.new_database()), tmp / "spool-pg")
            pgr = await run_case(journal, ACCEPT, args.rounds, args.reps)
            await journal.close()
            await engine.dispose()
            print(line("accept, journal postgres", pgr, base))
        finally:
            pg.destroy()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=150)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pg", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--journal-only", action="store_true", help="skip the memory-sink case")
    args = ap.parse_args()
    from stratum.server import new_loop

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main(args))
