"""Honest reference miners: real Stratum clients grinding real shares with the C hash core,
paced to a fixed share rate, from 127.0.0.1 while the attacks come from other addresses.

Run as its own process (``python -m poolserver.security_suite.honest``) so an attack that
loads the tester's event loop cannot slow the honest side down: the pool alone decides how
many of their shares it accepts. It prints one JSON line every ``REPORT_S`` seconds:
``{"t": unix time, "acked": n, "rejected": n, "connects": n, "refused": "..."}``.
``HonestFleet`` starts it and reads those lines.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field

from poolserver.security_suite.wire import Conn, Share

REPORT_S = 0.1


@dataclass
class Counts:
    submitted: int = 0
    acked: int = 0
    rejected: int = 0
    connects: int = 0
    refused: str = ""


async def mine(host: str, port: int, source: str, worker: str, rate: float,
               counts: Counts) -> None:  # fmt: skip
    period = 1.0 / rate
    while True:
        try:
            conn = await Conn.open(host, port, source)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        counts.connects += 1
        try:
            reply = await conn.login(worker, rolling=True)
            if not reply.ok:
                counts.refused = reply.describe()
                await asyncio.sleep(1.0)
                continue
            tasks: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while not conn.closed:
                job = conn.job
                if job is None:
                    await asyncio.sleep(0.05)
                    continue
                share = await asyncio.to_thread(conn.grind, job)

                async def send(conn: Conn = conn, job_id: str = job.job_id,
                               share: Share = share) -> None:  # fmt: skip
                    r = await conn.request("mining.submit", share.params(worker, job_id))
                    if r.ok:
                        counts.acked += 1
                    else:
                        counts.rejected += 1

                counts.submitted += 1
                t = asyncio.create_task(send())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:  # more than a second behind: do not burst to catch up
                    next_at = time.monotonic()
        finally:
            await conn.close()


async def main_async(args: argparse.Namespace) -> None:
    counts = Counts()
    workers = [w for w in args.workers.split(",") if w]
    miners = [asyncio.create_task(mine(args.host, args.port, args.source, w, args.rate, counts))
              for w in workers]  # fmt: skip
    try:
        while True:
            print(json.dumps({"t": time.time(), "submitted": counts.submitted,
                              "acked": counts.acked,
                              "rejected": counts.rejected, "connects": counts.connects,
                              "refused": counts.refused}), flush=True)  # fmt: skip
            await asyncio.sleep(REPORT_S)
    finally:
        for m in miners:
            m.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="honest reference miners for the security suite")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--workers", required=True, help="account.worker,...")
    p.add_argument("--rate", type=float, default=10.0, help="shares per second per miner")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(main_async(args))
    return 0


@dataclass
class HonestFleet:
    """The honest miners' process and what it reported, as (unix time, acked) samples."""

    host: str
    port: int
    workers: list[str]
    rate: float
    proc: asyncio.subprocess.Process | None = None
    times: list[float] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    submitted: list[int] = field(default_factory=list)
    last: dict[str, object] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "poolserver.security_suite.honest", "--host", self.host,
            "--port", str(self.port), "--workers", ",".join(self.workers),
            "--rate", str(self.rate), stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            self.last = doc
            self.times.append(float(doc["t"]))
            self.acked.append(int(doc["acked"]))
            self.submitted.append(int(doc["submitted"]))

    def rates_between(self, t0: float, t1: float) -> tuple[float, float]:
        """(accepted, submitted) shares per second over the reports that bracket [t0, t1]
        (the last at or before ``t0``, the first at or after ``t1``), by their own
        timestamps."""
        i0 = max(bisect.bisect_right(self.times, t0) - 1, 0)
        i1 = min(bisect.bisect_left(self.times, t1), len(self.times) - 1)
        if i1 <= i0:
            return 0.0, 0.0
        dt = self.times[i1] - self.times[i0]
        return ((self.acked[i1] - self.acked[i0]) / dt,
                (self.submitted[i1] - self.submitted[i0]) / dt)

    async def reported_after(self, t: float, timeout: float = 5.0) -> bool:
        """Wait until a report newer than unix time ``t`` has been read."""
        deadline = time.monotonic() + timeout
        while not (self.times and self.times[-1] >= t):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    @property
    def total_acked(self) -> int:
        return self.acked[-1] if self.acked else 0

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


if __name__ == "__main__":
    sys.exit(main())
