"""Issue 17: the security event log from a real pool, real Stratum clients and the real CLI.

One pool with license enforcement; every event kind is caused the way it happens in production
and found in the log: a refused authorize, the login back-off ban, an invalid-share ban, a
connection flood at the per-IP cap (one event with a count), operator CLI actions with the
operator's name, and the config change at the next start. Then a day is exported as CSV and
JSON with the CLI, the chain verifies, and an edited or deleted event is caught."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from datetime import date, timedelta

import pytest

from poolserver.app import PoolApp
from poolserver.cli import main
from poolserver.config import config_from_dict
from poolserver.register.timeutil import kz_date
from poolserver.security.log import SecurityLog
from tests.stratum_client import StratumClient, StratumClientError
from tests.test_register_rules import constructed_numbers

ADDR = "bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg"


def _config(tmp_path, per_ip: int) -> dict:
    return {
        "pool": {"data_dir": str(tmp_path / "data")},
        "stratum": {
            "listeners": [
                {"host": "127.0.0.1", "port": 0, "start_difficulty": 1e-6, "min_difficulty": 1e-8}
            ],
            "max_connections_per_ip": per_ip,
            "auth_failures_allowed": 1,
            "ban_min_submits": 3,
            "ban_reject_ratio": 0.5,
        },
        "metrics": {"enabled": False},
        "web": {"enabled": False},
        "payouts": {"enabled": False},
        "register": {"enforce": "on", "poll_interval_s": 0.2},
        "security": {"flush_interval_s": 0.05, "flood_report_s": 0.5},
    }


async def _events(app: PoolApp, kind: str, until=bool, timeout: float = 10.0) -> list[dict]:
    """The stored events of ``kind`` (fields parsed), waiting until ``until(events)`` holds
    (default: at least one is there)."""
    seclog = SecurityLog(app.storage.engine)
    async with asyncio.timeout(timeout):
        while True:
            found = [
                dict(json.loads(e.new), _who=e.who, _subject=e.subject)
                async for e in seclog.entries()
                if e.action == kind
            ]
            if until(found):
                return found
            await asyncio.sleep(0.05)


async def test_every_event_kind_from_a_real_pool_exported_and_verified(tmp_path, capsys):
    conf = tmp_path / "pool.toml"
    conf.write_text(f'[pool]\ndata_dir = "{tmp_path / "data"}"\n')

    def cli(*argv: str) -> int:
        return main(["--config", str(conf), *argv])

    async def acli(*argv: str) -> int:
        return await asyncio.to_thread(cli, *argv)

    app = PoolApp(config_from_dict(_config(tmp_path, per_ip=3)))
    await app.start()
    try:
        host, port = app.stratum_addresses[0]
        (start,) = await _events(app, "config.start")
        assert start["first_start"] is True and start["changed"] == []

        # refused authorize: account, worker, peer, reason
        stranger = await StratumClient.connect(host, port)
        with pytest.raises(StratumClientError, match="authorize failed"):
            await stranger.cpuminer("nobody.rig7")
        (refused,) = await _events(app, "auth.refused")
        assert (refused["account"], refused["worker"], refused["peer"]) == (
            "nobody",
            "rig7",
            "127.0.0.1",
        )
        assert refused["reason"]
        await stranger.close()
        # a second refusal for the account from that address: the login back-off (a ban)
        again = await StratumClient.connect(host, port)
        with pytest.raises(StratumClientError, match="authorize failed"):
            await again.cpuminer("nobody.rig7")
        await again.close()
        (backoff,) = await _events(app, "ban")
        assert backoff["scope"] == "names" and backoff["names"] == ["@nobody"]
        assert "refused logins" in backoff["reason"] and backoff["peer"] == "127.0.0.1"

        # operator CLI actions, with the operator's name
        bin_ = constructed_numbers(1, seed=17)[0]
        issued = (date.today() - timedelta(days=30)).isoformat()
        assert (
            await asyncio.to_thread(
                cli,
                "--operator",
                "aigerim",
                "miners",
                "add",
                "acme",
                "--name",
                "ACME LLP",
                "--iin-bin",
                bin_,
                "--payout-address",
                ADDR,
            )
            == 0
        )
        assert (
            await asyncio.to_thread(
                cli,
                "--operator",
                "aigerim",
                "licenses",
                "add",
                "acme",
                "KZ-17",
                "--issued",
                issued,
                "--subtype",
                "I",
            )
            == 0
        )
        assert await asyncio.to_thread(cli, "miners", "list") == 0  # read-only: not recorded
        actions = await _events(app, "cli.action", lambda a: len(a) >= 2)
        assert [(a["_who"], a["command"], a["exit_code"]) for a in actions] == [
            ("aigerim", "miners add", 0),
            ("aigerim", "licenses add", 0),
        ]
        assert actions[0]["argv"][-2:] == ["--payout-address", ADDR]

        # an invalid-share ban: one share, then the same share twice more (duplicates)
        async with asyncio.timeout(5):
            while not (await app.policy.authorize("acme", "rig1", "127.0.0.1")).allowed:
                await asyncio.sleep(0.05)
        miner = await StratumClient.connect(host, port)
        await miner.cgminer("acme.rig1")
        job = await miner.wait_job()
        found = miner.grind(job)
        assert (await miner.submit(job, found))["result"] is True
        for _ in range(2):
            assert (await miner.submit(job, found))["result"] is not True
        await miner.wait_closed(timeout=5)
        bans = await _events(app, "ban", lambda b: len(b) >= 2)
        share_ban = [b for b in bans if b["names"] == ["acme.rig1"]]
        assert len(share_ban) == 1, bans
        assert share_ban[0]["scope"] == "names" and share_ban[0]["reason"], share_ban

        # a connection flood at the per-IP cap (3): 3 held, 20 refused -> one event, count 20
        held = [await asyncio.open_connection(host, port) for _ in range(3)]
        refused_conns = [await asyncio.open_connection(host, port) for _ in range(20)]
        for r, _ in refused_conns:
            assert await asyncio.wait_for(r.read(), 5) == b""  # closed by the pool at once
        (flood,) = await _events(app, "connection.flood")
        assert (flood["peer"], flood["reason"], flood["count"]) == ("127.0.0.1", "per_ip_cap", 20)
        for _, w in held + refused_conns:
            w.close()
    finally:
        await app.stop()

    # the next start with a changed option: config.start names the key
    changed = _config(tmp_path, per_ip=4)
    app = PoolApp(config_from_dict(changed))
    await app.start()
    try:
        starts = await _events(app, "config.start")
        assert len(starts) == 2
        assert starts[1]["changed"] == ["stratum.max_connections_per_ip"]
        assert starts[1]["previous_hash"] == starts[0]["config_hash"] != starts[1]["config_hash"]
        all_events = [e async for e in SecurityLog(app.storage.engine).entries()]
    finally:
        await app.stop()

    # export the day's events with the CLI: CSV and JSON hold every event of the day
    day = kz_date(all_events[0].at)
    assert kz_date(all_events[-1].at) == day, "the test ran across midnight UTC+5; run again"
    out_csv, out_json = tmp_path / "day.csv", tmp_path / "day.json"
    d = day.isoformat()
    assert await acli("security-log", "export", "--from", d, "--to", d, "--out", str(out_csv)) == 0
    assert (
        await acli(
            "security-log",
            "export",
            "--from",
            d,
            "--to",
            d,
            "--format",
            "json",
            "--out",
            str(out_json),
        )
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert [int(r["seq"]) for r in rows] == [e.seq for e in all_events]
    assert [e["seq"] for e in doc["events"]] == [e.seq for e in all_events]
    kinds = {r["kind"] for r in rows}
    assert {"config.start", "auth.refused", "ban", "cli.action", "connection.flood"} <= kinds
    assert doc["count"] == len(rows) and doc["timezone"] == "UTC+5"
    assert rows[0]["time_kz"].endswith("+05:00") and rows[0]["time_utc"].endswith("Z")
    # the day before holds none of them
    prev = (day - timedelta(days=1)).isoformat()
    capsys.readouterr()
    assert await acli("security-log", "export", "--from", prev, "--to", prev) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        ",".join(
            ["seq", "time_kz", "time_utc", "kind", "who", "subject", "fields", "prev_hash", "hash"]
        )
    ]

    # the chain verifies; an edited event and deleted newest events are caught
    assert await acli("security-log", "verify") == 0
    assert "OK: " in capsys.readouterr().out
    assert await acli("security-log", "head") == 0
    anchor = capsys.readouterr().out.strip()
    db = sqlite3.connect(tmp_path / "data" / "qazpool.sqlite3")
    target = next(e for e in all_events if e.action == "auth.refused")
    with db:
        db.execute(
            "UPDATE security_events SET fields = replace(fields, 'nobody', 'someone') "
            "WHERE seq = ?",
            (target.seq,),
        )
    assert await acli("security-log", "verify") == 1
    assert f"entry {target.seq} was edited" in capsys.readouterr().out
    with db:
        db.execute(
            "UPDATE security_events SET fields = replace(fields, 'someone', 'nobody') "
            "WHERE seq = ?",
            (target.seq,),
        )
        db.execute("DELETE FROM security_events WHERE seq = (SELECT max(seq) FROM security_events)")
    assert await acli("security-log", "verify") == 0  # a cut tail alone looks whole...
    capsys.readouterr()
    assert await acli("security-log", "verify", "--anchor", anchor) == 1  # ...the anchor catches it
    assert "deleted" in capsys.readouterr().out
    db.close()
