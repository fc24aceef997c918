"""The async SQLAlchemy engine for `[storage].url`: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

SQLite is the embedded default: one file under the data dir, created on first start, in WAL mode
with ``synchronous`` from the config (FULL by default, so a commit is on disk when it returns).
Both databases go through the same models and the same code paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from poolserver.config import Config, ConfigError, StorageConfig

SQLITE_FILE = "qazpool.sqlite3"
_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def database_url(config: Config) -> str:
    """The configured URL, or the embedded SQLite file under the data dir."""
    url = config.storage.url.strip()
    if not url:
        path = (config.data_path / SQLITE_FILE).resolve()
        return f"sqlite+aiosqlite:///{path}"
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise ConfigError(f"storage.url: not a database URL ({exc})") from exc
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError(
            f"storage.url: driver {parsed.drivername!r} is not supported; "
            "use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB"
        )
    return url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, storage: StorageConfig | None = None, *, sqlite_busy_timeout_ms: int = 30_000
) -> AsyncEngine:
    """An AsyncEngine for ``url``; for SQLite, creates the file's directory and sets pragmas
    (``sqlite_busy_timeout_ms``: how long a writer waits for another process's lock)."""
    storage = storage or StorageConfig()
    if is_sqlite(url):
        return _sqlite_engine(url, storage, sqlite_busy_timeout_ms)
    return create_async_engine(
        url,
        pool_size=storage.pool_size,
        max_overflow=storage.pool_size,
        pool_pre_ping=True,
        connect_args={"timeout": 5, "command_timeout": 60},
    )


def _sqlite_engine(url: str, storage: StorageConfig, busy_timeout_ms: int) -> AsyncEngine:
    sync_mode = storage.sqlite_synchronous.upper()
    if sync_mode not in _SYNC_MODES:
        raise ConfigError(
            f"storage.sqlite_synchronous: {storage.sqlite_synchronous!r} is not one of "
            f"{', '.join(_SYNC_MODES)}"
        )
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ConfigError("storage.url: SQLite needs a file (an in-memory database is not durable)")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
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
