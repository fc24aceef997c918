"""Wiring between the pool's ``Config`` and ``poolserver.storage``.

``poolserver.storage`` takes its own ``StorageSettings`` and never imports the config module
(DESIGN.md: storage does not reach up). Everything in ``poolserver/`` that holds a ``Config``
opens the database through these functions; an invalid storage setting becomes a ``ConfigError``
with the same message (it names the option, e.g. ``storage.url``), which the CLI prints as a
configuration error.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.config import Config, ConfigError
from poolserver.storage import Storage, open_storage
from poolserver.storage.engine import create_engine
from poolserver.storage.settings import StorageSettings, StorageSettingsError

__all__ = [
    "create_engine_from_config",
    "database_url",
    "open_storage_from_config",
    "run_on_database",
    "storage_settings",
]


def storage_settings(config: Config) -> StorageSettings:
    """The ``[storage]`` table and ``[pool].data_dir`` as storage's settings, validated."""
    s = config.storage
    settings = StorageSettings(
        data_dir=config.data_path,
        url=s.url,
        flush_interval_ms=s.flush_interval_ms,
        batch_size=s.batch_size,
        spool_dir=s.spool_dir,
        retry_interval_s=s.retry_interval_s,
        retention_days=s.retention_days,
        legal_retention_years=s.legal_retention_years,
        sqlite_synchronous=s.sqlite_synchronous,
        pool_size=s.pool_size,
    )
    try:
        return settings.validate()
    except StorageSettingsError as exc:
        raise ConfigError(str(exc)) from exc


def database_url(config: Config) -> str:
    """The configured database URL, or the embedded SQLite file under the data dir."""
    return storage_settings(config).database_url()


def create_engine_from_config(
    config: Config, *, sqlite_busy_timeout_ms: int = 30_000
) -> AsyncEngine:
    """A bare engine (no journal, no schema check) for CLI commands and the register."""
    settings = storage_settings(config)
    return create_engine(
        settings.database_url(), settings, sqlite_busy_timeout_ms=sqlite_busy_timeout_ms
    )


async def open_storage_from_config(config: Config, *, create_if_empty: bool = True) -> Storage:
    """``storage.open_storage`` for a ``Config``: engine, schema check, started journal."""
    return await open_storage(storage_settings(config), create_if_empty=create_if_empty)


async def run_on_database(
    config: Config, command: str, body: Callable[[AsyncEngine], Awaitable[int]]
) -> int:
    """Run an operator command's ``body`` on the configured database, schema checked first.

    An outdated schema prints the fix and returns 2; an unreachable database (at any point)
    prints ``poolserver COMMAND: cannot reach URL: reason`` and returns 1 — never a traceback.
    """
    from poolserver.storage import schema

    engine = create_engine_from_config(config)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        try:
            await schema.check_schema(engine)
        except schema.SchemaError as exc:
            print(f"poolserver: {exc}", file=sys.stderr)
            return 2
        return await body(engine)
    except OSError as exc:
        print(f"poolserver {command}: cannot reach {shown}: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
