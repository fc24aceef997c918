"""Honest reference miners: real Stratum clients grinding real shares with the C hash core,
paced to a fixed share rate, from 127.0.0.1 while the attacks come from other addresses.

Run as its own process (``python -m poolserver.security_suite.honest``) so an attack that
loads the tester's event loop cannot slow the honest side down: the pool alone decides how
many of their shares it accepts, and how fast. It prints JSON lines: a heartbeat
``{"t": unix time, "connects": n, "refused": "..."}`` every ``REPORT_S`` seconds, one line per
share as it is sent, ``{"q": id, "s": unix time}``, and one when its reply arrives, ``{"r": id,
"ok": accepted, "lat": seconds to the reply}``. ``HonestFleet`` starts it and judges windows by
the time a share was *sent*, so a reply's latency never moves a share into another case's
window; a share counts as kept only if accepted within ``MAX_ACK_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field

from poolserver.security_suite.wire import Conn, Share

REPORT_S = 0.1
MAX_ACK_S = 2.0  # an honest share counts as kept only if accepted within this many seconds


@dataclass
class Counts:
    connects: int = 0
    refused: str = ""
    ids: itertools.count = field(default_factory=itertools.count)


def _emit(doc: dict[str, object]) -> None:
    print(json.dumps(doc), flush=True)


async def mine(host: str, port: int, source: str, worker: str, rate: float,
               counts: Counts) -> None:  # fmt: skip
    period = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
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
            next_at = time.monotonic()
            while not conn.closed:
                job = conn.job
                if job is None:
                    await asyncio.sleep(0.05)
                    continue
                share = await asyncio.to_thread(conn.grind, job)

                async def send(conn: Conn = conn, job_id: str = job.job_id,
                               share: Share = share) -> None:  # fmt: skip
                    share_id = next(counts.ids)
                    sent = time.time()
                    _emit({"q": share_id, "s": sent})
                    r = await conn.request("mining.submit", share.params(worker, job_id),
                                           timeout=30.0)  # fmt: skip
                    err = r.error
                    _emit({"r": share_id, "ok": r.ok, "lat": round(time.time() - sent, 4),
                           "stale": bool(err and err[0] == 21)})

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
    parent = os.getppid()
    try:
        while os.getppid() == parent:  # the suite is gone (killed): stop mining
            _emit({"t": time.time(), "connects": counts.connects, "refused": counts.refused})
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
class Window:
    sent: int  # honest shares sent in the window (not counting those a new block made stale)
    kept: int  # of those, accepted within MAX_ACK_S
    seconds: float
    max_latency: float
    stale: int = 0  # refused as stale (a new block while in flight): not counted in ``sent``

    @property
    def fraction(self) -> float:
        return self.kept / self.sent if self.sent else 0.0

    @property
    def sent_rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def kept_rate(self) -> float:
        return self.kept / self.seconds if self.seconds > 0 else 0.0


@dataclass
class HonestFleet:
    """The honest miners' process and what it reported."""

    host: str
    port: int
    workers: list[str]
    rate: float
    proc: asyncio.subprocess.Process | None = None
    heartbeat: float = 0.0
    last: dict[str, object] = field(default_factory=dict)
    sent: list[tuple[float, int]] = field(default_factory=list)  # (send time, id), sorted
    # id -> (ok, latency); ids of shares refused as stale (a new block, not the pool's doing)
    results: dict[int, tuple[bool, float]] = field(default_factory=dict)
    stale: set[int] = field(default_factory=set)
    acked_total: int = 0
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
            if "t" in doc:
                self.heartbeat = float(doc["t"])
                self.last = doc
            elif "q" in doc:
                bisect.insort(self.sent, (float(doc["s"]), int(doc["q"])))
            elif "r" in doc:
                ok = bool(doc["ok"])
                self.results[int(doc["r"])] = (ok, float(doc["lat"]))
                if doc.get("stale"):
                    self.stale.add(int(doc["r"]))
                self.acked_total += ok

    async def settled(self, t: float) -> None:
        """Wait until every share sent before ``t`` has its reply (at most until the latency
        that still counts has passed) and a heartbeat after ``t`` was read."""
        deadline = t + MAX_ACK_S + 0.5
        while time.time() < deadline:
            i = bisect.bisect_left(self.sent, (t, -1))
            if self.heartbeat >= t and all(sid in self.results for _, sid in self.sent[:i][-200:]):
                return
            await asyncio.sleep(0.05)

    def window(self, t0: float, t1: float) -> Window:
        i0 = bisect.bisect_left(self.sent, (t0, -1))
        i1 = bisect.bisect_left(self.sent, (t1, -1))
        ids = [sid for _, sid in self.sent[i0:i1]]
        stale = sum(1 for sid in ids if sid in self.stale)
        outs = [self.results.get(sid, (False, float("inf"))) for sid in ids
                if sid not in self.stale]  # fmt: skip
        kept = sum(1 for ok, lat in outs if ok and lat <= MAX_ACK_S)
        late = [lat for _, lat in outs]
        return Window(len(outs), kept, t1 - t0, max(late, default=0.0), stale)

    @property
    def total_acked(self) -> int:
        return self.acked_total

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
