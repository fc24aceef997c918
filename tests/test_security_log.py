"""Issue 17: the security log's parts on both databases: the chain (one chain under concurrent
writers, tamper detection), the writer's bounded queue (drops counted in the metrics), the
refusal tally, config fingerprints that never hold a secret, the CLI's classification of every
subcommand and masking of secret-looking arguments."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from poolserver.cli import build_parser
from poolserver.config import config_from_dict
from poolserver.metrics import PoolCollector, Sources
from poolserver.security import cli_actions, config_state
from poolserver.security.log import NewEvent, SecurityLog
from poolserver.security.startup import record_config_start
from poolserver.security.writer import SecurityEventWriter
from stratum.stats import StratumStats
from stratum.tally import RefusalTally

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


async def test_concurrent_writers_make_one_chain_and_tampering_is_named(engine):
    seclog = SecurityLog(engine)

    async def writer(name: str) -> None:
        for i in range(10):
            await seclog.append(
                [NewEvent(T0 + timedelta(seconds=i), "cli.action", {"n": i}, who=name)]
            )

    await asyncio.gather(writer("a"), writer("b"), writer("c"))
    report = await seclog.verify()
    assert report.ok and report.checked == 30 and report.head.seq == 30
    head = (report.head.seq, report.head.hash)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE security_events SET who = 'mallory' WHERE seq = 7"))
    report = await seclog.verify()
    assert not report.ok and report.bad_seq == 7 and "edited" in report.problem
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE security_events SET who = :w WHERE seq = 7"),
            {"w": [e async for e in seclog.entries()][6].who},
        )
        await conn.execute(text("DELETE FROM security_events WHERE seq = 30"))
    assert not (await seclog.verify()).ok  # who restored from another writer's name: broken
    report = await seclog.verify(head)
    assert not report.ok and report.bad_seq is not None


async def test_between_selects_by_time_in_chain_order(engine):
    seclog = SecurityLog(engine)
    await seclog.append(
        [NewEvent(T0 + timedelta(hours=h), "ban", {"peer": f"10.0.0.{h}"}) for h in (5, 1, 3)]
    )
    got = await seclog.between(T0 + timedelta(hours=1), T0 + timedelta(hours=4))
    assert [json.loads(e.new)["peer"] for e in got] == ["10.0.0.1", "10.0.0.3"]
    assert [e.subject for e in got] == ["peer:10.0.0.1", "peer:10.0.0.3"]


async def test_writer_bounded_queue_drops_are_counted_and_exported(engine):
    seclog = SecurityLog(engine)
    writer = SecurityEventWriter(seclog, queue_size=5, flush_interval_s=60)
    for i in range(8):  # no task running: nothing drains, the queue fills
        writer.emit("connection.flood", peer="10.1.1.1", count=i, ratio=0.5)
    assert (writer.stats.emitted_total, writer.stats.dropped_total) == (5, 3)
    writer.start()
    await writer.stop()  # stop writes what is queued
    stored = [e async for e in seclog.entries()]
    assert [json.loads(e.new)["count"] for e in stored] == [0, 1, 2, 3, 4]
    assert json.loads(stored[0].new)["ratio"] == "0.5"  # floats hashed as text
    registry = CollectorRegistry()
    registry.register(PoolCollector(Sources(StratumStats(), security=writer.stats)))
    text_ = generate_latest(registry).decode()
    assert "qazpool_security_events_dropped_total 3.0" in text_
    assert "qazpool_security_events_written_total 5.0" in text_


async def test_writer_keeps_events_while_the_database_is_down(tmp_path):
    from poolserver.storage.engine import create_engine

    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'none.sqlite3'}")  # no schema
    writer = SecurityEventWriter(SecurityLog(eng), flush_interval_s=0.01, retry_s=0.01)
    writer.emit("ban", peer="10.2.2.2")
    assert await writer.flush_once() is False
    assert writer.stats.write_errors_total == 1 and writer.stats.queued == 1
    await eng.dispose()


def test_tally_one_summary_per_window_and_bounded_keys():
    tally = RefusalTally(window_s=60, max_keys=2)
    for _ in range(1000):
        tally.count("connection.flood", "10.0.0.1", "per_ip_cap", now=100.0)
    tally.count("connection.flood", "10.0.0.2", "per_ip_cap", now=100.0)
    for i in range(50):  # more addresses than max_keys: one "*" window
        tally.count("connection.flood", f"10.9.0.{i}", "per_ip_cap", now=101.0)
    assert len(tally) == 3
    assert tally.due(now=150.0) == []
    due = {(t.peer, t.count) for t in tally.due(now=161.0)}
    assert due == {("10.0.0.1", 1000), ("10.0.0.2", 1), ("*", 50)}
    assert len(tally) == 0


def test_config_fingerprints_name_changed_keys_never_secrets():
    base = {
        "node": {
            "nodes": [{"url": "http://127.0.0.1:8332", "user": "u", "password": "hunter2-secret"}]
        },
        "storage": {"url": "postgresql+asyncpg://pool:s3cr3t@db/pool"},
    }
    a = config_state.fingerprints(config_from_dict(base))
    changed = json.loads(json.dumps(base))
    changed["node"]["nodes"][0]["password"] = "other"
    changed["stratum"] = {"max_connections_per_ip": 7}
    b = config_state.fingerprints(config_from_dict(changed))
    diff = config_state.compare(b, a)
    assert diff.changed == ("node.nodes", "stratum.max_connections_per_ip")
    dumped = json.dumps([a, b])
    for secret in ("hunter2", "s3cr3t", "other"):
        assert secret not in dumped
    assert a["node.nodes"].startswith("s") and a["storage.url"].startswith("s")
    assert config_state.compare(a, a).unchanged


async def test_config_start_events_chain_their_fingerprints(engine):
    seclog = SecurityLog(engine)
    first = await record_config_start(seclog, config_from_dict({}), T0)
    assert first.previous_hash is None
    same = await record_config_start(seclog, config_from_dict({}), T0 + timedelta(minutes=1))
    assert same.unchanged and same.changed == ()
    moved = await record_config_start(
        seclog, config_from_dict({"payouts": {"max_daily_sats": 5}}), T0 + timedelta(minutes=2)
    )
    assert moved.changed == ("payouts.max_daily_sats",)
    assert (await seclog.verify()).checked == 3


def _leaf_actions() -> set[tuple[str, str]]:
    parser = build_parser()
    out: set[tuple[str, str]] = set()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in top.choices.items():
        subs = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.add((name, ""))
        for s in subs:
            out.update((name, action) for action in s.choices)
    return out


def test_every_subcommand_is_classified_mutating_or_read_only():
    leaves = _leaf_actions()
    assert not cli_actions.MUTATING & cli_actions.READ_ONLY
    unclassified = leaves - cli_actions.MUTATING - cli_actions.READ_ONLY
    assert not unclassified, f"classify in poolserver/security/cli_actions.py: {unclassified}"
    assert ("payouts", "approve") in leaves


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["report", "keygen", "--passphrase", "pw"], ["report", "keygen", "--passphrase", "***"]),
        (["x", "--db-password=pw", "--note", "n"], ["x", "--db-password=***", "--note", "n"]),
        (["miners", "add", "acme"], ["miners", "add", "acme"]),
    ],
)
def test_secret_arguments_are_masked(argv, shown):
    assert cli_actions.masked(argv) == shown
