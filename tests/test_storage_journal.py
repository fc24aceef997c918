"""The share journal on SQLite and PostgreSQL: durable before ack, group commit, spool + replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal, new_uid, share_row
from poolserver.storage.models import Share
from poolserver.storage.spool import Spool, decode_row, encode_row
from stratum.interfaces import AcceptedShare, DuplicateShare

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_share(i: int, account: str = "kz1", **kw) -> AcceptedShare:
    fields = dict(
        account=account,
        worker=f"rig{i % 7}",
        session_id=f"{i % 251:08x}",
        peer=f"10.0.{i % 256}.{i % 200}",
        job_id=f"{i % 97:x}",
        height=800_000 + i % 3,
        difficulty=[1.0, 0.001, 65536.0, 1e-3 * 3][i % 4],
        share_hash=i.to_bytes(32, "little"),
        is_block=i % 1000 == 999,
        created_at=T0 + timedelta(microseconds=1234 * i),
        user_agent="cgminer/4.11.1",
        extra={"vr": "1"} if i % 2 else {},
    )
    fields.update(kw)
    return AcceptedShare(**fields)


async def count(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(Share))).scalar_one()


async def test_every_field_round_trips(engine, tmp_path):
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=2)
    await journal.start()
    shares = [make_share(i) for i in range(300)]
    await asyncio.gather(*(journal.put(s) for s in shares))
    await journal.close()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(Share).order_by(Share.share_hash))).all()
    assert len(rows) == 300
    by_hash = {s.share_hash: s for s in shares}
    for row in rows:
        want = by_hash[row.share_hash]
        for name in (
            "account",
            "worker",
            "session_id",
            "peer",
            "job_id",
            "height",
            "is_block",
            "user_agent",
            "extra",
        ):
            assert getattr(row, name) == getattr(want, name), name
        assert row.difficulty == want.difficulty  # the exact double
        assert row.created_at == want.created_at and row.created_at.tzinfo is not None
        assert len(row.uid) == 16
    assert len({r.uid for r in rows}) == 300
    assert journal.stats.committed == 300 and journal.stats.spooled == 0


async def test_put_returns_only_after_commit(engine, db_url, tmp_path):
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=30, batch_size=10_000)
    await journal.start()
    other = create_engine(db_url)  # an independent connection sees only committed data
    try:
        for i in range(5):
            task = asyncio.create_task(journal.put(make_share(i)))
            await asyncio.sleep(0.005)
            assert not task.done()  # still inside the flush interval: not yet committed
            assert await count(other) == i
            await task
            assert await count(other) == i + 1
    finally:
        await journal.close()
        await other.dispose()


async def test_group_commit_batches_by_size(engine, tmp_path):
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1000, batch_size=100)
    await journal.start()
    await asyncio.wait_for(
        asyncio.gather(*(journal.put(make_share(i)) for i in range(1000))), timeout=30
    )
    # A full batch is written at once, without waiting for the 1 s interval.
    assert journal.stats.batches == 10
    await journal.close()
    assert await count(engine) == 1000


async def test_put_many_settles_each_share_after_commit(engine, db_url, tmp_path):
    """One call for many shares (the Stratum server's accepted shares of one hash batch): it
    returns only once every share is committed, with one outcome per share in order: None when
    stored, the ValueError naming the field for a malformed share (not stored), DuplicateShare
    for a hash already stored. A call spanning several group commits waits for all of them."""
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=30, batch_size=4)
    await journal.start()
    other = create_engine(db_url)
    try:
        await journal.put(make_share(3))
        shares = [make_share(i) for i in range(10)]
        shares[5] = make_share(5, peer=7)  # malformed
        task = asyncio.create_task(journal.put_many(shares))
        await asyncio.sleep(0.005)
        assert not task.done()
        outcomes = await task
        assert [type(o).__name__ for o in outcomes] == (
            ["NoneType"] * 3 + ["DuplicateShare", "NoneType", "ValueError"] + ["NoneType"] * 4
        )
        assert isinstance(outcomes[3], DuplicateShare)
        assert "share.peer" in str(outcomes[5])
        assert await count(other) == 1 + 8  # committed before the call returned
        assert journal.stats.duplicates == 1
        assert await journal.put_many([]) == []
        assert await journal.put_many([make_share(5, peer=7)]) != [None]
    finally:
        await journal.close()
        await other.dispose()


async def test_journal_holds_no_pooled_connection_after_close(engine, tmp_path):
    """On PostgreSQL the flusher keeps its own AUTOCOMMIT connection between batches (one round
    trip per batch); it is returned when the journal closes, so restarts do not leak pool
    slots, and a batch with a conflict still records it."""
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1)
    await journal.start()
    try:
        for k in range(3):
            assert await journal.put_many([make_share(10 * k + i) for i in range(5)]) == [None] * 5
        outcomes = await journal.put_many([make_share(0), make_share(99)])
        assert [type(o).__name__ for o in outcomes] == ["DuplicateShare", "NoneType"]
    finally:
        await journal.close()
    assert engine.pool.checkedout() == 0
    assert await count(engine) == 16
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM share_conflicts"))).scalar() == 1


async def test_put_many_with_the_database_down_spools_then_acks(tmp_path):
    """Database unusable (no schema): a ``put_many``'s shares are fsync'd to the spool and
    settled as stored; with the spool unwritable too, each share gets JournalUnavailable."""
    from poolserver.storage.journal import JournalUnavailable

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1, retry_interval_s=60)
    await journal.start()
    try:
        assert not journal.db_available
        assert await journal.put_many([make_share(i) for i in range(5)]) == [None] * 5
        assert journal.stats.spooled == 5
        assert len(Spool.read(Spool(tmp_path / "spool").active)) == 5
        (tmp_path / "not-a-dir").write_text("x")
        journal.spool = Spool(tmp_path / "not-a-dir" / "spool")
        outcomes = await journal.put_many([make_share(i) for i in range(5, 8)])
        assert [type(o) for o in outcomes] == [JournalUnavailable] * 3
    finally:
        await journal.close()
        await engine.dispose()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account": "a" * 129}, "share.account"),
        ({"peer": 7}, "share.peer"),
        ({"difficulty": float("nan")}, "share.difficulty"),
        ({"difficulty": 0.0}, "share.difficulty"),
        ({"share_hash": b"\x00" * 31}, "share.share_hash"),
        ({"created_at": datetime(2026, 1, 1)}, "share.created_at"),
        ({"height": -1}, "share.height"),
        ({"extra": {"k": 1}}, "share.extra"),
    ],
)
async def test_bad_share_is_refused_naming_the_field(engine, tmp_path, change, field):
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1)
    await journal.start()
    try:
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            await journal.put(make_share(1, **change))
        await journal.put(make_share(2))  # the journal keeps working
    finally:
        await journal.close()
    assert await count(engine) == 1


async def test_non_utc_aware_times_are_stored_as_utc(engine, tmp_path):
    almaty = timezone(timedelta(hours=5))
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1)
    await journal.start()
    await journal.put(make_share(1, created_at=datetime(2026, 3, 1, 17, 0, tzinfo=almaty)))
    await journal.close()
    async with engine.connect() as conn:
        got = (await conn.execute(select(Share.created_at))).scalar_one()
    assert got == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert got.utcoffset() == timedelta(0)


async def test_restart_replays_spool_exactly_once(engine, tmp_path):
    """A previous run spooled shares (some of which had in fact been committed: an ambiguous
    failure) and died mid-write; the next start stores each share exactly once."""
    spool = Spool(tmp_path / "spool")
    rows = [share_row(make_share(i), new_uid()) for i in range(50)]
    journal = ShareJournal(engine, spool.dir, flush_interval_ms=1)
    await journal._insert_rows(rows[:20])  # committed before the "failure"
    spool.append(rows[:30])
    spool.rotate()  # an interrupted replay left a replay file ...
    spool.append(rows[30:])  # ... and more was spooled afterwards
    with spool.active.open("ab") as fh:  # torn write at the kill: never acknowledged
        fh.write(encode_row(share_row(make_share(999), new_uid()))[:40])
    await journal.start()
    for _ in range(200):
        if not spool.has_data():
            break
        await asyncio.sleep(0.05)
    await journal.put(make_share(1000))
    await journal.close()
    assert not spool.has_data()
    assert journal.stats.replayed == 30
    async with engine.connect() as conn:
        uids = (await conn.execute(select(Share.uid))).scalars().all()
    assert len(uids) == len(set(uids)) == 51
    assert {r["uid"] for r in rows} <= set(uids)


async def test_corrupt_spool_is_quarantined_not_lost(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    good = [share_row(make_share(i), new_uid()) for i in range(3)]
    spool.append(good)
    spool.rotate()
    path = spool.pending_files()[0]
    path.write_bytes(b"garbage\n" + path.read_bytes())
    spool.append(good[:1])
    journal = ShareJournal(engine, spool.dir, flush_interval_ms=1, retry_interval_s=0.05)
    await journal.start()
    for _ in range(200):
        if not spool.has_data():
            break
        await asyncio.sleep(0.05)
    await journal.close()
    assert (spool.dir / "rejected" / path.name).exists()
    assert await count(engine) == 1


@pytest.mark.postgres
async def test_postgres_outage_spools_then_replays(pg_server, pg_template, tmp_path):
    """The PostgreSQL server is stopped under load: acks continue from the spool, and every
    share is in the database exactly once after it comes back (SQLite: test_sqlite_lock_outage)."""
    engine = create_engine(pg_server.url(pg_server.new_database(template=pg_template)))
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=2, retry_interval_s=0.1)
    await journal.start()
    try:
        await asyncio.gather(*(journal.put(make_share(i)) for i in range(100)))
        pg_server.stop()
        try:
            # Acked while the database is down: they are in the fsync'd spool.
            await asyncio.wait_for(
                asyncio.gather(*(journal.put(make_share(i)) for i in range(100, 300))), 30
            )
            assert journal.stats.spooled == 200
            assert not journal.db_available
        finally:
            pg_server.start()
        for _ in range(300):
            if journal.db_available and not journal.spool.has_data():
                break
            await asyncio.sleep(0.05)
        await journal.put(make_share(300))
    finally:
        await journal.close()
    assert journal.stats.replayed == 200
    assert await count(engine) == 301
    await engine.dispose()


async def test_sqlite_lock_outage(tmp_path, sqlite_template):
    """SQLite 'unreachable': another process holds the write lock longer than busy_timeout."""
    import shutil
    import sqlite3

    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=50)
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1, retry_interval_s=0.1)
    await journal.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        await asyncio.wait_for(asyncio.gather(*(journal.put(make_share(i)) for i in range(50))), 30)
        assert journal.stats.spooled == 50
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    for _ in range(300):
        if journal.db_available and not journal.spool.has_data():
            break
        await asyncio.sleep(0.05)
    await journal.put(make_share(50))
    await journal.close()
    await engine.dispose()
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*), count(DISTINCT uid) FROM shares").fetchone() == (51, 51)
    con.close()


def test_spool_not_writable_and_db_down_refuses_the_ack(tmp_path):
    async def go() -> None:
        bad = tmp_path / "not-a-dir"
        bad.write_text("x")
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
        journal = ShareJournal(engine, bad / "spool", flush_interval_ms=1)
        await journal.start()  # empty database: schema check fails, so it is "down"
        assert not journal.db_available
        from poolserver.storage.journal import JournalUnavailable

        with pytest.raises(JournalUnavailable, match="spool not writable"):
            await journal.put(make_share(1))
        await journal.close()
        await engine.dispose()

    asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(
    account=st.text(max_size=20),
    difficulty=st.floats(min_value=1e-12, max_value=1e15, allow_nan=False),
    extra=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    micros=st.integers(min_value=0, max_value=10**12),
)
def test_spool_record_round_trip(account, difficulty, extra, micros):
    share = make_share(
        5,
        account=account,
        difficulty=difficulty,
        extra=extra,
        created_at=T0 + timedelta(microseconds=micros),
    )
    row = share_row(share, new_uid())
    line = encode_row(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_row(line[:-1]) == row


def test_uids_are_unique_and_time_ordered():
    uids = [new_uid() for _ in range(10_000)]
    assert len(set(uids)) == len(uids)
    stamps = [int.from_bytes(u[:6], "big") for u in uids]
    assert stamps == sorted(stamps)
