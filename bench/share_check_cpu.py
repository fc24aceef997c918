"""CPU per share check, in process: ``StratumServer.submit`` + ``_flush`` (precheck, one
``hashcore.check_shares`` batch, judge, the reject reply) for batches of 128 random nonces
(low-difficulty rejects), measured with ``time.process_time`` (CPU, so far less sensitive to a
loaded machine than the socket benchmark). Run it from a checkout to compare two versions::

    (cd OLD_CHECKOUT && /path/to/.venv/bin/python /path/to/bench/share_check_cpu.py)
    .venv/bin/python bench/share_check_cpu.py

It imports ``stratum`` and ``tests`` from the current directory. Prints the minimum and median
µs per check over 7 repetitions of 300 batches.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time

sys.path.insert(0, os.getcwd())

from stratum.memory_sink import MemoryShareSink
from stratum.server import StratumServer
from stratum.session import Session
from stratum.settings import PortSettings, ServerSettings
from tests.stratum_support import FIXTURE_NOW, fixture_job, hard

BATCH = 128
BATCHES = 300
REPS = 7


async def main() -> None:
    port = PortSettings("127.0.0.1", 0, start_difficulty=1e6, min_difficulty=1)
    server = StratumServer(
        ServerSettings(ports=(port,)), MemoryShareSink(), clock=lambda: FIXTURE_NOW
    )
    job = hard(fixture_job())
    server.new_job(job)
    s = Session(server, port)
    s.subscribed = True
    s.workers = {"a.b": ("a", "b")}
    s.jobs = {job.job_id: 1e6}
    s.extranonce1 = bytes(4)
    s.session_id = "00000000"
    s.peer = "127.0.0.1"
    rnd = random.Random(1)
    params = [
        ["a.b", job.job_id, f"{rnd.getrandbits(64):016x}", f"{job.ntime:08x}",
         f"{rnd.getrandbits(32):08x}"]
        for _ in range(BATCH)
    ]  # fmt: skip
    runs = []
    for _ in range(REPS):
        t0 = time.process_time()
        for _ in range(BATCHES):
            for i, p in enumerate(params):
                server.submit(s, i, p)
            server._flush()
            s._out = None  # the replies are not written anywhere
            s.submits = s.invalid = 0  # no ban
        runs.append((time.process_time() - t0) / (BATCH * BATCHES) * 1e6)
        await asyncio.sleep(0)
    runs.sort()
    print(f"{os.getcwd()}: µs/check min {runs[0]:.3f} median {runs[REPS // 2]:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
