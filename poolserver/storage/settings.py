"""What ``poolserver.storage`` needs to know, as its own small value object.

Storage does not read the pool's configuration (DESIGN.md: ``poolserver/storage`` does not import
other ``poolserver`` modules). The composition root builds a :class:`StorageSettings` from the
``[storage]`` table and the data dir (``poolserver.storage_config.storage_settings``) and hands it
in. Field names match the ``[storage]`` keys, so error messages name the option the operator sets
(``storage.url``, ``storage.sqlite_synchronous``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

SQLITE_FILE = "qazpool.sqlite3"
SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


class StorageSettingsError(ValueError):
    """A storage setting is invalid; the message starts with its dotted name (``storage.url``)."""


@dataclass(frozen=True)
class StorageSettings:
    # Where the embedded SQLite file and the default spool live ([pool].data_dir).
    data_dir: Path = Path("./qazpool-data")
    # SQLAlchemy async URL; empty = sqlite+aiosqlite:///<data_dir>/qazpool.sqlite3
    url: str = ""
    flush_interval_ms: float = 5.0
    batch_size: int = 2000
    # Empty = <data_dir>/spool.
    spool_dir: str = ""
    retry_interval_s: float = 2.0
    retention_days: int = 30
    legal_retention_years: int = 5
    sqlite_synchronous: str = "FULL"
    pool_size: int = 5

    def database_url(self) -> str:
        """The configured URL (checked), or the embedded SQLite file under the data dir."""
        return database_url(self.url, self.data_dir)

    def spool_path(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else Path(self.data_dir) / "spool"

    def validate(self) -> StorageSettings:
        """Raise StorageSettingsError naming the first bad field; return self when all are good."""
        url = self.database_url()
        if make_url(url).get_backend_name() == "sqlite":
            sqlite_sync_mode(self.sqlite_synchronous)
            sqlite_file(url)
        if self.batch_size < 1:
            raise StorageSettingsError("storage.batch_size: must be at least 1")
        if self.flush_interval_ms < 0:
            raise StorageSettingsError("storage.flush_interval_ms: must not be negative")
        if self.retry_interval_s <= 0:
            raise StorageSettingsError("storage.retry_interval_s: must be positive")
        if not isinstance(self.legal_retention_years, int) or self.legal_retention_years < 1:
            raise StorageSettingsError(
                "storage.legal_retention_years: must be a whole number of years >= 1, got "
                f"{self.legal_retention_years!r}"
            )
        return self


def database_url(url: str, data_dir: Path | str) -> str:
    """``url`` checked for a supported driver, or the embedded SQLite file under ``data_dir``."""
    url = url.strip()
    if not url:
        path = (Path(data_dir) / SQLITE_FILE).resolve()
        return f"sqlite+aiosqlite:///{path}"
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise StorageSettingsError(f"storage.url: not a database URL ({exc})") from exc
    if parsed.drivername not in DRIVERS:
        raise StorageSettingsError(
            f"storage.url: driver {parsed.drivername!r} is not supported; "
            "use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB"
        )
    return url


def sqlite_sync_mode(value: str) -> str:
    mode = value.upper()
    if mode not in SYNC_MODES:
        raise StorageSettingsError(
            f"storage.sqlite_synchronous: {value!r} is not one of {', '.join(SYNC_MODES)}"
        )
    return mode


def sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise StorageSettingsError(
            "storage.url: SQLite needs a file (an in-memory database is not durable)"
        )
    return Path(database)
