"""Plain counters the metrics layer reads (stratum must not import prometheus_client).

One ``StratumStats`` per server; the server mutates it on the event loop thread and the metrics
collector only reads it, so no locking is needed. Labels come from ``validate.Reject.label``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class StratumStats:
    connections_current: int = 0
    connections_total: int = 0
    connections_refused: Counter[str] = field(default_factory=Counter)  # reason -> count
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

    def share(self, label: str, difficulty: float) -> None:
        self.shares[label] += 1
        self.share_difficulty[label] += difficulty
