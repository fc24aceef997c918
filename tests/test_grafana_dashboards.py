"""grafana/: the dashboards' structure (unique uids and panel ids, datasource references resolve
to the provisioned datasource, provider path matches the compose mount), and every panel query
run against a real Prometheus scraping a pool that test miners mine on: each must return data,
except the panels listed in EXPECTED_EMPTY (their family comes with another issue), which say so
in their description.

The dashboards are hand-maintained JSON (no generator dependency: what is committed is what
Grafana imports and what an operator exports back after editing in the UI); these tests are the
check."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.telemetry_support import (
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    mined_pool,
    pay,
    paying_pool,
    prometheus,
    tool,
)

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
PROVISIONING = GRAFANA_DIR / "provisioning"

# (dashboard uid, panel title) -> why it may be empty here. Each panel's description says it too.
EXPECTED_EMPTY = {
    ("qazpool-compliance", "Register mismatches (probe)"): "firmware probe issue",
    ("qazpool-compliance", "Probe results (probe)"): "firmware probe issue",
}


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in DASHBOARDS]


def _datasource_uids() -> set[str]:
    uids = set()
    for path in (PROVISIONING / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            uids.add(ds["uid"])
    return uids


def _refs(node: Any) -> list[dict[str, Any]]:
    """Every "datasource" object anywhere in a dashboard."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                found.append(value)
            else:
                found.extend(_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_refs(item))
    return found


def test_dashboards_structure_uids_and_datasources_resolve():
    assert {p.stem for p in DASHBOARDS} == {
        "qazpool-overview", "qazpool-compliance", "qazpool-payouts", "qazpool-server",
    }  # fmt: skip
    dashboards = _dashboards()
    uids = [d["uid"] for d in dashboards]
    assert len(set(uids)) == len(uids)
    assert len({d["title"] for d in dashboards}) == len(dashboards)
    ds_uids = _datasource_uids()
    assert ds_uids == {"qazpool-prometheus"}
    for d, path in zip(dashboards, DASHBOARDS, strict=True):
        assert path.stem == d["uid"], path
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), d["uid"]
        for ref in _refs(d):
            assert ref == {"type": "prometheus", "uid": "qazpool-prometheus"}, (d["uid"], ref)
        for p in d["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (d["uid"], p["title"])
            assert p["targets"], (d["uid"], p["title"])
            ref_ids = [t["refId"] for t in p["targets"]]
            assert len(set(ref_ids)) == len(ref_ids)
            if (d["uid"], p["title"]) in EXPECTED_EMPTY:
                assert "Empty until" in p["description"], (d["uid"], p["title"])
            for t in p["targets"]:
                # database gauges come from every instance: never summed across instances
                db = r"sum[^(]*\(\s*qazpool_(ledger|payments?|licenses|miners|pplns|found_blocks)"
                assert not re.search(db, t["expr"]), (d["uid"], p["title"], t["expr"])
    assert {k[0] for k in EXPECTED_EMPTY} <= set(uids)
    titles = {(d["uid"], p["title"]) for d in dashboards for p in d["panels"]}
    assert set(EXPECTED_EMPTY) <= titles, set(EXPECTED_EMPTY) - titles


def test_provisioning_matches_the_compose_example():
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "qazpool.yml").read_text())[
        "providers"
    ]
    compose = yaml.safe_load((GRAFANA_DIR / "docker-compose.example.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards:{provider['options']['path']}:ro" in mounts
    assert "./provisioning/datasources:/etc/grafana/provisioning/datasources:ro" in mounts
    (ds,) = yaml.safe_load((PROVISIONING / "datasources" / "qazpool.yml").read_text())[
        "datasources"
    ]
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]


def test_example_prometheus_config_passes_promtool(tmp_path: Path):
    text = (GRAFANA_DIR / "prometheus.example.yml").read_text()
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")))
    proc = subprocess.run(
        [tool("promtool"), "check", "config", str(cfg)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _instant(expr: str) -> str:
    """A panel query with Grafana's variables as the test's Prometheus (1 s scrapes) needs."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace('instance=~"$instance"', 'instance=~".*"')
    )


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


async def test_every_panel_query_returns_data_from_a_real_prometheus(tmp_path: Path):
    """Two pools scraped as two instances: test miners on the fake bitcoind (every share there
    solves a regtest block: submit latency per node), and one on the embedded chain whose payout
    service pays a block found over Stratum (payment fees, the periodic reconcile)."""
    async with (
        mined_pool(tmp_path) as (app, fake, _mining),
        paying_pool(tmp_path) as paying,
        prometheus(tmp_path, [app.metrics_address, paying.app.metrics_address]) as prom,
    ):
        # the families behind rate() panels: two scrapes of a moving pool
        await prom.wait_for('increase(qazpool_stratum_shares_total{result="accepted"}[1m]) > 0')
        await prom.wait_for("qazpool_ledger_balance_satoshis")
        await prom.wait_for("qazpool_pplns_window_fill_ratio > 0")
        fake.new_block()  # a new tip: the clean-job notify histogram gets an observation
        await prom.wait_for("increase(qazpool_stratum_new_block_notify_seconds_count[1m]) > 0")
        # the fee counter is scraped at 0 before the payment, so increase() sees the fee
        host, port = paying.app.metrics_address
        await prom.wait_for(f'qazpool_payment_fees_satoshis_total{{instance="{host}:{port}"}} == 0')
        await pay(paying)
        await prom.wait_for("increase(qazpool_payment_fees_satoshis_total[1h]) > 0")
        await prom.wait_for("qazpool_wallet_ledger_difference_satoshis == 0")
        await prom.wait_for("increase(qazpool_block_submit_latency_seconds_count[1m]) > 0")
        # pay()'s client closed its connection: its closed-connections series needs two
        # scrapes before rate() answers (failed about one full run in three without this wait)
        await prom.wait_for("rate(qazpool_stratum_connections_closed_total[1m])")
        missing, unexpected = [], []
        for d in _dashboards():
            for p in d["panels"]:
                key = (d["uid"], p["title"])
                for t in p["targets"]:
                    result = await prom.query(_instant(t["expr"]))
                    if key in EXPECTED_EMPTY:
                        if _has_data(result):  # the family landed: drop it from the list
                            unexpected.append((key, t["refId"]))
                    elif not _has_data(result):
                        missing.append((key, t["refId"], t["expr"], result))
        templ = await asyncio.to_thread(prom.api, "label/instance/values")
        assert templ, "the dashboards' $instance variable would have no values"
    assert not missing, missing
    assert not unexpected, unexpected
