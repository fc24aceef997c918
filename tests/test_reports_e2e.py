"""`poolserver report` on a database with real distributions: the payout service (run-once)
allocates, credits and pays a block the embedded chain mined, then the operator imports the
day's rate, creates a key, writes the miners' incomes XML, the commission report and a
statement, and verifies them (issue 13's "done when")."""

from __future__ import annotations

import json

from lxml import etree

from poolserver.cli import main
from reporting.formats import schema_text
from tests.report_support import paid_pool_ready_for_reports


def test_reports_on_real_distributions(db_url, tmp_path, capsys):
    base, period = paid_pool_ready_for_reports(db_url, tmp_path)
    capsys.readouterr()
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
