"""Plain counters the metrics layer reads (stratum must not import prometheus_client).

One ``StratumStats`` per server; the server mutates it on the event loop thread and the metrics
collector only reads it, so no locking is needed. Labels come from ``validate.Reject.label``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Share check latency (seconds) of one batch: hashcore.check_shares + judge. ~10 us per share,
# so a batch of one is ~20 us and a batch of a few thousand (a busy tick) tens of ms.
CHECK_BUCKETS = (
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip
# The request methods counted by name in ``StratumStats.requests``; anything else is "other".
REQUEST_METHODS = frozenset(
    {
        "mining.submit", "mining.configure", "mining.subscribe", "mining.authorize",
        "mining.suggest_difficulty", "mining.suggest_target", "mining.extranonce.subscribe",
        "mining.multi_version", "mining.capabilities", "mining.ping", "mining.get_transactions",
    }
)  # fmt: skip


@dataclass
class Histogram:
    """Cumulative-bucket histogram as plain data (one writer: the event loop thread); the
    metrics exporter reads ``cumulative()`` and ``total``."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; +Inf last
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # first bound >= value, else +Inf
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, cumulative count)], ending with +Inf, as prometheus_client wants them."""
        out, running = [], 0
        counts = list(self.counts)
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


@dataclass(slots=True)
class StratumStats:
    connections_current: int = 0
    connections_total: int = 0
    connections_refused: Counter[str] = field(default_factory=Counter)  # reason -> count
    connections_max: int = 0  # the global connection cap in force (0 = none)
    disconnects: Counter[str] = field(default_factory=Counter)  # reason -> count
    authorized_current: int = 0
    # result label ("accepted" or a Reject label) -> count / summed difficulty
    shares: Counter[str] = field(default_factory=Counter)
    share_difficulty: Counter[str] = field(default_factory=Counter)
    blocks_found: int = 0  # block candidates handed to the block sink (accepted or not)
    blocks_found_rejected: int = 0  # of those, shares refused after the hash (stale, ntime, ...)
    storage_duplicates: int = 0  # shares the sink already held (DuplicateShare): answered 22
    jobs_broadcast: int = 0
    last_broadcast_seconds: float = 0.0
    bans_current: int = 0
    bans_total: int = 0
    check_batches: int = 0
    checked_shares: int = 0
    sink_errors: int = 0
    protocol_errors: Counter[str] = field(default_factory=Counter)
    # one observation per hash batch: the batch's check_shares + judge time (seconds)
    check_seconds: Histogram = field(default_factory=lambda: Histogram(CHECK_BUCKETS))
    # (method from REQUEST_METHODS or "other", outcome) -> requests; mining.submit is counted
    # from ``shares`` at scrape time (accepted / rejected), not here
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    # by listener (the bound port, as a string): connections admitted, and closed by reason
    listener_opened: Counter[str] = field(default_factory=Counter)
    listener_closed: Counter[tuple[str, str]] = field(default_factory=Counter)

    def share(self, label: str, difficulty: float) -> None:
        self.shares[label] += 1
        self.share_difficulty[label] += difficulty
