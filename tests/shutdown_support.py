"""Start/stop cycles of the real ``PoolApp`` under mining, for the shutdown stress tests.

One cycle: start the pool (embedded regtest chain: every share is a block, so block submit →
template refresh runs all the time; payouts ticking fast; the rest of the network finding
blocks; db polling on or off), let real Stratum clients mine for a seeded random delay, then
``stop()`` while they still submit. What a cycle checks:

- ``stop()`` returns within ``STOP_BOUND_S``; otherwise every task's stack and every thread's
  traceback are printed before the test fails (and a watchdog dumps the threads should the
  event loop itself be blocked, where no asyncio timeout can fire);
- no task the pool created is still pending when ``stop()`` returns;
- no default-executor thread is left busy (the pytest-asyncio runner's teardown waits for them);
- every share a miner was told ``true`` for is in the database (the journal's promise).

The data directory and the database are kept from one cycle to the next, so each start also
replays what the last stop left (spool, found blocks, leases, the persisted chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import random
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from poolserver.app import PoolApp
from poolserver.config import config_from_dict
from poolserver.storage.engine import create_engine
from poolserver.storage.models import Share
from tests.stratum_client import StratumClient, StratumClientError

STOP_BOUND_S = 30.0  # drain_timeout_s below is 5 s; everything else should take well under that
WATCHDOG_S = 90.0  # the loop itself blocked: faulthandler dumps every thread
EXECUTOR_IDLE_S = 10.0  # a to_thread call in flight at stop() may still be finishing


def stress_config(data_dir: Path, *, db_url: str = "", db_poll: bool = True) -> dict[str, Any]:
    return {
        "pool": {"data_dir": str(data_dir), "lease_ttl_s": 3.0},
        "storage": {"url": db_url, "retry_interval_s": 0.2},
        "chain": {"bits": "207fffff", "persist": True, "network_block_interval_s": 0.5},
        "stratum": {
            "listeners": [
                {"host": "127.0.0.1", "port": 0, "start_difficulty": 1e-6, "min_difficulty": 1e-8}
            ],
            "drain_timeout_s": 5.0,
        },
        "metrics": {"host": "127.0.0.1", "port": 0, "db_poll_interval_s": 0.2 if db_poll else 0},
        "web": {"port": 0},
        "register": {"enforce": "off", "poll_interval_s": 0.5},
        "payouts": {
            "tick_interval_s": 0.1,
            "allocation_delay_s": 0.0,
            "maturity_confirmations": 2,
            "min_payout_sats": 1000,
            "leader_ttl_s": 3.0,
            "leader_retry_s": 0.2,
        },
        "node": {"recover_interval_s": 0.5},
    }


@dataclass
class Miner:
    """One real Stratum client submitting as fast as it can grind; remembers every share the
    pool acknowledged (``result: true``)."""

    client: StratumClient
    acked: list[bytes] = field(default_factory=list)
    answered: int = 0
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        c = self.client
        with contextlib.suppress(StratumClientError, ConnectionError, TimeoutError, OSError):
            while not c.closed:
                job = await c.wait_job(timeout=10)
                found = c.grind(job)
                reply = await c.submit(job, found)
                self.answered += 1
                if reply.get("result") is True:
                    self.acked.append(found.hash)


async def start_miners(host: str, port: int) -> list[Miner]:
    miners = []
    for kind, worker in (("cgminer", "alice.s19"), ("bitaxe", "bob.gamma"),
                         ("cpuminer", "carol.cpu")):  # fmt: skip
        c = await StratumClient.connect(host, port)
        await c.login_as(kind, worker)
        miners.append(Miner(c))
    for m in miners:
        m.task = asyncio.get_running_loop().create_task(m.run())
    return miners


async def stop_miners(miners: list[Miner]) -> None:
    for m in miners:
        await m.client.close()
    for m in miners:
        if m.task is not None:
            m.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await m.task


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where a suspended task is, innermost last: ``task.print_stack()`` shows only its
    outermost coroutine; this follows ``cr_await`` down to the future it waits on."""
    lines = []
    obj: Any = task.get_coro()
    while obj is not None:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None)
        if nxt is None and frame is None:
            lines.append(f"  awaiting {obj!r}")
        obj = nxt
    return lines


