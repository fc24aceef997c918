"""The firmware probe in the pool: who gets probed and when, the register verdicts, storage on
SQLite and PostgreSQL, the metrics, and the end-to-end path from a real Stratum client's
authorize to the stored result with its verdict."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from firmware_probe import ApiPorts, Outcome, ProbeLimits, ProbeResult
from firmware_probe.hints import Hints
from poolserver.app import PoolApp
from poolserver.cli import main
from poolserver.config import ConfigError, ProbeConfig, config_from_dict
from poolserver.metrics import PoolCollector, Sources
from poolserver.probe_service import ProbeService, RegisterView, allowed, parse_allow
from poolserver.probe_store import ProbeStore
from poolserver.register.csvrows import HardwareRow
from poolserver.register.repository import RegisterRepository
from stratum.interfaces import AuthorizedMiner
from stratum.stats import StratumStats
from tests.fake_asic import FakeAsic
from tests.pool_process import ROOT
from tests.stratum_client import StratumClient
from tests.test_register_rules import constructed_numbers

T = 10**12
FAST = {"connect_timeout_s": 0.5, "command_timeout_s": 1.0, "probe_timeout_s": 4.0}


def test_allow_list():
    nets = parse_allow(["10.20.0.0/16", "192.168.1.7", "fd00::/8"])
    assert allowed("10.20.3.4", nets) and allowed("192.168.1.7", nets)
    assert allowed("::ffff:10.20.0.9", nets) and allowed("fd00::1", nets)
    for outside in ("10.21.0.1", "192.168.1.8", "8.8.8.8", "::1", "not-an-ip", ""):
        assert not allowed(outside, nets)
    assert not allowed("10.20.3.4", ())
    with pytest.raises(ConfigError, match=r"probe\.allow\[1\]: not a CIDR"):
        parse_allow(["10.0.0.0/8", "10.0.0.0/33"])


class _NoStore:
    async def latest(self, account=None):
        return []

    async def prune(self, before):
        return 0

    async def save(self, *a, **k):
        return 1


class _NoRegister:
    async def by_serial(self):
        return {}


async def test_who_is_probed_and_when():
    """Outside the list: never; one probe per address at a time; again only after the TTL or
    when the user agent changes; a full queue drops instead of blocking."""
    gate = asyncio.Event()
    probed: list[tuple[str, str]] = []

    async def prober(host: str, ports: ApiPorts, limits: ProbeLimits, hints: Hints):
        probed.append((host, hints.user_agent))
        await gate.wait()
        return ProbeResult(host, Outcome.REFUSED, "test")

    now = [1000.0]
    cfg = ProbeConfig(enabled=True, allow=["127.0.0.0/8"], concurrency=2, ttl_s=100, queue_size=2)
    svc = ProbeService(cfg, _NoStore(), _NoRegister(), prober=prober, clock=lambda: now[0])
    await svc.start()

    def auth(ip: str, ua: str = "bmminer/2.0.0") -> None:
        svc.on_authorized(AuthorizedMiner(ip, ua, "acme", "w1", 0x1FFFE000, None))

    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not svc._pending:
                return

    try:
        auth("10.0.0.1")  # outside the allow-list
        auth("127.0.0.2")
        auth("127.0.0.2")  # same address, still in flight
        auth("127.0.0.3")
        await asyncio.sleep(0.05)  # both workers busy now
        assert sorted(h for h, _ in probed) == ["127.0.0.2", "127.0.0.3"]
        auth("127.0.0.4")
        auth("127.0.0.5")  # the queue (2) is full now
        auth("127.0.0.6")  # dropped, not waited for
        gate.set()
        await settle()
        assert sorted(h for h, _ in probed) == [f"127.0.0.{i}" for i in (2, 3, 4, 5)]
        assert svc.stats.skipped == {"outside_allow_list": 1, "in_flight": 1, "queue_full": 1}
        auth("127.0.0.2")  # within the TTL, same user agent
        await settle()
        assert svc.stats.skipped["fresh"] == 1
        auth("127.0.0.2", "bmminer/2.1.0")  # firmware changed: probed again at once
        await settle()
        now[0] += 101
        auth("127.0.0.3")  # TTL over
        await settle()
        assert probed[-2:] == [("127.0.0.2", "bmminer/2.1.0"), ("127.0.0.3", "bmminer/2.0.0")]
        assert svc.stats.outcomes["refused"] == 6
    finally:
        await svc.stop()


async def _register(engine) -> RegisterRepository:
    repo = RegisterRepository(engine, network="regtest")
    acme, other = constructed_numbers(2, seed=15)
    await repo.add_miner("test", "acme", "ACME LLP", acme)
    await repo.add_miner("test", "other", "Other LLP", other)

    def row(serial: str, model: str, rate: int, account: str) -> HardwareRow:
        return HardwareRow(
            serial, "Bitmain", model, rate, 3000, account, "Ekibastuz DC-1", "", None
        )

    # the Vnish machine is acme's, registered at 90 TH/s (it reports 105 TH/s)
    await repo.add_machine("test", row("JYZZD4ABCDEF1234", "S19j Pro", 90 * T, "acme"))
    # the LuxOS serial is registered to another miner, as another model
    await repo.add_machine("test", row("HTM3X1234567890A", "S19 Pro", 110 * T, "other"))
    return repo


async def test_register_verdicts_stored(engine):
    repo = await _register(engine)
    store = ProbeStore(engine)
    cfg = ProbeConfig(enabled=True, allow=["127.0.0.0/8"], **FAST)
    svc = ProbeService(cfg, store, RegisterView(repo))
    verdicts = {}
    for profile in ("vnish", "luxos", "whatsminer", "braiins_os"):
        async with FakeAsic(profile) as asic:
            svc.ports = asic.ports
            m = AuthorizedMiner("127.0.0.1", "", "acme", profile, 0, None)
            result, verdict = await svc.probe_and_store(m)
        verdicts[profile] = {d.finding.value for d in verdict.findings}
        assert result.outcome is Outcome.IDENTIFIED
    # 90 TH/s registered, 105.4 TH/s reported: over 110 %
    assert verdicts["vnish"] == {"over_capacity"}
    # the serial is another miner's and another model: mismatching serial
    assert {"other_owner", "model_mismatch"} <= verdicts["luxos"]
    assert "unregistered" in verdicts["whatsminer"]
    assert "unregistered" not in verdicts["braiins_os"]  # no serial exposed: unknown, not guessed
    rows = {p.worker: p for p in await store.latest()}
    assert set(rows) == {"vnish", "luxos", "whatsminer", "braiins_os"}
    assert rows["braiins_os"].verdict.endswith("serial unknown")
    assert rows["braiins_os"].machine_key == "ip:127.0.0.1"
    assert rows["whatsminer"].machine_key == "serial:HKY3ES12345678901"
    assert rows["whatsminer"].result.board_serials == ("MNBS0A1234", "MNBS0A1235", "MNBS0A1236")
    assert rows["whatsminer"].result.sources["serial"] == "btminer:get_miner_info.minersn"
    assert "btminer:get_version" in rows["whatsminer"].result.evidence
    assert rows["vnish"].findings[0]["finding"] == "over_capacity"
    # metrics: bounded label sets, counts from the latest result per machine
    text = _metrics(svc)
    assert 'qazpool_probe_results_total{outcome="identified"} 4.0' in text
    assert 'qazpool_probe_results_total{outcome="api_disabled"} 0.0' in text
    assert 'qazpool_probe_machines_flagged{finding="unregistered"} 1.0' in text
    assert 'qazpool_probe_machines_flagged{finding="other_owner"} 1.0' in text
    assert "qazpool_probe_machines_serial_unknown 1.0" in text


async def test_prune_keeps_each_machines_latest(engine):
    from datetime import UTC, datetime, timedelta

    from poolserver.probe_verdict import Verdict

    store = ProbeStore(engine)
    old = datetime.now(UTC) - timedelta(days=100)
    none = Verdict((), False, False)
    for host, at in (("10.0.0.1", old), ("10.0.0.1", old + timedelta(hours=1)),
                     ("10.0.0.2", old), ("10.0.0.2", datetime.now(UTC))):  # fmt: skip
        await store.save(ProbeResult(host, Outcome.TIMEOUT, "x"), none, at=at)
    assert await store.prune(datetime.now(UTC) - timedelta(days=90)) == 2
    latest = {p.result.host: p.probed_at for p in await store.latest()}
    assert latest["10.0.0.1"] == old + timedelta(hours=1)  # old, but its machine's latest
    assert latest["10.0.0.2"] > old


def _metrics(svc: ProbeService) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    reg.register(PoolCollector(Sources(StratumStats(), probe=svc.stats)))
    return generate_latest(reg).decode()


async def test_end_to_end_authorize_to_stored_verdict(db_url, tmp_path):
    """A real Stratum client (bmminer user agent) authorizes on the real pool from 127.0.0.1;
    the fake Antminer S19 at that address is probed in the background and the result lands in
    the database with its register verdict; shares are accepted meanwhile."""
    async with FakeAsic("antminer_s19") as asic:
        p = asic.ports
        cfg = config_from_dict({
            "pool": {"data_dir": str(tmp_path / "data")},
            "storage": {"url": db_url},
            "stratum": {"listeners": [{"host": "127.0.0.1", "port": 0,
                                       "start_difficulty": 1e-6, "min_difficulty": 1e-8}]},
            "metrics": {"enabled": False},
            "web": {"enabled": False},
            "register": {"enforce": "off"},
            "probe": {"enabled": True, "allow": ["127.0.0.0/8"], **FAST,
                      "cgminer_port": p.cgminer, "btminer_port": p.btminer,
                      "axeos_port": p.axeos, "vnish_port": p.vnish},
        })  # fmt: skip
        app = PoolApp(cfg)
        await app.start()
        try:
            host, port = app.stratum_addresses[0]
            client = await StratumClient.connect(host, port)
            try:
                await client.cgminer("acme.rig7")
                job = await client.wait_job()
                found = client.grind(job)
                reply = await client.submit(job, found)
                assert reply.get("result") is True, reply  # the share path is not held up
                async with app.probe_service.done:
                    await asyncio.wait_for(
                        app.probe_service.done.wait_for(lambda: app.probe_service.stats.stored),
                        10,
                    )
            finally:
                await client.close()
        finally:
            await app.stop()
    assert asic.requests[0] == "version"
    engine = create_async_engine(db_url)
    try:
        rows = await ProbeStore(engine).latest()
    finally:
        await engine.dispose()
    assert len(rows) == 1
    row = rows[0]
    assert (row.account, row.worker, row.user_agent) == ("acme", "rig7", "cgminer/4.11.1")
    assert row.result.outcome is Outcome.IDENTIFIED
    assert row.result.model == "Antminer S19 Pro" and row.result.serial is None
    # acme has no registered machine: 109.9 TH/s reported is over 110 % of 0
    assert row.verdict == "over_capacity, serial unknown"
    assert row.result.hints["version_mask"] == "1fffe000"


def test_probe_run_cli_as_a_new_user(tmp_path, capsys):
    """`poolserver probe run` in a subprocess against a fake Whatsminer in another process."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_asic", "whatsminer"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert fake.stdout is not None
        ports = json.loads(fake.stdout.readline())
        conf = tmp_path / "pool.toml"
        conf.write_text(
            f'[pool]\ndata_dir = "{tmp_path / "data"}"\n[probe]\nallow = ["127.0.0.0/8"]\n'
            f"cgminer_port = {ports['cgminer']}\nbtminer_port = {ports['btminer']}\n"
            f"axeos_port = {ports['axeos']}\nvnish_port = {ports['vnish']}\n"
        )

        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "poolserver", "--config", str(conf), *argv],
                cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        assert main(["--config", str(conf), "db", "upgrade"]) == 0  # in-process: setup only
        run = cli("probe", "run", "127.0.0.1", "--port", str(ports["cgminer"]), "--json")
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["outcome"] == "identified" and out["model"] == "Whatsminer M30S+"
        assert out["register"]["verdict"] == "unregistered"
        table = cli("probe", "run", "127.0.0.1")  # every API port of [probe]
        assert "HKY3ES12345678901   [btminer:get_miner_info.minersn]" in table.stdout
        capsys.readouterr()
        assert main(["--config", str(conf), "probe", "list"]) == 0
        listed = capsys.readouterr().out
        assert "Whatsminer M30S+" in listed and "unregistered" in listed
        assert main(["--config", str(conf), "probe", "list", "--json"]) == 0  # in-process
        (machine,) = json.loads(capsys.readouterr().out)
        assert machine["machine"] == "serial:HKY3ES12345678901" and "evidence" not in machine
        refused = cli("probe", "run", "10.1.2.3")
        assert refused.returncode == 1
        assert "REFUSED by the allow-list" in refused.stderr and "127.0.0.0/8" in refused.stderr
    finally:
        fake.kill()
        fake.wait()


