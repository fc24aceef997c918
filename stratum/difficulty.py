"""Stratum difficulty (bdiff) and targets, with exact integer/rational math.

``target(D) = DIFF1 / D`` with ``DIFF1 = 0xFFFF * 2**208`` (the nbits ``1d00ffff`` target, cgminer's
"truediffone"). A hash ``H`` (little-endian integer of the sha256d digest) meets difficulty ``D``
when ``H <= target(D)``. Difficulties may be fractional (CPU test miners); they are converted with
``Fraction(str(D))`` so ``0.001`` means exactly 1/1000, never the nearest binary float.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

DIFF1 = 0xFFFF * 2**208
MAX_TARGET = (1 << 256) - 1


def _as_fraction(difficulty: float | int | Fraction) -> Fraction:
    if isinstance(difficulty, Fraction):
        return difficulty
    if isinstance(difficulty, bool) or not isinstance(difficulty, int | float):
        raise TypeError(f"difficulty must be a number, not {type(difficulty).__name__}")
    frac = Fraction(difficulty) if isinstance(difficulty, int) else Fraction(repr(difficulty))
    return frac


@lru_cache(maxsize=1024)
def _target_cached(difficulty: float | int) -> int:
    return target_from_difficulty_exact(_as_fraction(difficulty))


def target_from_difficulty_exact(difficulty: Fraction) -> int:
    if difficulty <= 0:
        raise ValueError(f"difficulty must be > 0, got {difficulty}")
    target = (DIFF1 * difficulty.denominator) // difficulty.numerator
    return min(target, MAX_TARGET)


def target_from_difficulty(difficulty: float | int | Fraction) -> int:
    """The largest hash value that meets ``difficulty`` (floor of DIFF1 / D, capped at 2^256-1)."""
    if isinstance(difficulty, Fraction):
        return target_from_difficulty_exact(difficulty)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int | float):
        raise TypeError(f"difficulty must be a number, not {type(difficulty).__name__}")
    if not difficulty > 0 or difficulty != difficulty or difficulty == float("inf"):
        raise ValueError(f"difficulty must be a finite number > 0, got {difficulty!r}")
    return _target_cached(difficulty)


def target_from_nbits(nbits: int) -> int:
    """Decode compact nBits. Raises ValueError for a negative or overflowing encoding."""
    if not 0 <= nbits <= 0xFFFFFFFF:
        raise ValueError(f"nbits must be a uint32, got {nbits}")
    exponent = nbits >> 24
    mantissa = nbits & 0x007FFFFF
    if nbits & 0x00800000 and mantissa:
        raise ValueError(f"nbits {nbits:08x} has the sign bit set")
    target = mantissa << (8 * (exponent - 3)) if exponent >= 3 else mantissa >> (8 * (3 - exponent))
    if target > MAX_TARGET:
        raise ValueError(f"nbits {nbits:08x} overflows 256 bits")
    return target


def hash_difficulty(hash_le: bytes) -> float:
    """The difficulty a hash achieved (DIFF1 / H), for logs and stats only; never for acceptance."""
    value = int.from_bytes(hash_le, "little")
    return float("inf") if value == 0 else DIFF1 / value


def meets(hash_le: bytes, difficulty: float | int | Fraction) -> bool:
    """Exact acceptance test ``H <= target(D)``."""
    return int.from_bytes(hash_le, "little") <= target_from_difficulty(difficulty)


def format_difficulty(difficulty: float) -> float | int:
    """The JSON number to send in ``mining.set_difficulty``: an int when integral."""
    if float(difficulty).is_integer():
        return int(difficulty)
    return difficulty
