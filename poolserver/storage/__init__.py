"""Durable storage: SQLAlchemy models, Alembic migrations, the share journal and repositories.

The composition root (``poolserver/app.py``) needs one call::

    storage = await open_storage(config)      # engine + schema check + started journal
    sink = storage.journal                    # a stratum.interfaces.ShareSink
    ...
    await storage.close()                     # flushes the journal, disposes the engine
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.config import Config
from poolserver.storage import schema
from poolserver.storage.engine import create_engine, database_url
from poolserver.storage.journal import ShareJournal
from poolserver.storage.schema import SchemaError

__all__ = ["SchemaError", "Storage", "open_storage", "spool_dir"]

log = logging.getLogger(__name__)


def spool_dir(config: Config) -> Path:
    return (
        Path(config.storage.spool_dir) if config.storage.spool_dir else config.data_path / "spool"
    )


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


async def open_storage(config: Config, *, create_if_empty: bool = True) -> Storage:
    """Connect, check the schema and start the share journal.

    A brand-new database (no tables at all; e.g. the embedded SQLite file on first start) gets
    the schema created when ``create_if_empty``. An existing database whose schema is not the
    code's head is refused with SchemaError naming ``poolserver db upgrade``. If the database
    cannot be reached at all, the pool still starts: the journal spools shares and replays them
    (after checking the schema) once the database is back.
    """
    url = database_url(config)
    engine = create_engine(url, config.storage)
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
                log.info("storage: empty database, creating the schema")
                await schema.upgrade(engine)
            await schema.check_schema(engine)
        journal = ShareJournal(
            engine,
            spool_dir(config),
            flush_interval_ms=config.storage.flush_interval_ms,
            batch_size=config.storage.batch_size,
            retry_interval_s=config.storage.retry_interval_s,
        )
        await journal.start()
    except BaseException:
        await engine.dispose()
        raise
    return Storage(engine=engine, url=url, journal=journal)
