"""Split an integer amount of satoshis by rational weights, exactly.

Rule (largest remainder, a.k.a. Hamilton's method):

1. each participant's exact quota is ``amount * weight / total_weight`` (a Fraction);
2. each gets the floor of its quota;
3. the satoshis left over (fewer than the number of participants) go one each to the
   participants with the largest fractional part of their quota; ties are broken by participant
   id in ascending code-point order.

The parts always sum to ``amount``; no participant gets less than the floor of its quota nor more
than the floor plus one satoshi; a zero weight gets exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from payouts.types import require_sats


def split_exact(amount: int, weights: Iterable[tuple[str, Fraction | int]]) -> dict[str, int]:
    """``amount`` split over ``weights`` (id, weight >= 0); returns {id: sats} in id order."""
    require_sats(amount, "amount")
    pairs: list[tuple[str, Fraction]] = []
    seen: set[str] = set()
    for pid, weight in weights:
        if not isinstance(pid, str):
            raise TypeError(f"split: participant id must be str, got {type(pid).__name__}")
        if pid in seen:
            raise ValueError(f"split: participant {pid!r} appears twice")
        seen.add(pid)
        if not isinstance(weight, (Fraction, int)) or isinstance(weight, bool):
            raise TypeError(f"split: weight of {pid!r} must be Fraction or int, "
                            f"got {type(weight).__name__}")
        if weight < 0:
            raise ValueError(f"split: weight of {pid!r} must be >= 0, got {weight}")
        pairs.append((pid, Fraction(weight)))
    total = sum((w for _, w in pairs), Fraction(0))
    if total == 0:
        if amount == 0:
            return {pid: 0 for pid, _ in sorted(pairs)}
        raise ValueError(f"split: cannot split {amount} sats over a total weight of zero")

    parts: dict[str, int] = {}
    remainders: list[tuple[Fraction, str]] = []
    for pid, weight in pairs:
        quota = amount * weight / total
        floor = quota.numerator // quota.denominator
        parts[pid] = floor
        remainders.append((quota - floor, pid))
    left = amount - sum(parts.values())
    # Largest fractional part first, then ascending id.
    remainders.sort(key=lambda r: (-r[0], r[1]))
    for _, pid in remainders[:left]:
        parts[pid] += 1
    return dict(sorted(parts.items()))
