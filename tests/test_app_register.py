"""The composed pool with license enforcement on: the register answers mining.authorize and a
suspension recorded with the operator CLI cuts the miner's live session off within seconds."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from poolserver.app import PoolApp, register_enforced
from poolserver.cli import main
from poolserver.config import config_from_dict
from tests.stratum_client import StratumClient, StratumClientError
from tests.test_register_rules import constructed_numbers

ADDR = "bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg"


def _config(tmp_path, enforce: str) -> dict:
    return {
        "pool": {"data_dir": str(tmp_path / "data")},
        "stratum": {
            "listeners": [
                {"host": "127.0.0.1", "port": 0, "start_difficulty": 1e-6, "min_difficulty": 1e-8}
            ]
        },
        "metrics": {"enabled": False},
        "web": {"port": 0},
        "register": {"enforce": enforce, "poll_interval_s": 0.2, "operator": "test"},
    }


def test_enforce_modes():
    assert register_enforced(config_from_dict({"register": {"enforce": "on"}}))
    assert not register_enforced(config_from_dict({"register": {"enforce": "off"}}))
    # auto: off on the embedded chain, on with a real node
    assert not register_enforced(config_from_dict({}))
    node = {"node": {"nodes": [{"url": "http://127.0.0.1:8332"}]}}
    assert register_enforced(config_from_dict(node))
    with pytest.raises(ValueError, match=r"register\.enforce: expected auto, on or off"):
        register_enforced(config_from_dict({"register": {"enforce": "yes"}}))


async def test_licensed_miner_mines_unknown_refused_suspension_cuts_off(tmp_path):
    cfg_dict = _config(tmp_path, "on")
    conf = tmp_path / "pool.toml"
    conf.write_text(f'[pool]\ndata_dir = "{tmp_path / "data"}"\n[register]\noperator = "test"\n')
    app = PoolApp(config_from_dict(cfg_dict))
    await app.start()  # creates the schema on first start
    try:
        host, port = app.stratum_addresses[0]

        def cli(*argv: str) -> int:
            return main(["--config", str(conf), *argv])

        bin_ = constructed_numbers(1, seed=7)[0]
        issued = (date.today() - timedelta(days=30)).isoformat()
        assert (
            await asyncio.to_thread(
                cli,
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
                cli, "licenses", "add", "acme", "KZ-77", "--issued", issued, "--subtype", "I"
            )
            == 0
        )

        stranger = await StratumClient.connect(host, port)
        with pytest.raises(StratumClientError, match="authorize failed"):
            await stranger.cpuminer("nobody.rig1")
        await stranger.close()

        async with asyncio.timeout(5):  # the pool sees the CLI's change within poll_interval_s
            while not (await app.policy.authorize("acme", "rig1", "127.0.0.1")).allowed:
                await asyncio.sleep(0.05)
        miner = await StratumClient.connect(host, port)
        await miner.cgminer("acme.rig1")
        job = await miner.wait_job()
        assert (await miner.submit(job, miner.grind(job)))["result"] is True

        assert (
            await asyncio.to_thread(
                cli, "licenses", "suspend", "KZ-77", "--months", "1", "--reason", "inspection"
            )
            == 0
        )
        await miner.wait_closed(timeout=5)
        shown = [n for n in miner.notifications if n.get("method") == "client.show_message"]
        assert shown and "suspended" in shown[-1]["params"][0].lower()

        again = await StratumClient.connect(host, port)
        with pytest.raises(StratumClientError, match="authorize failed"):
            await again.cgminer("acme.rig1")
        await again.close()
    finally:
        await app.stop()


def test_wrong_network_payout_address_stops_run_before_any_io(tmp_path, caplog):
    """`poolserver run` refuses a mainnet address on regtest, naming it and the reason, before
    it opens the database or the node."""
    conf = tmp_path / "pool.toml"
    conf.write_text(
        f'[pool]\ndata_dir = "{tmp_path / "data"}"\n'
        '[chain]\npayout_address = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"\n'
        "[metrics]\nenabled = false\n[web]\nport = 0\n[[stratum.listeners]]\nport = 0\n"
    )
    assert main(["--config", str(conf), "run"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        "startup failed: chain.payout_address: invalid address "
        "'1BoatSLRHtKNngkdXEeobR76b53LETtpyT': base58 version byte 0x00 is not valid on "
        "regtest (a main address)"
    ]
    assert not (tmp_path / "data" / "qazpool.sqlite3").exists()
