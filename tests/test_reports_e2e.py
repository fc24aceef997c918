"""`poolserver report` on a database with real distributions: the payout service (run-once)
allocates, credits and pays a block the embedded chain mined, then the operator imports the
day's rate, creates a key, writes the miners' incomes XML, the commission report and a
statement, and verifies them (issue 13's "done when")."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from lxml import etree

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.cli import main
from poolserver.storage.engine import create_engine
from reporting.formats import schema_text
from reporting.model import KZ
from tests.payout_support import (
    OTHER_MINER,
    durable_store,
    find_block,
    journal_shares,
    seed_register,
    share_plan,
    utcnow,
)


def test_reports_on_real_distributions(db_url, tmp_path, capsys):
    data = tmp_path / "data"
    cfg = tmp_path / "pool.toml"
    cfg.write_text(
        f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{db_url}"\n'
        '[chain]\nbits = "207fffff"\n'
        "[payouts]\nallocation_delay_s = 0.0\nmaturity_confirmations = 1\n"
    )
    base = ["--config", str(cfg)]

    async def setup() -> None:
        engine = create_engine(db_url)
        try:
            await seed_register(engine)
            await journal_shares(engine, tmp_path / "spool",
                                 share_plan(utcnow() - timedelta(minutes=10)))
            chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
            await find_block(chain, durable_store(engine, data), "alice")
            chain.generatetoaddress(100, OTHER_MINER)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    assert main([*base, "payouts", "run-once"]) == 0
    capsys.readouterr()
    today = datetime.now(UTC).astimezone(KZ).date()
    days = [today - timedelta(days=1), today, today + timedelta(days=1)]  # midnight-proof
    rates = tmp_path / "rates.csv"
    rates.write_text("date,rate,source\n" + "".join(f"{d},45000000.00,KGD\n" for d in days))
    assert main([*base, "rates", "import", str(rates)]) == 0
    assert main([*base, "report", "keygen"]) == 0
    period = ["--from", str(days[0]), "--to", str(days[2])]
    out = tmp_path / "miners"
    assert main([*base, "report", "miners", *period, "--format", "xml",
                 "--out", str(out)]) == 0
    assert main([*base, "report", "verify", str(out)]) == 0
    (xml,) = out.glob("*.xml")
    tree = etree.parse(str(xml))
    etree.XMLSchema(etree.fromstring(schema_text("miners-income"))).assertValid(tree)
    rows = {r.findtext("legal_name"): r for r in tree.iter("row")}
    assert set(rows) == {"Alice LLP", "Bob LLP"}  # carol has no license: earned nothing
    for r in rows.values():
        assert r.findtext("kind") == "distribution" and len(r.findtext("payment_txid")) == 64
    totals = {i.get("key"): i.text for i in tree.find("totals/total[@name='report']")}
    assert int(totals["matured_rewards_sats"]) == (int(totals["miners_net_sats"])
                                                   + int(totals["pool_commission_sats"])
                                                   + int(totals["pool_remainder_sats"]))
    com = tmp_path / "commission"
    assert main([*base, "report", "commission", *period, "--format", "json",
                 "--out", str(com)]) == 0
    (doc,) = [json.loads(p.read_text()) for p in com.glob("pool-commission_*.json")]
    assert int(doc["rows"][0]["network_fees_sats"]) > 0  # the payout's fee, paid by the pool
    st = tmp_path / "statement"
    assert main([*base, "report", "statement", "--miner", "bob", *period, "--out", str(st)]) == 0
    assert main([*base, "report", "verify", str(st)]) == 0
    assert main([*base, "report", "verify", str(com)]) == 0
