"""Durable storage: SQLAlchemy models, Alembic migrations, the share journal and repositories.

Storage takes its settings as its own value object (``StorageSettings``); it never reads the
pool's configuration. The composition root builds the settings from ``Config``
(``poolserver.storage_config``) and needs one call::

    storage = await open_storage(settings)    # engine + schema check + started journal
    sink = storage.journal                    # a stratum.interfaces.ShareSink
    ...
    await storage.close()                     # flushes the journal, disposes the engine
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal
from poolserver.storage.schema import SchemaError
from poolserver.storage.settings import StorageSettings, StorageSettingsError

__all__ = [
    "SchemaError",
    "Storage",
    "StorageSettings",
    "StorageSettingsError",
    "open_storage",
    "spool_dir",
]

log = logging.getLogger(__name__)


def spool_dir(settings: StorageSettings) -> Path:
    return settings.spool_path()


@dataclass
class Storage:
    engine: AsyncEngine
    url: str
    journal: ShareJournal

    async def check_schema(self) -> None:
        """Raise SchemaError (with the command to fix it) unless the schema is current."""
        await schema.check_schema(self.engine)

    async def close(self) -> None:
        await self.journal.close()
        await self.engine.dispose()


async def open_storage(settings: StorageSettings, *, create_if_empty: bool = True) -> Storage:
    """Connect, check the schema and start the share journal.

    A brand-new database (no tables at all; e.g. the embedded SQLite file on first start) gets
    the schema created when ``create_if_empty``. An existing database whose schema is not the
    code's head is refused with SchemaError naming ``poolserver db upgrade``. If the database
    cannot be reached at all, the pool still starts: the journal spools shares and replays them
    (after checking the schema) once the database is back.
    """
    settings.validate()
    url = settings.database_url()
    engine = create_engine(url, settings)
    try:
        reachable = True
        try:
            empty = await schema.is_empty(engine)
        except Exception as exc:
            reachable = False
            log.error(
                "storage: database %s unreachable at startup (%s); spooling shares",
                engine.url.render_as_string(hide_password=True),
                exc,
            )
        if reachable:
            if empty and create_if_empty:
                revision = await schema.upgrade(engine)
                log.info("storage: empty database, schema created at revision %s",
                         ", ".join(revision))  # fmt: skip
            await schema.check_schema(engine)
        journal = ShareJournal(
            engine,
            settings.spool_path(),
            flush_interval_ms=settings.flush_interval_ms,
            batch_size=settings.batch_size,
            retry_interval_s=settings.retry_interval_s,
        )
        await journal.start()
    except BaseException:
        await engine.dispose()
        raise
    return Storage(engine=engine, url=url, journal=journal)
