"""The host clock against the chain: the bounds (pure), a skewed embedded chain refusing the
start of a real pool, a fake bitcoind whose tip is ahead warning and exporting the skew."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from poolserver.app import PoolApp
from poolserver.bitcoin.clock import (
    MAX_FUTURE_BLOCK_TIME_S,
    ClockSkewError,
    ClockWatch,
    read_clock,
    verdict,
)
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.config import ClockConfig, ConfigError, config_from_dict
from tests.fake_bitcoind import FakeBitcoind
from tests.telemetry_support import pool_config

HOUR = 3600
NOW = 1_795_000_000.0


def info(tip: float, chain: str = "regtest", median: float | None = None) -> dict[str, object]:
    return {"time": int(tip), "mediantime": int(tip - HOUR if median is None else median),
            "blocks": 100, "chain": chain}  # fmt: skip


def test_host_behind_the_tip_minus_two_hours_is_a_provable_negative_skew():
    # the tip is 2 h 5 min ahead of the host: real time >= tip - 2 h, host behind by >= 5 min
    r = read_clock(info(NOW + 2 * HOUR + 300), NOW, 7200)
    assert r.skew_s == -300
    assert verdict(r, ClockConfig()) == "warn"
    assert "BEHIND" in r.describe()
    gross = read_clock(info(NOW + 4 * HOUR), NOW, 7200)
    assert gross.skew_s == -2 * HOUR and verdict(gross, ClockConfig()) == "refuse"
    # a tip just under the 2-hour future limit proves nothing
    assert read_clock(info(NOW + MAX_FUTURE_BLOCK_TIME_S - 1), NOW, 7200).skew_s == 0


def test_mediantime_lagging_an_hour_is_normal_on_mainnet():
    # mainnet: mediantime ~1 h behind, tip 8 min old -> inside the bounds
    r = read_clock(info(NOW - 480, "main", median=NOW - HOUR), NOW, 7200)
    assert r.skew_s == 0 and verdict(r, ClockConfig()) == "ok"


def test_old_tip_means_host_ahead_on_live_networks_only():
    for chain in ("main", "test", "signet"):
        r = read_clock(info(NOW - 3 * HOUR, chain), NOW, 7200)
        assert r.skew_s == HOUR and verdict(r, ClockConfig()) == "warn", chain
        assert "AHEAD" in r.describe()
    # regtest (and the embedded chain at genesis, 2011) stand still: no upper bound
    assert read_clock(info(NOW - 400 * 86400), NOW, 7200).skew_s == 0
    assert read_clock(info(NOW - 3 * HOUR, "main"), NOW, 4 * HOUR).skew_s == 0


def test_refuse_zero_never_refuses_and_bad_thresholds_name_the_option():
    r = read_clock(info(NOW + 10 * HOUR), NOW, 7200)
    assert verdict(r, ClockConfig(refuse_s=0)) == "warn"
    with pytest.raises(ConfigError, match=r"clock\.refuse_s"):
        ClockWatch(None, ClockConfig(warn_s=100, refuse_s=50))
    with pytest.raises(ConfigError, match=r"clock\.check_interval_s"):
        ClockWatch(None, ClockConfig(check_interval_s=-1))
    with pytest.raises(ValueError, match="getblockchaininfo"):
        read_clock({"chain": "main"}, NOW, 7200)


def _embedded_config(tmp_path) -> dict[str, object]:
    return {
        "pool": {"data_dir": str(tmp_path / "data")},
        "chain": {"persist": False},
        "stratum": {"listeners": [{"host": "127.0.0.1", "port": 0}]},
        "metrics": {"enabled": False},
        "web": {"enabled": False},
    }


async def test_pool_refuses_to_start_when_the_chain_is_far_ahead_of_the_host(tmp_path, caplog):
    # A chain whose blocks were stamped 4 h ahead of this host (its clock, not ours).
    chain = EmbeddedChain("regtest", clock=lambda: time.time() + 4 * HOUR)
    for _ in range(3):
        chain.mine_block(b"\x51")
    app = PoolApp(config_from_dict(_embedded_config(tmp_path)), rpc=chain)
    with pytest.raises(ClockSkewError, match=r"BEHIND the chain's bounds.*refuse_s = 3600"):
        await app.start()
    await app.stop()
    assert app.server is None  # never listened


async def test_same_chain_within_refuse_s_starts_with_a_warning(tmp_path, caplog):
    chain = EmbeddedChain("regtest", clock=lambda: time.time() + 4 * HOUR)
    chain.mine_block(b"\x51")
    cfg = _embedded_config(tmp_path)
    cfg["clock"] = {"refuse_s": 3 * HOUR}
    app = PoolApp(config_from_dict(cfg), rpc=chain)
    try:
        await app.start()
        assert -2 * HOUR - 5 < app.clock_watch.skew_s < -2 * HOUR + 5
        assert any("BEHIND" in r.message and r.levelname == "WARNING" for r in caplog.records)
    finally:
        await app.stop()


async def test_fake_bitcoind_tip_ahead_is_exported_and_rechecked(tmp_path):
    fake = await FakeBitcoind().start()
    fake.chain_info = dict(fake.chain_info, time=int(time.time() + 2 * HOUR + 1800))
    cfg = pool_config(tmp_path, fake)
    cfg["clock"] = {"check_interval_s": 0.2}
    app = PoolApp(config_from_dict(cfg))
    try:
        await app.start()
        host, port = app.metrics_address  # type: ignore[misc]
        body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
        line = next(ln for ln in body.splitlines() if ln.startswith("qazpool_clock_skew_seconds"))
        assert -1805 < float(line.split()[-1]) < -1795
        # the node's tip moves back into range: the periodic check sees it
        fake.chain_info = dict(fake.chain_info, time=int(time.time()))
        checks = app.clock_watch.checks
        for _ in range(100):
            if app.clock_watch.checks > checks + 1:
                break
            await asyncio.sleep(0.05)
        assert app.clock_watch.skew_s == 0
    finally:
        await app.stop()
        await fake.stop()


async def test_node_gone_at_the_clock_check_is_a_warning_not_a_failed_start(caplog):
    from poolserver.bitcoin.node import NodeClient

    fake = await FakeBitcoind().start()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=2)
    try:
        await fake.down()
        watch = ClockWatch(client, ClockConfig())
        assert await watch.startup() is None
        assert watch.failures == 1 and watch.last is None
        assert any("not checked at startup" in r.message for r in caplog.records)
    finally:
        await client.close()
        await fake.stop()
