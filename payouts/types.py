"""Plain data the money math works on: shares, rollups, blocks, suspensions.

Everything here is a frozen dataclass validated on construction, so a bad value fails where it
enters (with the field named) and never deep inside the arithmetic.

Exactness rules (see README.md):

* Satoshis are ``int``. Never ``float``; ``bool`` is refused too.
* Difficulty is a :class:`fractions.Fraction`. Stratum difficulty can be fractional (0.001 for CPU
  miners); :func:`exact_difficulty` converts an ``int``, a decimal string (``"0.001"`` is exactly
  1/1000), a ``Decimal``, or a ``float`` (exactly its binary value, ``Fraction(0.001)``). The pool
  should pass the value it *sent* in ``mining.set_difficulty``, as a string or Fraction, so the
  credited weight is the one the miner was asked for.
* Times are timezone-aware and normalised to UTC.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

# The account that receives pool fees and any window remainder booked to the pool. Miner ids may
# not start with "@", so it can never collide with a miner.
POOL_ACCOUNT = "@pool"

# Difficulty-1 target (bdiff), as Bitcoin Core's GetDifficulty uses it.
DIFF1_TARGET = 0xFFFF << 208

_BLOCK_HASH = re.compile(r"[0-9a-f]{64}")


def exact_difficulty(value: Fraction | int | str | Decimal | float, field: str) -> Fraction:
    """``value`` as an exact positive Fraction, or ValueError/TypeError naming ``field``."""
    if isinstance(value, bool):
        raise TypeError(f"{field}: expected a number, got bool")
    if isinstance(value, Fraction):
        result = value
    elif isinstance(value, int):
        result = Fraction(value)
    elif isinstance(value, (float, Decimal)):
        if not (math.isfinite(value) if isinstance(value, float) else value.is_finite()):
            raise ValueError(f"{field}: must be finite, got {value!r}")
        result = Fraction(value)
    elif isinstance(value, str):
        try:
            result = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{field}: {value!r} is not a decimal or n/d number") from None
    else:
        raise TypeError(f"{field}: expected Fraction, int, decimal str, Decimal or float, "
                        f"got {type(value).__name__}")
    if result <= 0:
        raise ValueError(f"{field}: must be > 0, got {value!r}")
    return result


def difficulty_from_bits(bits: int) -> Fraction:
    """Network difficulty of compact target ``bits``, exactly (DIFF1_TARGET / target)."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 0 < bits < 1 << 32:
        raise ValueError(f"bits: expected a 32-bit compact target, got {bits!r}")
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    if bits & 0x00800000 or mantissa == 0:
        raise ValueError(f"bits: {bits:#010x} encodes a negative or zero target")
    target = mantissa << (8 * (exponent - 3)) if exponent >= 3 else mantissa >> (8 * (3 - exponent))
    if target == 0:
        raise ValueError(f"bits: {bits:#010x} encodes a zero target")
    return Fraction(DIFF1_TARGET, target)


def require_sats(value: object, field: str, *, positive: bool = False) -> int:
    """``value`` if it is a non-negative (or positive) int amount of satoshis."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{field}: satoshis must be int, got {type(value).__name__}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{field}: must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


def require_utc(value: object, field: str) -> datetime:
    """``value`` as an aware UTC datetime; naive datetimes are refused (their zone is unknown)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field}: expected datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: naive datetime {value.isoformat()}; give a timezone (UTC)")
    return value.astimezone(UTC)


def require_miner_id(value: object, field: str) -> str:
    """A miner id: non-empty printable text not starting with '@' (reserved for pool accounts)."""
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected str, got {type(value).__name__}")
    if not value or not value.isprintable() or value != value.strip():
        raise ValueError(f"{field}: {value!r} must be non-empty printable text without "
                         "surrounding spaces")
    if value.startswith("@"):
        raise ValueError(f"{field}: {value!r} starts with '@', reserved for pool accounts")
    return value


