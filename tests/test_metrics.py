"""The /metrics endpoint parses as OpenMetrics (what a Prometheus server negotiates) and names
the hash core in use."""

from __future__ import annotations

import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from poolserver.metrics import start_metrics
from stratum import hashcore
from stratum.stats import StratumStats


def test_metrics_are_valid_openmetrics_and_report_the_hash_core():
    stats = StratumStats()
    stats.share("accepted", 2.0)
    server, _ = start_metrics("127.0.0.1", 0, stats)
    try:
        host, port = server.server_address[:2]
        req = urllib.request.Request(
            f"http://{host}:{port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name: f for f in text_string_to_metric_families(body)}  # raises if invalid
    (sample,) = families["qazpool_hashcore_info"].samples
    assert sample.labels == {"backend": hashcore.backend()} and sample.value == 1
    assert families["qazpool_stratum_connections_open"].type == "gauge"
    assert families["qazpool_stratum_connections"].type == "counter"
    accepted = [s for s in families["qazpool_stratum_shares"].samples if s.name.endswith("_total")]
    assert any(s.labels == {"result": "accepted"} and s.value == 1 for s in accepted)
