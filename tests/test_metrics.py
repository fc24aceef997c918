"""The /metrics endpoint parses as OpenMetrics (what a Prometheus server negotiates) and names
the hash core in use."""

from __future__ import annotations

import logging
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from poolserver.metrics import start_metrics
from stratum import hashcore
from stratum.stats import StratumStats


def test_metrics_are_valid_openmetrics_and_report_the_hash_core():
    stats = StratumStats()
    stats.share("accepted", 2.0)
    stats.connections_max = 5000
    stats.connections_refused["global_cap"] += 3
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
    (cap,) = families["qazpool_stratum_connections_max"].samples
    assert families["qazpool_stratum_connections_max"].type == "gauge" and cap.value == 5000
    refused = {s.labels["reason"]: s.value for s in families["qazpool_stratum_connections_refused"]
               .samples if s.name.endswith("_total")}  # fmt: skip
    assert refused == {"banned": 0, "per_ip_cap": 0, "global_cap": 3, "shutting_down": 0}
    accepted = [s for s in families["qazpool_stratum_shares"].samples if s.name.endswith("_total")]
    assert any(s.labels == {"result": "accepted"} and s.value == 1 for s in accepted)


async def test_running_pool_metrics_pass_promtool_and_cover_the_families(tmp_path, caplog):
    """The real /metrics of a pool that miners are mining on passes ``promtool check metrics``
    (Debian's prometheus package) and carries at least 40 qazpool_ families."""
    import asyncio
    import subprocess

    from tests.conftest import wait_until
    from tests.telemetry_support import http_get, mined_pool, tool

    promtool = tool("promtool")
    caplog.set_level(logging.INFO, logger="poolserver.report")
    async with mined_pool(tmp_path) as (app, _fake, _mining):
        # issue 13: the income reports' deadline is logged when the pool starts
        assert any(r.name == "poolserver.report" and "income reports for" in r.getMessage()
                   for r in caplog.records)
        await wait_until(lambda: app.stats.shares["accepted"] >= 4, timeout=60)
        rejected = lambda: sum(n for r, n in app.stats.shares.items() if r != "accepted")  # noqa: E731
        await wait_until(lambda: rejected() >= 1, timeout=60)
        await wait_until(lambda: app.db_poller.snapshot.polls >= 2, timeout=60)
        host, port = app.metrics_address
        body = await asyncio.to_thread(http_get, f"http://{host}:{port}/metrics")
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr
    ).decode()
    text = body.decode()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    assert all(name.startswith("qazpool_") for name in types), sorted(types)
    assert len(types) >= 40, sorted(types)
    for family, kind in {
        "qazpool_build_info": "gauge",
        "qazpool_stratum_accepted_work_hashes_total": "counter",
        "qazpool_node_rpc_duration_seconds": "histogram",
        "qazpool_event_loop_lag_seconds": "histogram",
        "qazpool_ledger_balance_satoshis": "gauge",
        "qazpool_process_cpu_seconds_total": "counter",
        # issue 11 wiring of issue 10's figures
        "qazpool_stratum_share_check_seconds": "histogram",
        "qazpool_block_submit_latency_seconds": "histogram",  # every regtest share is a block
        "qazpool_journal_flush_seconds": "histogram",
        "qazpool_journal_batch_size": "histogram",
        "qazpool_stratum_requests_total": "counter",
        "qazpool_stratum_connections_max": "gauge",
        "qazpool_stratum_connections_opened_total": "counter",
        "qazpool_stratum_connections_closed_total": "counter",
        "qazpool_stratum_block_solves_on_rejected_shares_total": "counter",
        "qazpool_stratum_storage_duplicates_total": "counter",
        "qazpool_templates_unchanged_total": "counter",
        "qazpool_block_record_errors_total": "counter",
        "qazpool_block_db_errors_total": "counter",
        "qazpool_block_db_behind": "gauge",
        "qazpool_blocks_recovered_from_chain_total": "counter",
        "qazpool_journal_duplicate_shares_total": "counter",
        "qazpool_journal_replay_conflicts_total": "counter",
        "qazpool_payment_fees_satoshis_total": "counter",
        "qazpool_payment_batches_planned_total": "counter",
        "qazpool_payout_outputs_held_total": "counter",
        "qazpool_payment_underfunded_refusals_total": "counter",
        "qazpool_reconcile_runs_total": "counter",
        "qazpool_reconcile_errors_total": "counter",
        # issue 13: the income reports' filing deadline
        "qazpool_report_deadline_timestamp_seconds": "gauge",
        "qazpool_report_deadline_remaining_seconds": "gauge",
    }.items():
        assert types.get(family) == kind, (family, types.get(family))
    assert 'qazpool_stratum_authorized_workers{firmware="cgminer"} 1.0' in text
    assert 'qazpool_stratum_authorized_workers{firmware="bitaxe"} 1.0' in text
    assert any(  # the miss-the-target share, under the validator's reject label
        line.startswith("qazpool_stratum_shares_total{") and "accepted" not in line
        for line in text.splitlines()
    )
    assert 'qazpool_node_rpc_up{node="' in text and "qazpool_pplns_window_fill_ratio 1.0" in text
    assert 'qazpool_stratum_requests_total{method="mining.subscribe",outcome="ok"} 2.0' in text
    assert 'qazpool_stratum_requests_total{method="mining.authorize",outcome="ok"} 2.0' in text
    assert 'qazpool_report_deadline_timestamp_seconds{generated="false",period="' in text
    from poolserver.fdlimit import automatic_cap, open_files_limit

    # [stratum].max_connections = 0: the automatic cap, open-files limit - 256
    assert f"qazpool_stratum_connections_max {float(automatic_cap(open_files_limit()))}" in text
    (host_port,) = app.stratum_addresses
    assert f'qazpool_stratum_connections_opened_total{{listener="{host_port[1]}"}} 2.0' in text


async def test_db_figures_can_be_turned_off_on_all_but_one_instance(tmp_path):
    """[metrics].db_poll_interval_s = 0: this instance reads nothing from the database for the
    metrics (several instances on one database: one exports the ledger and license gauges)."""
    import asyncio

    from poolserver.app import PoolApp
    from poolserver.config import config_from_dict
    from tests.fake_bitcoind import FakeBitcoind
    from tests.telemetry_support import http_get, pool_config

    fake = await FakeBitcoind().start()
    cfg = pool_config(tmp_path, fake)
    cfg["metrics"]["db_poll_interval_s"] = 0
    app = PoolApp(config_from_dict(cfg))
    await app.start()
    try:
        host, port = app.metrics_address
        text = (await asyncio.to_thread(http_get, f"http://{host}:{port}/metrics")).decode()
    finally:
        await app.stop()
        await fake.stop()
    assert app.db_poller is None
    assert "qazpool_ledger_balance_satoshis" not in text and "qazpool_db_poll" not in text
    assert "qazpool_stratum_connections_open" in text and "qazpool_event_loop_lag" in text
