"""Per-client token buckets (pure, clock injected): ``take(key, now)`` answers None (allowed)
or the seconds to wait. Memory is bounded: full idle buckets are dropped, and past
``max_keys`` clients the oldest bucket is evicted."""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    def __init__(self, per_minute: int, burst: int, max_keys: int = 100_000) -> None:
        if per_minute < 1 or burst < 1:
            raise ValueError("web.rate_limit_per_minute and web.rate_limit_burst must be >= 1")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, t)

    def take(self, key: str, now: float) -> float | None:
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = None
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def retry_after(self, wait: float) -> int:
        """Retry-After in whole seconds (at least 1)."""
        return max(1, math.ceil(wait))

    def prune(self, now: float) -> None:
        """Drop the buckets that have refilled (they would start full anyway)."""
        full = [k for k, (tok, t) in self._buckets.items()
                if tok + (now - t) * self.rate >= self.burst]  # fmt: skip
        for k in full:
            del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)
