"""Prometheus endpoint for the Stratum counters (a seam for the telemetry issue).

``stratum`` keeps plain counters (``stratum.stats.StratumStats``); this module exposes them
through a custom collector on its own registry, served by prometheus-client's HTTP server
thread on ``[metrics]`` host:port (default 127.0.0.1:9108).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stratum import hashcore
from stratum.stats import StratumStats

log = logging.getLogger(__name__)


# Gauges read from the template feed's and the block submitter's stats: (name, help, attribute).
# Names and types are the exported ones; dashboards and tests read them.
FEED_GAUGES = (
    ("qazpool_node_up", "1 while the template source answers, 0 during an outage", "node_up"),
    ("qazpool_template_fetch_errors", "Failed template fetches since start", "fetch_errors"),
    ("qazpool_jobs_published", "Jobs built from templates since start", "jobs_published"),
)
BLOCK_GAUGES = (
    ("qazpool_blocks_accepted", "Found blocks at least one node accepted", "accepted"),
    ("qazpool_blocks_rejected", "Found blocks every answering node rejected", "rejected"),
)


class StratumCollector(Collector):
    def __init__(
        self, stats: StratumStats, feed_stats: Any = None, block_stats: Any = None
    ) -> None:
        self.stats = stats
        self.feed_stats = feed_stats  # poolserver.bitcoin.template_feed.FeedStats
        self.block_stats = block_stats  # poolserver.bitcoin.blocks.BlockStats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        info = GaugeMetricFamily(
            "qazpool_hashcore_info", "SHA-256 path of the share hash core", labels=["backend"]
        )
        info.add_metric([hashcore.backend()], 1)
        yield info
        yield _gauge(
            "qazpool_stratum_connections_open", "Open Stratum connections", s.connections_current
        )
        yield _gauge(
            "qazpool_stratum_authorized_connections",
            "Connections with an authorized worker",
            s.authorized_current,
        )
        yield _counter("qazpool_stratum_connections", "Accepted connections", s.connections_total)
        yield _labelled(
            "qazpool_stratum_connections_refused",
            "Refused connections",
            "reason",
            s.connections_refused,
        )
        yield _labelled(
            "qazpool_stratum_disconnects", "Closed connections", "reason", s.disconnects
        )
        yield _labelled(
            "qazpool_stratum_shares",
            "Submitted shares by result (accepted or the reject reason)",
            "result",
            s.shares,
        )
        yield _labelled(
            "qazpool_stratum_share_difficulty",
            "Summed difficulty of submitted shares by result",
            "result",
            s.share_difficulty,
        )
        yield _labelled(
            "qazpool_stratum_protocol_errors", "Protocol errors by kind", "kind", s.protocol_errors
        )
        yield _counter("qazpool_stratum_blocks_found", "Block candidates found", s.blocks_found)
        yield _counter(
            "qazpool_stratum_jobs_broadcast", "Jobs sent to all miners", s.jobs_broadcast
        )
        yield _gauge(
            "qazpool_stratum_last_broadcast_seconds",
            "Time to write the last job to every miner",
            s.last_broadcast_seconds,
        )
        yield _gauge("qazpool_stratum_bans", "Currently banned IPs", s.bans_current)
        yield _counter(
            "qazpool_stratum_share_sink_errors", "Shares the sink refused", s.sink_errors
        )
        for source, table in ((self.feed_stats, FEED_GAUGES), (self.block_stats, BLOCK_GAUGES)):
            if source is not None:
                for name, doc, attr in table:
                    yield _gauge(name, doc, float(getattr(source, attr)))


def _gauge(name: str, doc: str, value: float) -> Metric:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _counter(name: str, doc: str, value: float) -> Metric:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


def _labelled(name: str, doc: str, label: str, counts: dict[str, Any]) -> Metric:
    c = CounterMetricFamily(name, doc, labels=[label])
    for key, value in dict(counts).items():  # copy: the event loop thread mutates it
        c.add_metric([key], value)
    return c


def start_metrics(
    host: str,
    port: int,
    stats: StratumStats,
    *,
    feed_stats: Any = None,
    block_stats: Any = None,
) -> tuple[Any, CollectorRegistry]:
    """Serve /metrics on host:port in a daemon thread; returns (http server, registry).

    ``feed_stats`` / ``block_stats`` (the template feed's and the block submitter's counters)
    add the gauges in ``FEED_GAUGES`` / ``BLOCK_GAUGES``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StratumCollector(stats, feed_stats, block_stats))
    result = start_http_server(port, addr=host, registry=registry)
    server = result[0] if isinstance(result, tuple) else result
    bound = server.server_address if server is not None else (host, port)
    log.info("metrics on http://%s:%d/metrics", bound[0], bound[1])
    return server, registry
