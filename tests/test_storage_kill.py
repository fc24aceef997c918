"""Kill tests: nothing acknowledged is ever lost.

* SIGKILL the acking server (the real journal via ``open_storage``) under load 20 times; after
  the last restart every share the load generator saw acknowledged is in the database, once.
* Stop PostgreSQL for 30 s under load: acks continue (spool), and everything is there after.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from poolserver.storage.engine import create_engine
from poolserver.storage.models import Share
from poolserver.storage.spool import Spool

ROOT = Path(__file__).resolve().parent.parent


def start_server(url: str, spool: Path, tmp: Path) -> tuple[subprocess.Popen, int]:
    port_file = tmp / f"port-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.storage_kill_server", url, str(spool), str(port_file)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "server.log", "ab"),
    )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"kill server did not start: {(tmp / 'server.log').read_text()}")
        time.sleep(0.02)
    return proc, int(port_file.read_text())


async def load(
    port: int, start: int, acked: set[int], stop: asyncio.Event, connections: int = 8
) -> int:
    """Send increasing share numbers on several connections until ``stop`` or the server dies;
    record every acknowledged one. Returns the next unused number."""
    counter = [start]

    async def conn() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        try:
            # Like a miner: send a burst, wait for its acks (any order), repeat.
            while not stop.is_set():
                chunk = range(counter[0], counter[0] + 50)
                counter[0] += 50
                writer.write(b"".join(f"{n}\n".encode() for n in chunk))
                await writer.drain()
                for _ in chunk:
                    line = await asyncio.wait_for(reader.readline(), 30)
                    if not line:
                        return
                    acked.add(int(line.split()[1]))
        except (ConnectionError, OSError, TimeoutError):
            pass
        finally:
            writer.close()

    await asyncio.gather(*(conn() for _ in range(connections)))
    return counter[0]


async def stored_numbers(url: str) -> list[int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            hashes = (await conn.execute(select(Share.share_hash))).scalars().all()
    finally:
        await engine.dispose()
    return [int.from_bytes(h, "little") for h in hashes]


async def kill_loop(url: str, tmp: Path, rounds: int) -> tuple[set[int], list[int]]:
    spool = tmp / "spool"
    acked: set[int] = set()
    rng = random.Random(20260301)
    nxt = 0
    for _ in range(rounds):
        proc, port = start_server(url, spool, tmp)
        stop = asyncio.Event()
        task = asyncio.create_task(load(port, nxt, acked, stop))
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        nxt = await task
    proc, _ = start_server(url, spool, tmp)  # the final restart replays the spool
    await asyncio.sleep(1.0)
    proc.terminate()
    proc.wait()
    return acked, await stored_numbers(url)


@pytest.mark.slow
def test_sigkill_20_times_sqlite(sqlite_template, tmp_path):
    import shutil

    db = tmp_path / "pool.sqlite3"
    shutil.copyfile(sqlite_template, db)
    acked, stored = asyncio.run(kill_loop(f"sqlite+aiosqlite:///{db}", tmp_path, 20))
    assert len(acked) > 1000  # the load was real
    assert len(stored) == len(set(stored))  # exactly once
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:5]}"


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_20_times_postgres(pg_server, pg_template, tmp_path):
    url = pg_server.url(pg_server.new_database(template=pg_template))
    acked, stored = asyncio.run(kill_loop(url, tmp_path, 20))
    assert len(acked) > 1000
    assert len(stored) == len(set(stored))
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:5]}"


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_down_30s_under_load(pg_server, pg_template, tmp_path):
    url = pg_server.url(pg_server.new_database(template=pg_template))

    async def go() -> tuple[set[int], int, list[int]]:
        proc, port = start_server(url, tmp_path / "spool", tmp_path)
        acked: set[int] = set()
        stop = asyncio.Event()
        task = asyncio.create_task(load(port, 0, acked, stop, connections=4))
        await asyncio.sleep(1.0)
        pg_server.stop()
        try:
            before = len(acked)
            await asyncio.sleep(30)
            during = len(acked) - before
        finally:
            pg_server.start()
        await asyncio.sleep(5)  # reconnect + replay while the load continues
        stop.set()
        await task
        spool = Spool(tmp_path / "spool")
        deadline = time.monotonic() + 180
        while spool.has_data() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert not spool.has_data(), "the spool was not replayed within 180 s"
        proc.terminate()
        proc.wait()
        return acked, during, await stored_numbers(url)

    acked, during, stored = asyncio.run(go())
    assert during > 1000, "acks must continue while PostgreSQL is down"
    assert len(stored) == len(set(stored))
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:5]}"
