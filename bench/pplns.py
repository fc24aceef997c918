"""PPLNS window speed: raw shares vs hourly rollups, against exact summation in the same run.

    .venv/bin/python bench/pplns.py [--shares 100000]

Prints shares/s of ``compute_window`` over N raw shares (window = all of them), of ``allocate``
(window + split + fees + inputs hash), and of the same window with every hour but the edge hour
handed in as per-miner rollups; the baseline is a bare ``sum()`` of the same Fractions, the floor
cost of exact arithmetic.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from payouts.allocation import allocate
from payouts.fees import FeePolicy, FeeSchedule
from payouts.pplns import compute_window
from payouts.types import BlockRecord, RollupRecord, ShareRecord

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shares", type=int, default=100_000)
    parser.add_argument("--miners", type=int, default=200)
    args = parser.parse_args()
    rnd = random.Random(1)
    diffs = [Fraction(rnd.choice([1024, 2048, 4096, 65536])) if rnd.random() < 0.9
             else Fraction(1, 1000) for _ in range(args.shares)]
    shares = [ShareRecord(i, f"m{rnd.randrange(args.miners):04d}", "w", diffs[i],
                          T0 + timedelta(milliseconds=100 * i)) for i in range(args.shares)]
    total = sum(diffs, Fraction(0))
    found = shares[-1].time + timedelta(seconds=1)
    # window = 90% of the work, so the edge falls in the oldest hour
    block = BlockRecord(1, "ab" * 32, 312_500_000, total * Fraction(9, 20), found)
    fees = FeePolicy(FeeSchedule.flat(100, T0 - timedelta(days=1)))

    # hourly per-miner sums for every hour but the oldest (where the edge falls)
    hour = timedelta(hours=1)
    oldest_hour_end = T0 + hour
    raw_edge = [s for s in shares if s.time < oldest_hour_end]
    sums: dict[tuple[datetime, str], tuple[Fraction, int]] = {}
    for s in shares:
        if s.time >= oldest_hour_end:
            start = T0 + hour * ((s.time - T0) // hour)
            d, c = sums.get((start, s.miner_id), (Fraction(0), 0))
            sums[(start, s.miner_id)] = (d + s.difficulty, c + 1)
    rollups = [RollupRecord(m, start, min(start + hour, found), d, c)
               for (start, m), (d, c) in sums.items()]

    raw_window = compute_window(block, shares)
    mixed_window = compute_window(block, raw_edge, rollups)
    assert raw_window.weights == mixed_window.weights, "rollups must give the same window"

    t_sum = timed(lambda: sum(diffs, Fraction(0)))
    t_raw = timed(lambda: compute_window(block, shares))
    t_alloc = timed(lambda: allocate(block, shares, fees))
    t_mixed = timed(lambda: compute_window(block, raw_edge, rollups))
    n = args.shares
    print(f"{n} shares, {args.miners} miners, {len(rollups)} rollups + {len(raw_edge)} raw "
          f"shares in the edge hour")
    print(f"baseline sum(Fraction)        {n / t_sum:12,.0f} shares/s")
    print(f"compute_window, raw shares    {n / t_raw:12,.0f} shares/s  "
          f"({t_raw / t_sum:.1f}x the baseline time)")
    print(f"allocate, raw shares          {n / t_alloc:12,.0f} shares/s  "
          f"({t_alloc / t_sum:.1f}x the baseline time)")
    print(f"compute_window, rollups+edge  {n / t_mixed:12,.0f} share-equivalents/s  "
          f"({t_raw / t_mixed:.1f}x faster than raw; same weights)")


if __name__ == "__main__":
    main()
