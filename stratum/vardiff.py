"""Variable difficulty as pure functions.

The state is a small immutable tuple per connection: a time-decayed sum of accepted share
difficulty ("work"), which divided by the effective window gives the miner's rate in difficulty-1
units per second (proportional to its hashrate, and independent of the difficulty it mines at).
``next_difficulty`` proposes a new difficulty, or ``None`` to keep the current one.

Rules: retarget at most every ``retarget_interval_s``, or earlier (but not within
``MIN_RETARGET_GAP_S``) once ``retarget_shares`` shares arrived; only when the ideal difficulty
is outside the ``variance`` band around the current one; never down by more than ``max_step``;
up by at most ``max_step_up`` when the estimate rests on fewer than ``retarget_shares`` shares,
straight to the ideal when it rests on more (an ASIC started at difficulty 1 sends thousands of
shares a second: it must reach its difficulty in one step, not after a flood); always within
[floor, ceiling]. A miner that goes quiet is handled by the same function: its decayed rate
falls and the idle sweep lowers its difficulty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

MIN_RETARGET_GAP_S = 0.25


@dataclass(frozen=True, slots=True)
class VardiffConfig:
    target_interval_s: float = 10.0
    retarget_interval_s: float = 60.0
    retarget_shares: int = 30
    variance: float = 0.3
    max_step: float = 4.0
    max_step_up: float = 64.0
    decay_window_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("target_interval_s", "retarget_interval_s", "decay_window_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"vardiff.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.variance < 1:
            raise ValueError(f"vardiff.variance must be in [0, 1), got {self.variance}")
        if self.max_step <= 1 or self.max_step_up <= 1:
            raise ValueError("vardiff.max_step and vardiff.max_step_up must be > 1")
        if self.retarget_shares < 1:
            raise ValueError("vardiff.retarget_shares must be >= 1")


class VardiffState(NamedTuple):
    work: float  # decayed sum of accepted share difficulties, as of ``updated``
    started: float  # when the estimate began (connection start)
    updated: float
    last_retarget: float
    shares_since: int  # accepted shares since the last retarget


def new_state(now: float) -> VardiffState:
    return VardiffState(0.0, now, now, now, 0)


def observe(state: VardiffState, now: float, difficulty: float, cfg: VardiffConfig) -> VardiffState:
    """The state after one accepted share of ``difficulty`` at ``now``."""
    dt = now - state.updated
    work = state.work * math.exp(-dt / cfg.decay_window_s) if dt > 0 else state.work
    return VardiffState(
        work + difficulty,
        state.started,
        max(now, state.updated),
        state.last_retarget,
        state.shares_since + 1,
    )


def rate(state: VardiffState, now: float, cfg: VardiffConfig) -> float:
    """Estimated difficulty-1 shares per second (≈ hashrate / 2^32)."""
    tau = cfg.decay_window_s
    dt = max(0.0, now - state.updated)
    work = state.work * math.exp(-dt / tau)
    elapsed = max(now - state.started, 1e-3)
    window = tau * -math.expm1(-elapsed / tau)  # ∫ decay over the observed span
    return work / window


def clamp(difficulty: float, floor: float, ceiling: float) -> float:
    return min(max(difficulty, floor), ceiling)


def round_difficulty(difficulty: float, floor: float) -> float:
    """Integers at or above 1; 4 significant digits below 1 (fractional minimums, CPU miners)."""
    if difficulty >= 1:
        return float(max(1, round(difficulty)))
    digits = 3 - math.floor(math.log10(difficulty))
    return max(round(difficulty, digits), floor)


def due(state: VardiffState, now: float, cfg: VardiffConfig) -> bool:
    """Whether a retarget may be evaluated now (interval elapsed, or enough shares arrived)."""
    since = now - state.last_retarget
    return since >= cfg.retarget_interval_s or (
        state.shares_since >= cfg.retarget_shares and since >= MIN_RETARGET_GAP_S
    )


def next_difficulty(
    state: VardiffState,
    now: float,
    current: float,
    cfg: VardiffConfig,
    floor: float,
    ceiling: float,
) -> float | None:
    """A new difficulty for the connection, or None to keep ``current``."""
    if not due(state, now, cfg):
        return None
    ideal = rate(state, now, cfg) * cfg.target_interval_s
    if abs(ideal - current) <= cfg.variance * current:
        return None
    solid = state.shares_since >= cfg.retarget_shares
    up_limit = math.inf if solid else current * cfg.max_step_up
    proposed = clamp(ideal, current / cfg.max_step, up_limit)
    proposed = clamp(round_difficulty(max(proposed, 1e-12), floor), floor, ceiling)
    if proposed == current:
        return None
    return proposed


def retargeted(state: VardiffState, now: float) -> VardiffState:
    """The state after a retarget (or an evaluation that kept the difficulty)."""
    return state._replace(last_retarget=now, shares_since=0)