async def test_stratum_hands_authorized_miners_to_the_callback():
    """The seam: a successful authorize calls on_authorized with what the session knows; a
    callback that raises never breaks the miner's authorize or its work."""
    from tests.stratum_support import start_server

    server, port, _, _ = await start_server()
    seen: list[AuthorizedMiner] = []
    server.on_authorized = seen.append
    try:
        client = await StratumClient.connect("127.0.0.1", port)
        await client.cgminer("acme.rig1")
        await client.wait_job()
        await client.close()
        bitaxe = await StratumClient.connect("127.0.0.1", port)
        await bitaxe.bitaxe("acme.axe")
        await bitaxe.close()

        def broken(m: AuthorizedMiner) -> None:
            raise RuntimeError("observer bug")

        server.on_authorized = broken
        third = await StratumClient.connect("127.0.0.1", port)
        await third.cgminer("acme.rig2")  # raises if the authorize failed
        await third.wait_job()
        await third.close()
    finally:
        await server.shutdown(reconnect=False)
    assert seen[0] == AuthorizedMiner("127.0.0.1", "cgminer/4.11.1", "acme", "rig1", 0x1FFFE000,
                                      None)  # fmt: skip
    assert (seen[1].user_agent, seen[1].worker) == ("bitaxe/BM1370/v2.4.2", "axe")
    assert seen[1].version_mask == 0x1FFFE000  # what the pool granted of ffffffff
