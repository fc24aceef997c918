"""Prometheus endpoint for the Stratum counters (a seam for the telemetry issue).

``stratum`` keeps plain counters (``stratum.stats.StratumStats``); this module exposes them
through a custom collector on its own registry, served by prometheus-client's HTTP server
thread on ``[metrics]`` host:port (default 127.0.0.1:9108).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stratum.stats import StratumStats

log = logging.getLogger(__name__)


class StratumCollector(Collector):
    def __init__(self, stats: StratumStats, extra: Callable[[], dict[str, float]] | None = None):
        self.stats = stats
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        g = GaugeMetricFamily("qazpool_stratum_connections", "Open Stratum connections")
        g.add_metric([], s.connections_current)
        yield g
        g = GaugeMetricFamily(
            "qazpool_stratum_authorized_connections", "Connections with an authorized worker"
        )
        g.add_metric([], s.authorized_current)
        yield g
        c = CounterMetricFamily("qazpool_stratum_connections", "Accepted connections")
        c.add_metric([], s.connections_total)
        yield c
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
        c = CounterMetricFamily("qazpool_stratum_blocks_found", "Block candidates found")
        c.add_metric([], s.blocks_found)
        yield c
        c = CounterMetricFamily("qazpool_stratum_jobs_broadcast", "Jobs sent to all miners")
        c.add_metric([], s.jobs_broadcast)
        yield c
        g = GaugeMetricFamily(
            "qazpool_stratum_last_broadcast_seconds", "Time to write the last job to every miner"
        )
        g.add_metric([], s.last_broadcast_seconds)
        yield g
        g = GaugeMetricFamily("qazpool_stratum_bans", "Currently banned IPs")
        g.add_metric([], s.bans_current)
        yield g
        c = CounterMetricFamily("qazpool_stratum_share_sink_errors", "Shares the sink refused")
        c.add_metric([], s.sink_errors)
        yield c
        if self.extra is not None:
            for name, value in self.extra().items():
                g = GaugeMetricFamily(name, name)
                g.add_metric([], value)
                yield g


def _labelled(name: str, doc: str, label: str, counts: dict[str, Any]) -> Metric:
    c = CounterMetricFamily(name, doc, labels=[label])
    for key, value in dict(counts).items():  # copy: the event loop thread mutates it
        c.add_metric([key], value)
    return c


def start_metrics(
    host: str,
    port: int,
    stats: StratumStats,
    extra: Callable[[], dict[str, float]] | None = None,
) -> tuple[Any, CollectorRegistry]:
    """Serve /metrics on host:port in a daemon thread; returns (http server, registry).

    ``extra`` returns more gauges by name (node up, found blocks) from other components."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StratumCollector(stats, extra))
    result = start_http_server(port, addr=host, registry=registry)
    server = result[0] if isinstance(result, tuple) else result
    bound = server.server_address if server is not None else (host, port)
    log.info("metrics on http://%s:%d/metrics", bound[0], bound[1])
    return server, registry
