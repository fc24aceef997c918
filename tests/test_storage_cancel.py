"""A task cancelled in the middle of a SQLite write transaction does not leave the database
locked.

Cancelling a task while its statement runs makes SQLAlchemy terminate the connection (it cannot
know how far the statement got). On aiosqlite that closes the sqlite3 connection while the
cancelled task's traceback still holds the statement's cursor: SQLite then keeps the connection as
a "zombie", with its write transaction and the write lock, until the garbage collector frees that
cursor, and every other writer waits ``busy_timeout`` (30 s) and fails meanwhile. That is how a
payout tick cancelled by ``PoolApp.stop()`` made the payout lease's release, the instance lease
and the journal's last flush hang (tests/test_shutdown_stress.py found it). The engine now rolls
the transaction back before any close."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from poolserver.storage.engine import create_engine

SLOW_COUNT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c"
)


async def _cancelled_mid_transaction(engine, started: asyncio.Event) -> asyncio.Task:
    async def tick() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))  # the write lock
            started.set()
            await conn.execute(text(SLOW_COUNT))  # cancelled while SQLite computes this

    task = asyncio.create_task(tick())
    await started.wait()
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    return task  # kept, as a stop() that awaited it keeps its exception and traceback


async def test_a_write_after_a_cancelled_transaction_is_not_blocked(tmp_path: Path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
                           sqlite_busy_timeout_ms=1000)  # fmt: skip
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1, 0)"))
        for _ in range(2):
            task = await _cancelled_mid_transaction(engine, asyncio.Event())
            # "database is locked" after the 1 s busy timeout while the zombie holds the lock
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE t SET v = v + 100 WHERE id = 1"))
            del task
        async with engine.connect() as conn:
            # the cancelled increments were rolled back; the later writes all landed
            assert (await conn.execute(text("SELECT v FROM t"))).scalar_one() == 200
    finally:
        await engine.dispose()
