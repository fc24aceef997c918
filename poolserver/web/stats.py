"""Counters of the web server for the Prometheus exporter (``poolserver.metrics``): requests by
route template and status class (bounded labels: the routes are fixed; an unknown path is
``unmatched``), request duration by route, rate-limited requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from poolserver.telemetry import Histogram

WEB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class WebStats:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, "2xx")
    seconds: dict[str, Histogram] = field(default_factory=dict)  # route -> duration
    rate_limited: int = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, f"{status // 100}xx")] += 1
        hist = self.seconds.get(route)
        if hist is None:
            hist = self.seconds[route] = Histogram(WEB_BUCKETS)
        hist.observe(seconds)
