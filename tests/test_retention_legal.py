"""Issue 17, retention that fits the law: rolling raw shares up leaves everything a report or an
inspection needs untouched. On a database with real distributions (the payout service allocated,
credited and paid a block the embedded chain mined from journaled shares), the income reports
are generated, every raw share is rolled up, and the reports generated again are the same bytes
(signatures included); every legal table is unchanged (the frozen allocation among them). Every
table has a retention decision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.cli import main
from poolserver.config import config_from_dict
from poolserver.payout_service import PayoutService
from poolserver.storage.engine import create_engine
from poolserver.storage.metadata import load_all_models
from poolserver.storage.models import FoundBlock, Share, ShareRollup
from poolserver.storage.repository import Allocations
from poolserver.storage.retention import LEGAL, OPERATIONAL, RAW, retention_status, roll_up
from tests.report_support import paid_pool_ready_for_reports


def test_every_table_has_a_retention_decision():
    tables = set(load_all_models().tables) | {"alembic_version"}
    groups = [set(RAW), set(LEGAL), set(OPERATIONAL)]
    assert set().union(*groups) == tables
    assert sum(len(g) for g in groups) == len(tables)  # each table in exactly one group


async def _legal_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        out = {}
        async with engine.connect() as conn:
            for name in sorted(LEGAL):
                t = load_all_models().tables[name]
                rows = (await conn.execute(sa.select(t))).all()
                out[name] = sorted((tuple(r) for r in rows), key=repr)
        return out
    finally:
        await engine.dispose()


def _reports(base: list[str], period: list[str], out: Path) -> dict[str, bytes]:
    assert main([*base, "report", "miners", *period, "--out", str(out / "miners")]) == 0
    assert main([*base, "report", "commission", *period, "--out", str(out / "commission")]) == 0
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert any(name.endswith(".xml") for name in files) and len(files) >= 6
    return files


def test_rolling_up_raw_shares_leaves_reports_and_legal_records_identical(db_url, tmp_path):
    base, period = paid_pool_ready_for_reports(db_url, tmp_path)
    data = tmp_path / "data"
    before = _reports(base, period, tmp_path / "before")
    legal_before = asyncio.run(_legal_rows(db_url))

    async def roll_and_recompute() -> tuple[int, int, bool]:
        engine = create_engine(db_url)
        try:
            config = config_from_dict({"pool": {"data_dir": str(data)}, "storage": {"url": db_url}})
            chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
            service = PayoutService(engine, config, chain, None)
            async with engine.connect() as conn:
                row = (await conn.execute(sa.select(FoundBlock))).one()
            frozen = await Allocations(engine).get(row.block_hash)
            assert (await service.compute_allocation(row)).to_dict() == frozen.to_dict()
            # a cut-off after every share: all raw shares become hourly sums
            report = await roll_up(engine, datetime.now(UTC) + timedelta(hours=2))
            async with engine.connect() as conn:
                raw = (await conn.execute(sa.select(sa.func.count()).select_from(Share))).scalar()
                sums = (
                    await conn.execute(sa.select(sa.func.sum(ShareRollup.share_count)))
                ).scalar()
            # the frozen allocation is what pays and reports; it is never recomputed
            same = (await Allocations(engine).get(row.block_hash)).to_dict() == frozen.to_dict()
            status = {r.table: r for r in await retention_status(engine, 30, 5)}
            assert status["shares"].rows == 0 and status["share_rollups"].rows > 0
            assert (
                status["ledger_entries"].keep_until.year == status["ledger_entries"].oldest.year + 5
            )
            assert report.shares == sums
            return raw, report.shares, same
        finally:
            await engine.dispose()

    raw, rolled, same_allocation = asyncio.run(roll_and_recompute())
    assert raw == 0 and rolled > 0
    assert same_allocation, "the frozen allocation changed"
    legal_after = asyncio.run(_legal_rows(db_url))
    assert legal_after.pop("share_rollups") and not legal_before.pop("share_rollups")
    assert legal_after == legal_before  # nothing a report or an inspection needs was touched
    after = _reports(base, period, tmp_path / "after")
    assert after == before  # same files, same bytes, same signatures