def dump_everything(why: str) -> None:
    """Every asyncio task's stack (and await chain) and every thread's traceback, to stderr."""
    print(f"\n===== {why}: asyncio tasks =====", file=sys.stderr)
    for t in asyncio.all_tasks():
        print(f"--- {t!r}", file=sys.stderr)
        t.print_stack(limit=3, file=sys.stderr)
        print("  await chain:", file=sys.stderr)
        print("\n".join(await_chain(t)), file=sys.stderr)
    print(f"===== {why}: threads =====", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


async def bounded(coro: Coroutine[Any, Any, None], bound: float, what: str) -> None:
    """Await ``coro`` for at most ``bound`` seconds; past that, dump every stack and fail
    (the coroutine runs in its own task, shielded, so its stack is part of the dump)."""
    task = asyncio.get_running_loop().create_task(coro, name=what)
    try:
        async with asyncio.timeout(bound):
            await asyncio.shield(task)
    except TimeoutError:
        dump_everything(f"{what} did not finish within {bound} s")
        raise AssertionError(f"{what} did not finish within {bound} s (stacks above)") from None


def pending_pool_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks created since ``before`` that are still pending, except the test's miners."""
    left = []
    for t in asyncio.all_tasks() - before:
        if t is asyncio.current_task() or t.done():
            continue
        code = getattr(t.get_coro(), "cr_code", None)
        if code is not None and code.co_filename.endswith(("stratum_client.py",
                                                           "shutdown_support.py")):  # fmt: skip
            continue
        left.append(t)
    return left


def busy_executor_threads() -> int:
    """Default-executor threads running a call (or calls queued for one)."""
    ex = getattr(asyncio.get_running_loop(), "_default_executor", None)
    if not isinstance(ex, ThreadPoolExecutor):
        return 0
    idle = ex._idle_semaphore._value  # type: ignore[attr-defined]
    return max(0, len(ex._threads) - idle) + ex._work_queue.qsize()  # type: ignore[attr-defined]


async def wait_executor_idle(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while busy_executor_threads():
        if loop.time() > deadline:
            dump_everything("default executor still busy after stop()")
            raise AssertionError(f"{busy_executor_threads()} default-executor thread(s) busy "
                                 f"{timeout} s after stop() (stacks above)")  # fmt: skip
        await asyncio.sleep(0.05)


def connection_threads() -> list[threading.Thread]:
    """aiosqlite's per-connection threads (not daemons: one left running keeps the test
    process from exiting after the last test)."""
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


async def wait_connection_threads_gone(before: set[threading.Thread], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while left := [t for t in connection_threads() if t not in before]:
        if loop.time() > deadline:
            dump_everything("database connection threads left after stop()")
            raise AssertionError(f"{len(left)} database connection thread(s) still running "
                                 f"{timeout} s after stop() (stacks above)")  # fmt: skip
        await asyncio.sleep(0.05)


async def stored_hashes(url: str, hashes: list[bytes]) -> set[bytes]:
    engine = create_engine(url)
    found: set[bytes] = set()
    try:
        async with engine.connect() as conn:
            for i in range(0, len(hashes), 500):
                rows = await conn.execute(
                    select(Share.share_hash).where(Share.share_hash.in_(hashes[i : i + 500]))
                )
                found.update(bytes(r[0]) for r in rows)
    finally:
        await engine.dispose()
    return found


@dataclass
class CycleResult:
    delay: float
    db_poll: bool
    acked: int
    answered: int


async def one_cycle(cfg: dict[str, Any], delay: float) -> CycleResult:
    """Start, mine for ``delay`` seconds, stop: the checks in the module docstring."""
    app = PoolApp(config_from_dict(cfg))
    before = set(asyncio.all_tasks())
    threads_before = set(connection_threads())
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=False)
    miners: list[Miner] = []
    try:
        await bounded(app.start(), STOP_BOUND_S, "PoolApp.start()")
        try:
            host, port = app.stratum_addresses[0]
            miners = await start_miners(host, port)
            await asyncio.sleep(delay)
        finally:
            await bounded(app.stop(), STOP_BOUND_S, "PoolApp.stop()")
        left = pending_pool_tasks(before)
        if left:
            dump_everything("tasks left pending by stop()")
        assert not left, f"stop() left {len(left)} task(s) pending: {left}"
        await stop_miners(miners)
        await wait_executor_idle(EXECUTOR_IDLE_S)
        await wait_connection_threads_gone(threads_before, EXECUTOR_IDLE_S)
    finally:
        faulthandler.cancel_dump_traceback_later()
        await stop_miners(miners)
    acked = [h for m in miners for h in m.acked]
    url = app.storage.url
    missing = set(acked) - await stored_hashes(url, acked)
    assert not missing, f"{len(missing)} acknowledged share(s) not in the database"
    return CycleResult(delay, cfg["metrics"]["db_poll_interval_s"] > 0, len(acked),
                       sum(m.answered for m in miners))  # fmt: skip


async def run_cycles(data_dir: Path, cycles: int, seed: int, *, db_url: str = "",
                     max_delay: float = 1.5) -> list[CycleResult]:  # fmt: skip
    rng = random.Random(seed)
    print(f"shutdown stress: seed={seed} cycles={cycles} db={db_url or 'sqlite'}")
    results = []
    for i in range(cycles):
        delay = rng.uniform(0, max_delay)
        db_poll = rng.random() < 0.5
        print(f"cycle {i}: delay {delay:.3f} s, db_poll {db_poll}", flush=True)
        cfg = stress_config(data_dir, db_url=db_url, db_poll=db_poll)
        r = await one_cycle(cfg, delay)
        print(
            f"  stopped cleanly; {r.answered} shares answered, {r.acked} acknowledged", flush=True
        )
        results.append(r)
    return results
