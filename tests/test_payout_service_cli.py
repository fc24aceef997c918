"""`poolserver payouts run-once|balances|blocks|distributions` against a real database and the
embedded chain kept in the data dir (the same files a running pool uses)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.cli import main
from poolserver.storage.engine import create_engine
from tests.payout_support import (
    ADDR,
    durable_store,
    find_block,
    journal_shares,
    seed_register,
    share_plan,
    utcnow,
)


def test_payouts_commands(db_url, tmp_path, capsys):
    data = tmp_path / "data"
    cfg = tmp_path / "pool.toml"
    cfg.write_text(
        f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{db_url}"\n'
        '[chain]\nbits = "207fffff"\n'
        "[payouts]\nallocation_delay_s = 0.0\nmaturity_confirmations = 1\n"
    )

    async def setup() -> str:
        engine = create_engine(db_url)
        try:
            await seed_register(engine)
            await journal_shares(engine, tmp_path / "spool",
                                 share_plan(utcnow() - timedelta(minutes=10)))
            chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
            return await find_block(chain, durable_store(engine, data), "alice")
        finally:
            await engine.dispose()

    block_hash = asyncio.run(setup())
    assert main(["--config", str(cfg), "payouts", "run-once"]) == 0
    out = capsys.readouterr().out
    assert "allocated 1" in out and "3 credit" in out and "1 new payment batch" in out, out

    assert main(["--config", str(cfg), "payouts", "balances"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "account\tbalance_sats\tbalance_btc"
    balances = {ln.split("\t")[0]: int(ln.split("\t")[1]) for ln in lines[1:]}
    assert balances["alice"] == balances["bob"] == 0 and balances["@pool"] > 0

    assert main(["--config", str(cfg), "payouts", "blocks"]) == 0
    (header, row) = capsys.readouterr().out.splitlines()
    fields = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert fields["block"] == block_hash and fields["status"] == "accepted"
    assert fields["confirmations"] == "1" and len(fields["inputs_hash"]) == 64
    assert fields["found_at_utc+5"].endswith("UTC+5")

    assert main(["--config", str(cfg), "payouts", "distributions", "--status", "broadcast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [dict(zip(lines[0].split("\t"), ln.split("\t"), strict=True)) for ln in lines[1:]]
    assert {r["miner"] for r in rows} == {"alice", "bob"}
    for r in rows:
        assert r["kind"] == "distribution" and r["address"] == ADDR[r["miner"]]
        assert int(r["gross_sats"]) == int(r["fee_sats"]) + int(r["net_sats"])
        assert len(r["txid"]) == 64
    # a second run pays nobody twice
    assert main(["--config", str(cfg), "payouts", "run-once"]) == 0
    assert "0 new payment batch" in capsys.readouterr().out
