"""Storage's line of defence against crediting the same work twice (issue 10 part 1), on SQLite
and PostgreSQL: a share hash is stored at most once among the raw shares; a second share with
the same hash is refused (``DuplicateShare`` from ``put``) or, when it was acknowledged from the
spool, recorded in ``share_conflicts`` and never credited. A replay of the same row (same uid)
stays idempotent and is not a conflict."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal, new_uid, share_row
from poolserver.storage.models import Share, ShareConflict
from poolserver.storage.spool import Spool
from stratum.interfaces import AcceptedShare, DuplicateShare
from tests.conftest import wait_until
from tests.test_storage_journal import make_share


def again(share: AcceptedShare, **kw: Any) -> AcceptedShare:
    """The same work (same header hash) arriving another way: other job id, session, time."""
    fields = dict(job_id="ff", session_id="deadbeef", created_at=share.created_at + timedelta(1))
    fields.update(kw)
    return AcceptedShare(
        **{f: getattr(share, f) for f in AcceptedShare.__dataclass_fields__} | fields
    )


async def stored(engine) -> list[Any]:
    async with engine.connect() as conn:
        return (await conn.execute(select(Share).order_by(Share.id))).all()


async def conflicts(engine) -> list[Any]:
    async with engine.connect() as conn:
        return (await conn.execute(select(ShareConflict).order_by(ShareConflict.id))).all()


async def started(engine, path, **kw: Any) -> ShareJournal:
    kw.setdefault("flush_interval_ms", 1)
    kw.setdefault("retry_interval_s", 0.05)
    journal = ShareJournal(engine, path, **kw)
    await journal.start()
    return journal


async def test_duplicate_in_one_batch(engine, tmp_path):
    """Two shares with one hash in the same group commit: the first commits with every other
    share of the batch, only the second put raises DuplicateShare."""
    journal = await started(engine, tmp_path / "spool", flush_interval_ms=1000, batch_size=12)
    shares = [make_share(i) for i in range(10)]
    dup = again(shares[3], worker="other")
    results = await asyncio.wait_for(
        asyncio.gather(*(journal.put(s) for s in [*shares, dup, make_share(10)]),
                       return_exceptions=True),
        30,
    )  # fmt: skip
    await journal.close()
    assert [type(r).__name__ for r in results] == ["NoneType"] * 10 + ["DuplicateShare", "NoneType"]
    assert journal.stats.batches == 1 and journal.stats.spooled == 0
    assert journal.stats.committed == 11 and journal.stats.duplicates == 1
    rows = await stored(engine)
    assert len(rows) == 11 and len({r.share_hash for r in rows}) == 11
    first = next(r for r in rows if r.share_hash == shares[3].share_hash)
    assert first.worker == shares[3].worker  # the first one is kept
    (c,) = await conflicts(engine)
    assert (c.source, c.share_hash, c.worker, c.job_id) == ("live", dup.share_hash, "other", "ff")
    assert c.existing_uid == first.uid and c.uid != first.uid


async def test_duplicate_across_batches(engine, tmp_path):
    journal = await started(engine, tmp_path / "spool")
    try:
        share = make_share(1)
        await journal.put(share)
        with pytest.raises(DuplicateShare):
            await journal.put(again(share))
        with pytest.raises(DuplicateShare):  # whatever worker, job or session it arrives under
            await journal.put(again(share, account="kz2", worker="x", job_id="1"))
        await journal.put(make_share(2))  # the journal keeps working
    finally:
        await journal.close()
    assert len(await stored(engine)) == 2
    assert journal.stats.duplicates == 2 and journal.stats.committed == 2
    assert [c.source for c in await conflicts(engine)] == ["live", "live"]


async def test_duplicate_across_restart(engine, tmp_path):
    """The in-memory duplicate set is gone after a restart; the database still refuses."""
    first = await started(engine, tmp_path / "spool")
    await first.put(make_share(7))
    await first.close()
    second = await started(engine, tmp_path / "spool")
    try:
        with pytest.raises(DuplicateShare):
            await second.put(again(make_share(7)))
    finally:
        await second.close()
    assert len(await stored(engine)) == 1
    assert len(await conflicts(engine)) == 1


async def test_two_journals_on_one_database(engine, tmp_path):
    """Two pool instances (two journals) credit one hash once between them."""
    a = await started(engine, tmp_path / "a")
    b = await started(engine, tmp_path / "b")
    try:
        shares = [make_share(i) for i in range(40)]
        results = await asyncio.gather(
            *(j.put(s) for s in shares for j in (a, b)), return_exceptions=True
        )
    finally:
        await a.close()
        await b.close()
    assert all(r is None or isinstance(r, DuplicateShare) for r in results), results
    assert sum(r is None for r in results) == 40
    assert len(await stored(engine)) == 40 and len(await conflicts(engine)) == 40


async def test_same_uid_replay_is_not_a_conflict(engine, tmp_path, caplog):
    """A spool whose rows were in fact committed (ambiguous failure) replays as a no-op: same
    uid, same row, no conflict recorded, nothing stored twice; the new rows are inserted."""
    spool = Spool(tmp_path / "spool")
    rows = [share_row(make_share(i), new_uid()) for i in range(30)]
    journal = ShareJournal(engine, spool.dir, flush_interval_ms=1, retry_interval_s=0.05)
    await journal._insert_rows(rows[:20])  # committed before the "failure"
    spool.append(rows)
    spool.rotate()
    spool.append(rows[10:20])  # replayed twice over
    with caplog.at_level(logging.WARNING, logger="poolserver.storage.journal"):
        await journal.start()
        await wait_until(lambda: not spool.has_data(), 30)
        await journal.close()
    assert journal.stats.replayed == 10
    assert journal.stats.replay_conflicts == 0 and journal.stats.duplicates == 0
    assert [r.uid for r in await stored(engine)] == [r["uid"] for r in rows]
    assert await conflicts(engine) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not (spool.dir / "rejected").exists()


async def test_conflict_during_spool_replay_is_recorded(engine, tmp_path, caplog):
    """Shares acked from the spool while the database was down: one repeats a hash already
    stored, one repeats a hash spooled earlier. Each is stored once, the others replay, and
    the conflicts are logged, counted and recorded durably (idempotent on a second replay)."""
    spool = Spool(tmp_path / "spool")
    journal = await started(engine, spool.dir)
    await journal.put(make_share(1))
    await journal.close()
    (held,) = await stored(engine)
    late = share_row(again(make_share(1), worker="late"), new_uid())
    fresh = [share_row(make_share(i), new_uid()) for i in range(2, 6)]
    twin = share_row(again(make_share(4), worker="twin"), new_uid())
    spool.append([fresh[0], late, fresh[1]])
    spool.rotate()
    spool.append([fresh[2], fresh[3], twin])
    with caplog.at_level(logging.WARNING, logger="poolserver.storage.journal"):
        journal = await started(engine, spool.dir)
        await wait_until(lambda: not spool.has_data(), 30)
        await journal.close()
    assert journal.stats.replayed == 4 and journal.stats.replay_conflicts == 2
    rows = await stored(engine)
    assert [r.uid for r in rows] == [held.uid, *(r["uid"] for r in fresh)]
    recorded = await conflicts(engine)
    assert [(c.uid, c.source, c.worker) for c in recorded] == [
        (late["uid"], "replay", "late"),
        (twin["uid"], "replay", "twin"),
    ]
    assert recorded[0].existing_uid == held.uid
    assert recorded[1].existing_uid == fresh[2]["uid"]
    assert recorded[0].difficulty == late["difficulty"] and recorded[0].extra == late["extra"]
    assert recorded[0].created_at == late["created_at"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert "account kz1 worker late hash " + late["share_hash"][::-1].hex() in warned[0]
    assert not (spool.dir / "rejected").exists()

    # The same file replayed again (a crash before it was deleted): nothing new anywhere.
    spool.append([fresh[0], late, twin])
    journal = await started(engine, spool.dir)
    await wait_until(lambda: not spool.has_data(), 30)
    await journal.close()
    assert journal.stats.replayed == 0
    assert len(await stored(engine)) == 5 and len(await conflicts(engine)) == 2


async def test_database_refuses_a_second_row_with_a_stored_hash(engine):
    """The constraint itself, whatever writes to ``shares``."""
    row = share_row(make_share(1), new_uid())
    async with engine.begin() as conn:
        await conn.execute(Share.__table__.insert(), [row])
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(Share.__table__.insert(), [dict(row, uid=new_uid())])


_T = datetime(2026, 11, 30, tzinfo=UTC)


async def test_0005_moves_existing_duplicates_to_share_conflicts(empty_db_url):
    """A database written before 0005 holds the same hash three times and another twice: the
    upgrade keeps the first row of each, moves the others to share_conflicts, then enforces."""
    engine = create_engine(empty_db_url)
    try:
        assert await schema.upgrade(engine, "0004_ledger_block") == ("0004_ledger_block",)
        hashes = [b"\x01" * 32, b"\x02" * 32, b"\x01" * 32, b"\x03" * 32, b"\x02" * 32,
                  b"\x01" * 32]  # fmt: skip
        rows = [
            share_row(make_share(i, share_hash=h, created_at=_T + timedelta(seconds=i)),
                      bytes([i]) * 16)
            for i, h in enumerate(hashes)
        ]  # fmt: skip
        shares = sa.table(
            "shares",
            *(sa.column(c) for c in rows[0] if c not in ("created_at", "extra")),
            sa.column("created_at", sa.DateTime(timezone=True)),
            sa.column("extra", sa.JSON()),
        )
        async with engine.begin() as conn:
            await conn.execute(shares.insert(), rows)
        assert await schema.upgrade(engine) == schema.heads()
        await schema.check_schema(engine)
        kept = await stored(engine)
        assert [r.uid for r in kept] == [rows[i]["uid"] for i in (0, 1, 3)]
        moved = await conflicts(engine)
        assert [(c.uid, c.source, c.existing_uid) for c in moved] == [
            (rows[2]["uid"], "migration", rows[0]["uid"]),
            (rows[4]["uid"], "migration", rows[1]["uid"]),
            (rows[5]["uid"], "migration", rows[0]["uid"]),
        ]
        assert moved[0].created_at == rows[2]["created_at"] and moved[0].worker == rows[2]["worker"]
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(shares.insert(), [rows[2]])
        async with engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(Share))).scalar_one()
        assert total == 3
    finally:
        await engine.dispose()


async def test_duplicate_acked_from_the_spool_during_an_outage(tmp_path, sqlite_template, caplog):
    """SQLite 'unreachable' (another process holds the write lock): the same work arrives again
    and is acknowledged from the spool; when the database is back the replay stores it once,
    records the conflict and credits the first share only."""
    import shutil
    import sqlite3

    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=50)
    journal = await started(engine, tmp_path / "spool", retry_interval_s=0.1)
    await journal.put(make_share(1))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        await asyncio.wait_for(journal.put(again(make_share(1), worker="late")), 30)
        await asyncio.wait_for(journal.put(make_share(2)), 30)
        assert journal.stats.spooled == 2
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with caplog.at_level(logging.WARNING, logger="poolserver.storage.journal"):
        await wait_until(lambda: journal.db_available and not journal.spool.has_data(), 30)
    await journal.close()
    assert journal.stats.replayed == 1 and journal.stats.replay_conflicts == 1
    assert [r.worker for r in await stored(engine)] == ["rig1", "rig2"]
    assert [(c.source, c.worker) for c in await conflicts(engine)] == [("replay", "late")]
    assert any("worker late" in r.getMessage() for r in caplog.records)
    await engine.dispose()


async def test_0005_downgrades_and_upgrades_again(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        await schema.upgrade(engine)

        def down(conn: sa.Connection) -> None:
            from alembic import command

            cfg = schema.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004_ledger_block")

        async with engine.begin() as conn:
            await conn.run_sync(down)
        assert await schema.current(engine) == ("0004_ledger_block",)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "share_conflicts" not in names
        assert await schema.upgrade(engine) == schema.heads()
        assert await schema.model_drift(engine) == []
    finally:
        await engine.dispose()
