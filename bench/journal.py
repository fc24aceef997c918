"""Share journal throughput: shares/s acknowledged (durably committed) on SQLite and PostgreSQL.

Baseline, measured in the same run on the same database: one transaction (one commit) per share,
which is what a journal without group commit does. Producers model miners: each awaits its ack
before submitting the next share.

    .venv/bin/python bench/journal.py                 # SQLite + a throwaway PostgreSQL server
    .venv/bin/python bench/journal.py --only sqlite --shares 200000 --producers 8000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from poolserver.config import StorageConfig
from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal, driver_insert, new_uid, share_row
from stratum.interfaces import AcceptedShare

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def shares(n: int) -> list[AcceptedShare]:
    return [
        AcceptedShare(
            account=f"kz{i % 500}",
            worker=f"rig{i % 40}",
            session_id=f"{i % 9973:08x}",
            peer=f"10.1.{i % 250}.{i % 199}",
            job_id=f"{i % 16:x}",
            height=900_000,
            difficulty=65536.0,
            share_hash=i.to_bytes(32, "little"),
            is_block=False,
            created_at=T0 + timedelta(microseconds=i),
            user_agent="bmminer/2.0.0",
        )
        for i in range(n)
    ]


async def run_journal(
    url: str, items: list[AcceptedShare], producers: int, spool: Path, cfg: StorageConfig
) -> float:
    engine = create_engine(url, cfg)
    journal = ShareJournal(
        engine, spool, flush_interval_ms=cfg.flush_interval_ms, batch_size=cfg.batch_size
    )
    await journal.start()
    per = len(items) // producers

    async def miner(k: int) -> None:
        for s in items[k * per : (k + 1) * per]:
            await journal.put(s)

    t = time.perf_counter()
    await asyncio.gather(*(miner(k) for k in range(producers)))
    elapsed = time.perf_counter() - t
    await journal.close()
    await engine.dispose()
    assert journal.stats.committed == per * producers, journal.stats
    return per * producers / elapsed


async def run_baseline(url: str, items: list[AcceptedShare], cfg: StorageConfig) -> float:
    engine = create_engine(url, cfg)
    sql, params = driver_insert(engine)  # the journal's own statement, one commit per share
    t = time.perf_counter()
    for s in items:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(sql, params([share_row(s, new_uid())]))
    elapsed = time.perf_counter() - t
    await engine.dispose()
    return len(items) / elapsed


async def fresh(url: str) -> None:
    engine = create_engine(url)
    await schema.upgrade(engine)
    await engine.dispose()


async def bench_db(name: str, make_url: object, args: argparse.Namespace, tmp: Path) -> None:
    cfg = StorageConfig(flush_interval_ms=args.flush_ms, batch_size=args.batch)
    items = shares(args.shares)
    base_items = shares(args.baseline_shares)
    url_b = make_url("baseline")  # type: ignore[operator]
    await fresh(url_b)
    base = await run_baseline(url_b, base_items, cfg)
    rates = []
    for r in range(args.repeat):
        url_j = make_url(f"journal{r}")  # type: ignore[operator]
        await fresh(url_j)
        rates.append(await run_journal(url_j, items, args.producers, tmp / f"spool-{name}", cfg))
    rate = statistics.median(rates)
    print(
        f"{name:10s} journal {rate:10,.0f} shares/s median of {args.repeat} "
        f"[{', '.join(f'{x:,.0f}' for x in rates)}] (batch {args.batch}, {args.flush_ms} ms, "
        f"{args.producers} producers, {len(items):,} shares) | "
        f"row-at-a-time {base:8,.0f} shares/s | ratio {rate / base:6.1f}x"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shares", type=int, default=100_000)
    ap.add_argument("--baseline-shares", type=int, default=2_000)
    ap.add_argument("--producers", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=StorageConfig.batch_size)
    ap.add_argument("--flush-ms", type=float, default=StorageConfig.flush_interval_ms)
    ap.add_argument("--repeat", type=int, default=3, help="journal runs (median reported)")
    ap.add_argument("--only", choices=["sqlite", "postgres"])
    ap.add_argument("--pg-url", help="use this PostgreSQL server's database (dropped tables!)")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="qazpool-bench-"))
    try:
        if args.only != "postgres":
            await bench_db(
                "sqlite", lambda tag: f"sqlite+aiosqlite:///{tmp / tag}.sqlite3", args, tmp
            )
        if args.only != "sqlite":
            from tests.storage_fixtures import PgServer

            server = PgServer()
            server.start()
            try:
                await bench_db(
                    "postgresql", lambda tag: server.url(server.new_database()), args, tmp
                )
            finally:
                server.destroy()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
