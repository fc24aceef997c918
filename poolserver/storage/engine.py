"""The async SQLAlchemy engine for `[storage].url`: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

SQLite is the embedded default: one file under the data dir, created on first start, in WAL mode
with ``synchronous`` from the settings (FULL by default, so a commit is on disk when it returns).
Both databases go through the same models and the same code paths.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import await_only, in_greenlet

from poolserver.storage.settings import (
    SQLITE_FILE,
    StorageSettings,
    sqlite_file,
    sqlite_sync_mode,
)

log = logging.getLogger(__name__)

__all__ = ["SQLITE_FILE", "EngineOptions", "create_engine", "database_url", "is_sqlite"]


class EngineOptions(Protocol):
    """The two settings the engine reads (a StorageSettings, or anything with these fields)."""

    @property
    def sqlite_synchronous(self) -> str: ...

    @property
    def pool_size(self) -> int: ...


def database_url(settings: StorageSettings) -> str:
    """The configured URL, or the embedded SQLite file under the data dir."""
    return settings.database_url()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, options: EngineOptions | None = None, *, sqlite_busy_timeout_ms: int = 30_000
) -> AsyncEngine:
    """An AsyncEngine for ``url``; for SQLite, creates the file's directory and sets pragmas
    (``sqlite_busy_timeout_ms``: how long a writer waits for another process's lock).

    Raises StorageSettingsError (naming ``storage.url`` / ``storage.sqlite_synchronous``) for an
    unusable SQLite setting.
    """
    opts: EngineOptions = options if options is not None else StorageSettings()
    if is_sqlite(url):
        return _sqlite_engine(url, opts, sqlite_busy_timeout_ms)
    return create_async_engine(
        url,
        pool_size=opts.pool_size,
        max_overflow=opts.pool_size,
        pool_pre_ping=True,
        connect_args={"timeout": 5, "command_timeout": 60},
    )


def _sqlite_engine(url: str, opts: EngineOptions, busy_timeout_ms: int) -> AsyncEngine:
    sync_mode = sqlite_sync_mode(opts.sqlite_synchronous)
    database = sqlite_file(url)
    database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sync_mode}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        cursor.close()

    event.listen(engine.sync_engine.pool, "close", _rollback_before_close)
    event.listen(engine.sync_engine.pool, "close_detached", _rollback_before_close)
    return engine


def _rollback_before_close(dbapi_connection: Any, *_record: Any) -> None:
    """Roll back whatever transaction a pooled SQLite connection still has, before it is closed.

    A task cancelled while its statement runs (``PoolApp.stop()`` cancelling a payout tick, a
    lease renewal...) makes SQLAlchemy terminate the connection. aiosqlite then closes the
    sqlite3 connection while the cancelled task's traceback still holds the statement's cursor;
    SQLite keeps such a connection as a "zombie" *with its write transaction and the write lock*
    until that cursor is garbage collected, and every other writer in the process waits
    ``busy_timeout`` and fails meanwhile (tests/test_storage_cancel.py). A rollback first ends
    the transaction (pending reads are aborted), so the zombie holds nothing.

    Runs inside SQLAlchemy's greenlet when the close can await (always, except a connection
    closed by garbage collection, where nothing can be awaited). A cancellation arriving during
    the rollback is requested again on the task: the close must still run, and the
    cancellation must not be lost (the shielded rollback is queued ahead of the close on the
    connection's thread either way)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is None or not in_greenlet():
        return
    try:
        await_only(asyncio.shield(driver.rollback()))
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.cancel()
    except Exception as exc:  # already closed or broken: the close that follows still runs
        log.debug("rollback before closing a SQLite connection failed: %r", exc)
