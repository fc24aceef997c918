"""The async SQLAlchemy engine for `[storage].url`: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

SQLite is the embedded default: one file under the data dir, created on first start, in WAL mode
with ``synchronous`` from the settings (FULL by default, so a commit is on disk when it returns).
Both databases go through the same models and the same code paths.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from poolserver.storage.settings import (
    SQLITE_FILE,
    StorageSettings,
    sqlite_file,
    sqlite_sync_mode,
)

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

    return engine
