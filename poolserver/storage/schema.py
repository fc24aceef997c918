"""Schema migrations (Alembic) and the startup check that refuses an outdated schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.storage.metadata import load_all_models

MIGRATIONS = Path(__file__).parent / "migrations"
FIX_COMMAND = "poolserver [--config FILE] db upgrade"


class SchemaError(RuntimeError):
    """The database schema does not match this version of the code; the message says how to fix."""


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def heads() -> tuple[str, ...]:
    """The revision(s) this code needs (one head unless someone branched)."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def _current_sync(conn: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


async def current(engine: AsyncEngine) -> tuple[str, ...]:
    """The revision(s) recorded in the database; empty for a database never upgraded."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_sync)


async def is_empty(engine: AsyncEngine) -> bool:
    """True when the database has no tables at all (a first start)."""
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return not names


# pg_advisory_xact_lock key held while migrating ("qaz_sch" in ASCII)
MIGRATION_LOCK = 0x71617A5F736368


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str, ...]:
    """Apply migrations up to ``revision`` in one transaction; returns the new current revision."""

    def run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to change a constraint (Alembic batch mode): with foreign
            # keys enforced, dropping the old table fails while other tables reference its rows.
            # SQLite's documented procedure: keys off outside the transaction, check before
            # commit, keys on again (the pragma is a no-op inside a transaction).
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Several instances starting at once on one database: the first migrates,
                    # the others wait here and then find the schema at head (Alembic reads the
                    # version after the lock), instead of racing on CREATE TABLE alembic_version.
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                await conn.run_sync(run)
                if sqlite:
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise SchemaError(f"migration left dangling foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()
    return await current(engine)


async def check_schema(engine: AsyncEngine) -> None:
    """Raise SchemaError unless the database is at exactly the code's head revision(s)."""
    have, need = await current(engine), heads()
    if have == need:
        return
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if not have:
        state = "database has no schema"
    elif set(have) - known:
        raise SchemaError(
            f"database schema is at revision {', '.join(have)}, which this version of qazpool "
            f"does not know (needs {', '.join(need)}): the database was upgraded by a newer "
            "version; run that version or restore a matching backup"
        )
    else:
        state = f"database schema is at revision {', '.join(have)}"
    raise SchemaError(
        f"{state}, this version of qazpool needs {', '.join(need)}; "
        f"run: {FIX_COMMAND}"
    )


async def model_drift(engine: AsyncEngine) -> list[str]:
    """Differences between the models and the live schema (empty when they agree)."""
    metadata = load_all_models()

    def run(conn: Connection) -> list[str]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return [repr(d) for d in compare_metadata(ctx, metadata)]

    async with engine.connect() as conn:
        return await conn.run_sync(run)
