"""A real Prometheus (Debian's package, loopback temp port and temp dir) scrapes a real running
pool that test miners mine on, evaluates prometheus/alerts.yml, and a real Alertmanager
(prometheus-alertmanager, loopback, the example config's routes) delivers the firing alert to a
webhook receiver run here."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.conftest import wait_until
from tests.telemetry_support import (
    PROMETHEUS_DIR,
    Prometheus,
    Webhook,
    alertmanager,
    mined_pool,
    prometheus,
    webhook,
)


def node_down(hook: Webhook) -> list[dict[str, Any]]:
    """Firing QazpoolNodeDown alerts of a node (the per-node RPC series; the template source's
    own qazpool_node_up series fires the same alert without a node label)."""
    return [
        a
        for a in hook.alerts()
        if a["labels"]["alertname"] == "QazpoolNodeDown" and "node" in a["labels"]
    ]


async def firing(prom: Prometheus) -> set[str]:
    data = await asyncio.to_thread(prom.api, "alerts")
    return {a["labels"]["alertname"] for a in data["alerts"] if a["state"] == "firing"}


async def test_node_down_alert_reaches_the_webhook_through_alertmanager(tmp_path):
    # The shipped rules, with their `for:` holds set to 0s so the test does not wait minutes.
    shipped = (PROMETHEUS_DIR / "alerts.yml").read_text()
    rules = tmp_path / "alerts.yml"
    rules.write_text(re.sub(r"(?m)^(\s+for:) .*$", r"\1 0s", shipped))
    async with (
        webhook() as hook,
        alertmanager(tmp_path, hook.url) as am,
        mined_pool(tmp_path) as (app, fake, mining),
        prometheus(tmp_path, app.metrics_address, rule_files=[rules], alertmanager=am) as prom,
    ):
        await prom.wait_for("qazpool_node_rpc_up == 1")
        await prom.wait_for('qazpool_stratum_shares_total{result="accepted"} > 0')
        assert not node_down(hook), hook.payloads  # a healthy node pages nobody
        # Regtest shares are blocks: stop mining first, so no found block waits on the dead
        # node for the submitter's retry window when the pool stops.
        await mining.stop()
        await fake.down()  # bitcoind dies
        try:
            await wait_until(lambda: node_down(hook), timeout=90)
        finally:
            await fake.up()
        alert = node_down(hook)[0]  # Alertmanager may resend the group; the alert is the same
        node = app.rpc.members[0].name
        assert alert["labels"]["severity"] == "page" and alert["labels"]["node"] == node
        assert node in alert["annotations"]["summary"]
        assert "QazpoolNodeDown" in await firing(prom)
