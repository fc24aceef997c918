"""Migrations, the startup schema check and `poolserver db` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from poolserver.cli import main
from poolserver.config import config_from_dict
from poolserver.storage import SchemaError, schema
from poolserver.storage.engine import create_engine
from poolserver.storage_config import open_storage_from_config


async def test_upgrade_creates_head_and_matches_models(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        assert await schema.is_empty(engine)
        assert await schema.current(engine) == ()
        assert await schema.upgrade(engine) == schema.heads()
        await schema.check_schema(engine)
        # The migration creates exactly what the models describe (on this database).
        assert await schema.model_drift(engine) == []
        # Upgrading again is a no-op.
        assert await schema.upgrade(engine) == schema.heads()
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_instances_starting_together_migrate_once(empty_db_url):
    """Scale-out: several instances started at once on an empty PostgreSQL database all reach
    head; without the migration lock they raced on CREATE TABLE alembic_version and all but one
    failed with a unique violation."""
    if not empty_db_url.startswith("postgresql"):
        pytest.skip("SQLite serves one instance")
    engines = [create_engine(empty_db_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(schema.upgrade(e) for e in engines))
        assert results == [schema.heads()] * 3
        await schema.check_schema(engines[0])
    finally:
        for e in engines:
            await e.dispose()


async def test_empty_database_is_refused_with_the_fix_command(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        with pytest.raises(
            SchemaError, match=r"no schema.*poolserver \[--config FILE\] db upgrade"
        ):
            await schema.check_schema(engine)
    finally:
        await engine.dispose()


async def test_outdated_schema_refused_at_startup(empty_db_url, tmp_path):
    engine = create_engine(empty_db_url)
    try:
        await schema.upgrade(engine)
        # As if a newer qazpool had upgraded this database.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'ffffdeadbeef'"))
        with pytest.raises(SchemaError, match=r"ffffdeadbeef.*newer version"):
            await schema.check_schema(engine)
    finally:
        await engine.dispose()
    cfg = config_from_dict({"storage": {"url": empty_db_url, "spool_dir": str(tmp_path / "spool")}})
    with pytest.raises(SchemaError, match="ffffdeadbeef"):
        await open_storage_from_config(cfg)


async def test_unversioned_schema_refused_with_the_upgrade_command(empty_db_url, tmp_path):
    engine = create_engine(empty_db_url)
    try:
        await schema.upgrade(engine)
        # Tables present but no recorded revision: never auto-created over existing data.
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM alembic_version"))
    finally:
        await engine.dispose()
    cfg = config_from_dict({"storage": {"url": empty_db_url, "spool_dir": str(tmp_path / "spool")}})
    with pytest.raises(SchemaError, match=r"no schema.*db upgrade"):
        await open_storage_from_config(cfg)


async def test_first_start_creates_the_sqlite_file_under_the_data_dir(tmp_path):
    data = tmp_path / "fresh" / "data"
    cfg = config_from_dict({"pool": {"data_dir": str(data)}})
    storage = await open_storage_from_config(cfg)
    try:
        assert (data / "qazpool.sqlite3").exists()
        await storage.check_schema()
        async with storage.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            sync = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
        assert mode == "wal"
        assert sync == 2  # FULL
    finally:
        await storage.close()


def test_cli_db_upgrade_current_check(empty_db_url, tmp_path, capsys):
    conf = tmp_path / "pool.toml"
    conf.write_text(f'[storage]\nurl = "{empty_db_url}"\n')
    assert main(["--config", str(conf), "db", "check"]) == 1
    assert "db upgrade" in capsys.readouterr().err
    assert main(["--config", str(conf), "db", "upgrade"]) == 0
    assert f"-> {schema.heads()[0]}" in capsys.readouterr().out
    assert main(["--config", str(conf), "db", "current"]) == 0
    out = capsys.readouterr().out
    assert f"current:  {schema.heads()[0]}" in out
    assert main(["--config", str(conf), "db", "check"]) == 0
    assert "OK: schema is current" in capsys.readouterr().out


def test_bad_url_is_a_clear_config_error(tmp_path, capsys):
    conf = tmp_path / "pool.toml"
    conf.write_text('[storage]\nurl = "mysql://x@y/z"\n')
    assert main(["--config", str(conf), "db", "current"]) == 2
    assert "storage.url" in capsys.readouterr().err


async def test_0003_0004_migrate_rows_written_by_0002(empty_db_url):
    """0002 stored an inconclusive submission as ``orphaned``; 0003 gives it its own status.
    On SQLite the constraint change rebuilds ``found_blocks`` while allocations and ledger
    entries reference it: the rebuild must keep them and leave foreign keys enforced. 0004 fills
    ``ledger_entries.block_id`` of old credits from ``data["block_hash"]``."""
    engine = create_engine(empty_db_url)
    try:
        assert await schema.upgrade(engine, "0002_register") == ("0002_register",)
        t = datetime(2026, 11, 25, tzinfo=UTC)
        blocks = sa.table("found_blocks", *(sa.column(c) for c in (
            "id", "block_hash", "height", "prevhash", "account", "worker", "job_id", "block_hex",
            "coinbase_value", "bits", "status", "verdict", "confirmations")),
            sa.column("found_at", sa.DateTime(timezone=True)),
            sa.column("updated_at", sa.DateTime(timezone=True)), sa.column("data", sa.JSON()))
        allocations = sa.table("block_allocations", *(sa.column(c) for c in (
            "block_id", "inputs_hash", "canonical", "policy", "reward", "pool_fee")),
            sa.column("created_at", sa.DateTime(timezone=True)))
        async with engine.begin() as conn:
            await conn.execute(blocks.insert(), [
                dict(id=bid, block_hash=f"{bid:064x}", height=bid, prevhash="0" * 64,
                     account="alice", worker="rig", job_id="j", block_hex="00",
                     coinbase_value=5_000_000_000, bits=0x207FFFFF, status=status, verdict="",
                     confirmations=0, found_at=t, updated_at=t, data={"submit": submit})
                for bid, status, submit in [(1, "orphaned", "inconclusive"),
                                            (2, "orphaned", "accepted"),
                                            (3, "accepted", "accepted")]])
            await conn.execute(allocations.insert().values(
                block_id=1, inputs_hash="x", canonical=b"x", policy="full", reward=1, pool_fee=0,
                created_at=t))
            # before 0004 credits were stored without their block id (hash in data only)
            await conn.execute(sa.table("ledger_entries", *(sa.column(c) for c in (
                "entry_key", "account", "kind", "amount")),
                sa.column("created_at", sa.DateTime(timezone=True)),
                sa.column("data", sa.JSON())).insert().values(
                entry_key="credit:1:0:alice", account="alice", kind="credit", amount=1,
                created_at=t, data={"block_hash": f"{1:064x}", "generation": 0}))
        assert await schema.upgrade(engine) == schema.heads()
        await schema.check_schema(engine)
        async with engine.begin() as conn:
            statuses = (await conn.execute(
                text("SELECT id, status FROM found_blocks ORDER BY id"))).all()
            assert [tuple(r) for r in statuses] == [
                (1, "inconclusive"), (2, "orphaned"), (3, "accepted")]
            kept = (await conn.execute(text("SELECT block_id FROM block_allocations"))).all()
            assert [r[0] for r in kept] == [1]
            backfilled = (await conn.execute(text("SELECT block_id FROM ledger_entries"))).all()
            assert [r[0] for r in backfilled] == [1]
            with pytest.raises(Exception, match=r"(?i)check|constraint"):
                async with conn.begin_nested():
                    await conn.execute(text("UPDATE found_blocks SET status = 'lost'"))
            if engine.dialect.name == "sqlite":
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
                with pytest.raises(Exception, match=r"(?i)foreign key"):
                    async with conn.begin_nested():
                        await conn.execute(text("DELETE FROM found_blocks WHERE id = 1"))
    finally:
        await engine.dispose()


def test_one_alembic_head():
    """One migration chain: every revision is chained after the previous head (two engineers'
    revisions written at once must be re-chained before they land)."""
    assert len(schema.heads()) == 1, f"several Alembic heads: {schema.heads()}"