def require_int(value: object, field: str, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{field}: expected int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field}: must be <= {maximum}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One accepted share as the journal stored it; the unit of PPLNS weight.

    ``seq`` is the journal's sequence number (unique); shares are ordered by ``(time, seq)``.
    ``account`` is the worker name the miner logged in with (kept for the audit trail).
    """

    seq: int
    miner_id: str
    account: str
    difficulty: Fraction
    time: datetime

    def __post_init__(self) -> None:
        require_int(self.seq, "share.seq", minimum=0)
        require_miner_id(self.miner_id, "share.miner_id")
        if not isinstance(self.account, str):
            raise TypeError(f"share.account: expected str, got {type(self.account).__name__}")
        object.__setattr__(self, "difficulty",
                           exact_difficulty(self.difficulty, f"share[{self.seq}].difficulty"))
        object.__setattr__(self, "time", require_utc(self.time, f"share[{self.seq}].time"))


@dataclass(frozen=True, slots=True)
class RollupRecord:
    """The summed difficulty of one miner's shares in ``[period_start, period_end)``.

    Raw shares older than the retention are replaced by these; the sum is exact (a Fraction), so
    PPLNS over rollups gives the same weight as over the shares they replaced whenever the window
    edge does not fall inside the period (and a defined, proportional one when it does).
    """

    miner_id: str
    period_start: datetime
    period_end: datetime
    difficulty_sum: Fraction
    share_count: int

    def __post_init__(self) -> None:
        require_miner_id(self.miner_id, "rollup.miner_id")
        start = require_utc(self.period_start, "rollup.period_start")
        end = require_utc(self.period_end, "rollup.period_end")
        if not start < end:
            raise ValueError(f"rollup.period_end: {end.isoformat()} must be after "
                             f"period_start {start.isoformat()}")
        object.__setattr__(self, "period_start", start)
        object.__setattr__(self, "period_end", end)
        object.__setattr__(self, "difficulty_sum",
                           exact_difficulty(self.difficulty_sum, "rollup.difficulty_sum"))
        require_int(self.share_count, "rollup.share_count", minimum=1)


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A block the pool found: what PPLNS needs to allocate its reward.

    ``reward_sats`` is the coinbase value paid to the pool (subsidy + transaction fees).
    ``network_difficulty`` is the difficulty of the block's own target (see
    :func:`difficulty_from_bits`). ``finder`` is the miner whose share solved it, if known.
    """

    height: int
    block_hash: str
    reward_sats: int
    network_difficulty: Fraction
    found_at: datetime
    finder: str | None = None

    def __post_init__(self) -> None:
        require_int(self.height, "block.height", minimum=0)
        if not isinstance(self.block_hash, str) or not _BLOCK_HASH.fullmatch(self.block_hash):
            raise ValueError(f"block.block_hash: expected 64 lowercase hex digits, "
                             f"got {self.block_hash!r}")
        require_sats(self.reward_sats, "block.reward_sats", positive=True)
        object.__setattr__(self, "network_difficulty",
                           exact_difficulty(self.network_difficulty, "block.network_difficulty"))
        object.__setattr__(self, "found_at", require_utc(self.found_at, "block.found_at"))
        if self.finder is not None:
            require_miner_id(self.finder, "block.finder")


@dataclass(frozen=True, slots=True)
class SuspensionInterval:
    """A license suspension: the miner's shares in ``[start, end)`` earn nothing.

    ``end`` None means still suspended. Supplied by the register (Art. 9 of the law: mining is
    prohibited during a suspension).
    """

    miner_id: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        require_miner_id(self.miner_id, "suspension.miner_id")
        start = require_utc(self.start, "suspension.start")
        object.__setattr__(self, "start", start)
        if self.end is not None:
            end = require_utc(self.end, "suspension.end")
            if not start < end:
                raise ValueError(f"suspension.end: {end.isoformat()} must be after start "
                                 f"{start.isoformat()}")
            object.__setattr__(self, "end", end)

    def contains(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


class Suspensions:
    """The suspension intervals of all miners, queried by (miner, time) or (miner, period)."""

    __slots__ = ("_by_miner",)

    def __init__(self, intervals: tuple[SuspensionInterval, ...] | list[SuspensionInterval] = ()
                 ) -> None:
        by_miner: dict[str, list[SuspensionInterval]] = {}
        for interval in intervals:
            if not isinstance(interval, SuspensionInterval):
                raise TypeError(f"suspensions: expected SuspensionInterval, "
                                f"got {type(interval).__name__}")
            by_miner.setdefault(interval.miner_id, []).append(interval)
        self._by_miner = {m: tuple(sorted(v, key=lambda i: i.start)) for m, v in by_miner.items()}

    def is_suspended(self, miner_id: str, at: datetime) -> bool:
        return any(i.contains(at) for i in self._by_miner.get(miner_id, ()))

    def coverage(self, miner_id: str, start: datetime, end: datetime) -> str:
        """How suspensions cover ``[start, end)``: ``"none"``, ``"full"`` or ``"partial"``."""
        cursor = start
        touched = False
        for interval in self._by_miner.get(miner_id, ()):
            i_end = interval.end
            if (i_end is not None and i_end <= start) or interval.start >= end:
                continue
            touched = True
            if interval.start > cursor:
                return "partial"
            if i_end is None or i_end >= end:
                return "full"
            cursor = max(cursor, i_end)
        return "partial" if touched else "none"
