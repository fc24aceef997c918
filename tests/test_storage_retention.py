"""Retention roll-up on SQLite and PostgreSQL: exact per-miner hourly sums, nothing lost."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal
from poolserver.storage.models import Share, ShareRollup
from poolserver.storage.retention import floor_hour, retention_cutoff, roll_up
from tests.test_storage_journal import make_share

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
DIFFS = [1.0, 0.001, 65536.0, 0.1, 3.0]


async def store(engine, tmp_path, shares) -> None:
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1)
    await journal.start()
    await asyncio.gather(*(journal.put(s) for s in shares))
    await journal.close()


async def rollups(engine) -> dict[tuple[str, datetime], tuple[int, Fraction]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ShareRollup.__table__))).all()
    return {(r.account, r.bucket_start): (r.share_count, r.difficulty_sum) for r in rows}


def expected(shares, cutoff):
    out: dict[tuple[str, datetime], list] = defaultdict(lambda: [0, Fraction(0)])
    for s in shares:
        if s.created_at < cutoff:
            acc = out[(s.account, floor_hour(s.created_at))]
            acc[0] += 1
            acc[1] += Fraction(s.difficulty)
    return {k: tuple(v) for k, v in out.items()}


async def test_rollup_is_exact_and_moves_every_old_share(engine, tmp_path):
    shares = [
        make_share(
            i,
            account=f"m{i % 3}",
            difficulty=DIFFS[i % 5],
            created_at=T0 + timedelta(minutes=7 * i),
        )
        for i in range(60)
    ]
    await store(engine, tmp_path, shares)
    cutoff = T0 + timedelta(hours=4, minutes=30)  # floored to 04:00
    report = await roll_up(engine, cutoff)
    want = expected(shares, floor_hour(cutoff))
    assert report.shares == sum(c for c, _ in want.values()) == 35
    assert report.hours == 4
    assert await rollups(engine) == want
    async with engine.connect() as conn:
        left = (await conn.execute(select(Share.created_at))).scalars().all()
    assert len(left) == 60 - 35 and min(left) >= T0 + timedelta(hours=4)
    # Running again changes nothing.
    assert (await roll_up(engine, cutoff)).shares == 0
    assert await rollups(engine) == want


async def test_late_share_merges_into_its_rolled_up_hour(engine, tmp_path):
    first = [make_share(i, account="m1", created_at=T0 + timedelta(minutes=i)) for i in range(5)]
    await store(engine, tmp_path, first)
    await roll_up(engine, T0 + timedelta(hours=2))
    late = make_share(99, account="m1", difficulty=0.001, created_at=T0 + timedelta(minutes=30))
    await store(engine, tmp_path, [late])
    await roll_up(engine, T0 + timedelta(hours=2))
    assert await rollups(engine) == expected([*first, late], T0 + timedelta(hours=2))


def test_cutoff_from_retention_days():
    now = datetime(2026, 3, 31, 10, 45, tzinfo=UTC)
    assert retention_cutoff(now, 30) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(DIFFS),
            st.integers(min_value=0, max_value=6 * 3600 - 1),
        ),
        max_size=40,
    ),
    cut=st.integers(min_value=0, max_value=7 * 3600),
)
def test_rollup_preserves_per_miner_sums(db_url, tmp_path, plan, cut):
    """Raw + rolled-up per-miner sums equal the original shares' exact sums, for any history."""

    async def go() -> None:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(delete(Share))
                await conn.execute(delete(ShareRollup))
            shares = [
                make_share(i, account=a, difficulty=d, created_at=T0 + timedelta(seconds=t))
                for i, (a, d, t) in enumerate(plan)
            ]
            await store(engine, tmp_path, shares)
            await roll_up(engine, T0 + timedelta(seconds=cut))
            got: dict[str, list] = defaultdict(lambda: [0, Fraction(0)])
            for (account, _), (count, dsum) in (await rollups(engine)).items():
                got[account][0] += count
                got[account][1] += dsum
            async with engine.connect() as conn:
                raw = (await conn.execute(select(Share.account, Share.difficulty))).all()
                n_raw = (await conn.execute(select(func.count()).select_from(Share))).scalar_one()
            for account, d in raw:
                got[account][0] += 1
                got[account][1] += Fraction(d)
            want: dict[str, list] = defaultdict(lambda: [0, Fraction(0)])
            for s in shares:
                want[s.account][0] += 1
                want[s.account][1] += Fraction(s.difficulty)
            assert dict(got) == dict(want)
            assert n_raw == sum(
                1 for s in shares if s.created_at >= floor_hour(T0 + timedelta(seconds=cut))
            )
        finally:
            await engine.dispose()

    asyncio.run(go())
