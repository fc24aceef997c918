"""Repeated refusals counted per (kind, IP, reason) and reported once per window.

A connection flood (the per-IP cap hit thousands of times a second) or a miner retrying a
backed-off login must not turn into as many security-log events: the first refusal opens a
window, later ones only count, and when the window has run ``window_s`` seconds ``due()`` returns
one summary (with the count) and forgets it. At most ``max_keys`` windows are open; refusals
beyond that go to one ``*`` window per (kind, reason), so memory stays bounded under a spoofed
flood of many addresses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TallySummary:
    kind: str
    peer: str
    reason: str
    count: int
    first_at: float  # Unix time of the first refusal of the window
    last_at: float


class RefusalTally:
    def __init__(self, window_s: float, max_keys: int = 10_000) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        # (kind, peer, reason) -> [count, monotonic start, first unix time, last unix time]
        self._open: dict[tuple[str, str, str], list[float]] = {}

    def count(self, kind: str, peer: str, reason: str, now: float | None = None) -> None:
        key = (kind, peer, reason)
        entry = self._open.get(key)
        wall = time.time()
        if entry is None:
            if len(self._open) >= self.max_keys:
                key = (kind, "*", reason)
                entry = self._open.get(key)
            if entry is None:
                mono = time.monotonic() if now is None else now
                self._open[key] = [1, mono, wall, wall]
                return
        entry[0] += 1
        entry[3] = wall

    def due(self, now: float | None = None, *, everything: bool = False) -> list[TallySummary]:
        """Windows that have run their course (all of them with ``everything``), forgotten."""
        if not self._open:
            return []
        now = time.monotonic() if now is None else now
        done = [k for k, v in self._open.items() if everything or now - v[1] >= self.window_s]
        out = []
        for key in done:
            count, _, first, last = self._open.pop(key)
            out.append(TallySummary(key[0], key[1], key[2], int(count), first, last))
        return out

    def __len__(self) -> int:
        return len(self._open)
