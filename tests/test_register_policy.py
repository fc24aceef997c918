"""Enforcement: authorize refuses unknown/unlicensed/expired/suspended/revoked miners; a
suspension recorded with the CLI (another connection, as from another process) cuts off the
miner's live Stratum session over real TCP within seconds, and its shares from the suspension's
start earn nothing in PPLNS. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from sqlalchemy import select

from payouts.pplns import compute_window
from payouts.types import BlockRecord, ShareRecord
from poolserver.cli import main
from poolserver.register.cutoff import connect_cutoff
from poolserver.register.events import RegisterEvents
from poolserver.register.licensing import LicenseState
from poolserver.register.payouts_hook import load_suspensions
from poolserver.register.policy import RegisterAccountPolicy
from poolserver.register.repository import RegisterRepository
from poolserver.storage.engine import create_engine
from poolserver.storage.journal import ShareJournal
from poolserver.storage.models import Share
from tests.stratum_client import StratumClient, StratumClientError
from tests.stratum_support import start_server
from tests.test_register_rules import constructed_numbers

IDS = constructed_numbers(6, seed=23)
NOW = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def registered(repo: RegisterRepository) -> None:
    await repo.add_miner("op", "acme", "ACME LLP", IDS[0])
    await repo.add_license("op", "acme", "KZ-1", date(2024, 1, 1), "I")
    await repo.add_miner("op", "nolic", "No License IE", IDS[1])
    await repo.add_miner("op", "old", "Old LLP", IDS[2])
    await repo.add_license("op", "old", "KZ-2", date(2021, 1, 1), "II")  # expired 2024-01-01
    await repo.add_miner("op", "susp", "Susp LLP", IDS[3])
    await repo.add_license("op", "susp", "KZ-3", date(2024, 1, 1), "I")
    await repo.suspend(
        "op", "KZ-3", NOW - timedelta(days=1), "inspection found violations", months=2
    )
    await repo.add_miner("op", "gone", "Gone LLP", IDS[4])
    await repo.add_license("op", "gone", "KZ-4", date(2024, 1, 1), "I")
    await repo.revoke("op", "KZ-4", NOW - timedelta(days=3), "court decision 2-77/2025")


async def test_authorize_decisions(engine):
    clock = Clock()
    repo = RegisterRepository(engine, clock=clock)
    await registered(repo)
    policy = RegisterAccountPolicy(repo, clock=clock)
    ok = await policy.authorize("acme", "rig1", "10.0.0.1")
    assert ok.allowed and ok.reason == ""
    cases = {
        "ghost": "not in this pool's register",
        "nolic": "has no mining license in force",
        "old": "expired on 2024-01-01",
        "susp": "suspended until 2025-07-31",
        "gone": "was revoked on 2025-05-29",
    }
    for account, text in cases.items():
        d = await policy.authorize(account, "rig1", "10.0.0.1")
        assert not d.allowed and text in d.reason, (account, d.reason)
    assert "inspection found violations" in (await policy.authorize("susp", "w", "p")).reason
    bad = await policy.authorize("acme", "rig'; drop", "10.0.0.1")
    assert not bad.allowed and "worker character U+0027 at position 4" in bad.reason
    await policy.tick()
    assert policy.license_states() == {
        LicenseState.ACTIVE: 1,
        LicenseState.NONE: 1,
        LicenseState.EXPIRED: 1,
        LicenseState.SUSPENDED: 1,
        LicenseState.REVOKED: 1,
    }


async def test_watcher_publishes_cutoffs_for_changes_from_another_connection(db_url, caplog):
    clock = Clock()
    engine_pool, engine_cli = create_engine(db_url), create_engine(db_url)
    try:
        cli_repo = RegisterRepository(engine_cli, clock=clock)
        await registered(cli_repo)
        events = RegisterEvents()
        seen = []
        events.subscribe(seen.append)
        policy = RegisterAccountPolicy(
            RegisterRepository(engine_pool, clock=clock), events=events, clock=clock
        )
        assert await policy.tick() == []  # initial load: nothing was allowed before
        # a future-dated suspension: nothing yet...
        start = NOW + timedelta(hours=2)
        await cli_repo.suspend("op", "KZ-1", start, "planned", months=1)
        assert await policy.tick() == []
        assert (await policy.authorize("acme", "w", "p")).allowed
        # ...until its start time
        clock.now = start
        [change] = await policy.tick()
        assert (change.account, change.state, change.effective_at) == ("acme", "suspended", start)
        assert "suspended until" in change.message and seen == [change]
        assert not (await policy.authorize("acme", "w", "p")).allowed
        assert await policy.tick() == []  # published once
        # expiry warnings: 60/30/7 days before KZ-1 ends (2027-01-01 UTC+5)
        await cli_repo.lift_suspension("op", "KZ-1", start + timedelta(hours=1))
        clock.now = datetime(2026, 12, 20, tzinfo=UTC)
        with caplog.at_level(logging.WARNING, logger="poolserver.register.policy"):
            await policy.tick()
            await policy.tick()
        assert policy.license_expiring() == {60: 2, 30: 2, 7: 0}  # acme and susp (KZ-1, KZ-3)
        warnings = [
            r for r in caplog.records if "KZ-1 of acme expires on 2027-01-01" in r.getMessage()
        ]
        assert len(warnings) == 1 and "within 30 days" in warnings[0].getMessage()
    finally:
        await engine_pool.dispose()
        await engine_cli.dispose()


def cli(url_config: str, *argv: str) -> int:
    return main(["--config", url_config, *argv])


@pytest.fixture
def config_file(db_url, tmp_path):
    path = tmp_path / "pool.toml"
    path.write_text(f'[storage]\nurl = "{db_url}"\n[register]\noperator = "test-operator"\n')
    return str(path)


async def test_suspended_miner_is_cut_off_live_and_earns_nothing_from_the_suspension(
    db_url, config_file, tmp_path
):
    engine = create_engine(db_url)
    repo = RegisterRepository(engine)
    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=1)
    await journal.start()
    try:
        assert (
            await asyncio.to_thread(
                cli, config_file, "miners", "add", "acme", "--name", "ACME LLP", "--iin-bin", IDS[0]
            )
            == 0
        )
        today = datetime.now(UTC).date() - timedelta(days=10)
        assert (
            await asyncio.to_thread(
                cli,
                config_file,
                "licenses",
                "add",
                "acme",
                "KZ-9",
                "--issued",
                str(today),
                "--subtype",
                "II",
            )
            == 0
        )
        events = RegisterEvents()
        policy = RegisterAccountPolicy(repo, events=events, poll_interval_s=0.1)
        await policy.start()
        server, port, _, _ = await start_server(policy=policy, sink=journal)
        connect_cutoff(events, server)
        client = await StratumClient.connect("127.0.0.1", port)
        try:
            await client.cgminer("acme.rig1")
            job = await client.wait_job()
            for _ in range(3):
                reply = await client.submit(job, client.grind(job))
                assert reply["result"] is True, reply
            before = datetime.now(UTC)
            await asyncio.sleep(0.01)
            # the operator suspends from the CLI (its own engine and connection), retroactively
            # from `before`: the shares after it, already journaled, must not earn
            assert (
                await asyncio.to_thread(
                    cli,
                    config_file,
                    "licenses",
                    "suspend",
                    "KZ-9",
                    "--months",
                    "1",
                    "--from",
                    before.isoformat(),
                    "--reason",
                    "unplanned inspection",
                )
                == 0
            )
            t0 = asyncio.get_running_loop().time()
            await client.wait_closed(timeout=5)
            assert asyncio.get_running_loop().time() - t0 < 3
            msg = next(n for n in client.notifications if n.get("method") == "client.show_message")
            assert "suspended" in msg["params"][0] and "unplanned inspection" in msg["params"][0]
            # reconnecting is refused with the reason
            again = await StratumClient.connect("127.0.0.1", port)
            with pytest.raises(StratumClientError, match="suspended until"):
                await again.cgminer("acme.rig1")
            await again.close()
        finally:
            await client.close()
            await server.shutdown()
            await policy.stop()
            await journal.close()
        async with engine.connect() as conn:  # the shares as the journal stored them
            shares = (await conn.execute(select(Share).order_by(Share.id))).all()
        assert len(shares) == 3 and all(s.created_at < before for s in shares)
        # PPLNS over the journal: shares before the suspension earn; the same shares replayed as
        # if they were after its start earn nothing
        suspensions = await load_suspensions(repo)
        records = [
            ShareRecord(i, s.account, s.worker, Fraction(1), s.created_at)
            for i, s in enumerate(shares)
        ] + [
            ShareRecord(10 + i, "acme", "rig1", Fraction(1), before + timedelta(seconds=i + 1))
            for i in range(3)
        ]
        block = BlockRecord(1, "00" * 32, 5_000_000_000, Fraction(5), before + timedelta(minutes=1))
        window = compute_window(block, records, suspensions=suspensions)
        counted = {int(i.ref): i.counted for i in window.items if i.kind == "share"}
        assert [counted[i] for i in range(3)] == [Fraction(1)] * 3
        assert [counted[10 + i] for i in range(3)] == [Fraction(0)] * 3
        assert window.suspended_weight == 3
    finally:
        await engine.dispose()
