"""``ShareJournal.close()`` ends while a spool replay keeps failing.

close() waits for a replay that is writing to a reachable database (so the spool is emptied
before the process exits). A replay that then fails, the database reachable for reads but not
taking writes (SQLite's write lock held: by another process, or by a connection a cancelled task
left behind), was retried every ``retry_interval_s`` for ever and close(), hence
``PoolApp.stop()``, never returned. A closing journal no longer retries: the spool stays on
disk and the next start replays it."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3

from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal, new_uid, share_row
from poolserver.storage.spool import Spool
from tests.conftest import wait_until
from tests.test_storage_journal import make_share


async def test_close_ends_while_the_replay_cannot_write(tmp_path, sqlite_template):
    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    spool = Spool(tmp_path / "spool")
    spool.append([share_row(make_share(i), new_uid()) for i in range(20)])  # a previous run's
    engine = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=50)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the write lock; reads (the journal's probe) still work
    try:
        journal = ShareJournal(engine, spool.dir, flush_interval_ms=1, retry_interval_s=0.05)
        await journal.start()
        await wait_until(lambda: journal.stats.db_failures == 0 and journal.db_available, 10)
        async with asyncio.timeout(10):  # before: the replay was retried for ever
            await journal.close()
        assert spool.has_data()  # kept for the next start
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    journal = ShareJournal(engine, spool.dir, flush_interval_ms=1, retry_interval_s=0.05)
    await journal.start()
    await wait_until(lambda: not spool.has_data(), 10)
    await journal.close()
    await engine.dispose()
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM shares").fetchone() == (20,)
    con.close()
