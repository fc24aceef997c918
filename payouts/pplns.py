"""The PPLNS window: which work a block pays, and with what weight.

* Window size ``N = k * D`` where ``D`` is the network difficulty of the block (k default 2).
* Walk the pool's work newest → oldest, starting at the block's ``found_at`` (shares after it
  belong to the next block): raw shares one by one, ordered by ``(time, seq)``, and rollups
  (per-miner sums of a period holding no raw share) one period at a time, in time order.
* Each item counts with its full difficulty until the window is full; the item that crosses the
  edge counts only for the part that fits (``remaining / weight`` of it), so the counted weight
  is exactly ``N``. For a rollup period that crosses the edge, every miner in that period is
  scaled by the same fraction (the order of shares inside a rolled-up period is gone; scaling is
  the order-free rule).
* Shares of a miner whose license was suspended at the share's time are skipped: they earn
  nothing and take no room in the window (the window reaches further back over eligible work).
  A rollup fully inside a suspension is skipped likewise. A rollup that straddles a suspension
  boundary is skipped too: the order of its shares is gone, so which of them predate the
  suspension cannot be known, and the law allows no credit for mining during a suspension
  (Art. 9). Only an hour rolled up before a back-dated suspension can straddle one; the window
  item records it with ``suspended=True``.
* Underfilled window (less than ``N`` eligible work exists): ``normalise`` (default) shares the
  whole distributable amount among the work present; ``pool_remainder`` pays each miner
  ``weight / N`` and books the unfilled part to the pool. With no eligible work at all the whole
  amount goes to the pool. The result records which of these applied.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from payouts.types import (
    BlockRecord,
    RollupRecord,
    ShareRecord,
    Suspensions,
    exact_difficulty,
)


class UnderfillPolicy(enum.StrEnum):
    NORMALISE = "normalise"
    POOL_REMAINDER = "pool_remainder"


class WindowOutcome(enum.StrEnum):
    """How the window was settled; recorded in every allocation."""

    FULL = "full"  # eligible work >= N; exactly N counted
    NORMALISED = "normalised"  # underfilled, policy normalise
    POOL_REMAINDER = "pool_remainder"  # underfilled, unfilled part booked to the pool
    EMPTY = "empty"  # no eligible work at all: everything to the pool


@dataclass(frozen=True, slots=True)
class PplnsParams:
    k: Fraction = Fraction(2)
    underfill: UnderfillPolicy = UnderfillPolicy.NORMALISE

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", exact_difficulty(self.k, "pplns.k"))
        try:
            object.__setattr__(self, "underfill", UnderfillPolicy(self.underfill))
        except ValueError:
            raise ValueError(f"pplns.underfill: {self.underfill!r} is not one of "
                             f"{', '.join(p.value for p in UnderfillPolicy)}") from None


@dataclass(frozen=True, slots=True)
class WindowItem:
    """One walked piece of work (a share, or one miner's rollup) and what it counted for."""

    kind: str  # "share" | "rollup"
    ref: str  # share seq, or the rollup period "start/end"
    miner_id: str
    difficulty: Fraction  # full weight of the item
    counted: Fraction  # weight counted in the window (0 if suspended, < difficulty at the edge)
    suspended: bool
    at: datetime  # share time, or rollup period_end


@dataclass(frozen=True, slots=True)
class PplnsWindow:
    target: Fraction  # N = k * D
    filled: Fraction  # eligible weight counted (== target unless underfilled)
    outcome: WindowOutcome
    weights: tuple[tuple[str, Fraction], ...]  # counted weight per miner, by miner id
    items: tuple[WindowItem, ...]  # everything walked, newest first
    edge_fraction: Fraction | None  # the part of the edge item that counted (None: no edge)
    suspended_weight: Fraction  # weight walked past because of suspensions

    def shares_of_block(self) -> tuple[tuple[tuple[str, Fraction], ...], Fraction]:
        """(per-miner fraction of the distributable amount, fraction booked to the pool).

        The fractions sum to exactly 1.
        """
        if self.outcome is WindowOutcome.EMPTY:
            return (), Fraction(1)
        if self.outcome is WindowOutcome.POOL_REMAINDER:
            denominator = self.target
            pool = (self.target - self.filled) / self.target
        else:
            denominator = self.filled
            pool = Fraction(0)
        return tuple((m, w / denominator) for m, w in self.weights), pool


def _period_ref(start: datetime, end: datetime) -> str:
    return f"{start.isoformat()}/{end.isoformat()}"


def compute_window(
    block: BlockRecord,
    shares: Iterable[ShareRecord],
    rollups: Iterable[RollupRecord] = (),
    params: PplnsParams | None = None,
    suspensions: Suspensions | None = None,
) -> PplnsWindow:
    """The PPLNS window of ``block`` over the pool's share history (pure; see module doc).

    ``shares`` may hold more history than needed, in any order; shares after the block's
    ``found_at`` are ignored. ``rollups`` may cover any periods before ``found_at`` that hold
    no raw share given (periods must not overlap), older or newer than the raw shares: storage
    can hand in per-miner sums for whole hours and raw shares only where the edge falls.
    """
    params = params or PplnsParams()
    suspensions = suspensions or Suspensions()
    target = params.k * block.network_difficulty

    all_shares = list(shares)
    seqs: set[int] = set()
    for s in all_shares:
        if not isinstance(s, ShareRecord):
            raise TypeError(f"shares: expected ShareRecord, got {type(s).__name__}")
        if s.seq in seqs:
            raise ValueError(f"shares: seq {s.seq} appears twice")
        seqs.add(s.seq)
    groups = _rollup_groups(list(rollups), all_shares, block)

    # One walk, newest first. A rollup period [start, end) holds no raw share, so it sits after
    # every share at or after ``end`` and before every share before ``start``.
    walk: list[tuple[tuple[datetime, int], ShareRecord | _Group]] = [
        ((s.time, s.seq), s) for s in all_shares if s.time <= block.found_at]
    walk.extend(((g.end, -1), g) for g in groups)
    walk.sort(key=lambda entry: entry[0], reverse=True)

    remaining = target
    items: list[WindowItem] = []
    weights: dict[str, Fraction] = {}
    edge_fraction: Fraction | None = None
    suspended_weight = Fraction(0)

    for _, entry in walk:
        if remaining == 0:
            break
        if isinstance(entry, ShareRecord):
            share = entry
            if suspensions.is_suspended(share.miner_id, share.time):
                suspended_weight += share.difficulty
                items.append(WindowItem("share", str(share.seq), share.miner_id,
                                        share.difficulty, Fraction(0), True, share.time))
                continue
            counted = min(share.difficulty, remaining)
            if counted < share.difficulty:
                edge_fraction = counted / share.difficulty
            remaining -= counted
            weights[share.miner_id] = weights.get(share.miner_id, Fraction(0)) + counted
            items.append(WindowItem("share", str(share.seq), share.miner_id, share.difficulty,
                                    counted, False, share.time))
            continue

        group = entry
        ref = _period_ref(group.start, group.end)
        eligible: list[RollupRecord] = []
        for r in group.members:
            coverage = suspensions.coverage(r.miner_id, group.start, group.end)
            if coverage in ("full", "partial"):  # partial: see the module docstring
                suspended_weight += r.difficulty_sum
                items.append(WindowItem("rollup", ref, r.miner_id, r.difficulty_sum,
                                        Fraction(0), True, group.end))
            else:
                eligible.append(r)
        group_weight = sum((r.difficulty_sum for r in eligible), Fraction(0))
        if group_weight == 0:
            continue
        scale = Fraction(1)
        if group_weight > remaining:
            scale = remaining / group_weight
            edge_fraction = scale
        for r in eligible:
            counted = r.difficulty_sum * scale
            weights[r.miner_id] = weights.get(r.miner_id, Fraction(0)) + counted
            items.append(WindowItem("rollup", ref, r.miner_id, r.difficulty_sum, counted,
                                    False, group.end))
        remaining -= group_weight * scale

    filled = target - remaining
    if remaining == 0:
        outcome = WindowOutcome.FULL
    elif filled == 0:
        outcome = WindowOutcome.EMPTY
    elif params.underfill is UnderfillPolicy.NORMALISE:
        outcome = WindowOutcome.NORMALISED
    else:
        outcome = WindowOutcome.POOL_REMAINDER
    return PplnsWindow(
        target=target,
        filled=filled,
        outcome=outcome,
        weights=tuple(sorted(weights.items())),
        items=tuple(items),
        edge_fraction=edge_fraction,
        suspended_weight=suspended_weight,
    )


@dataclass(frozen=True, slots=True)
class _Group:
    """The rollups of one period, miners in id order."""

    start: datetime
    end: datetime
    members: tuple[RollupRecord, ...]


def _rollup_groups(
    rollups: list[RollupRecord], shares: list[ShareRecord], block: BlockRecord
) -> list[_Group]:
    """Rollups grouped by period, newest first; validated (see compute_window)."""
    if not rollups:
        return []
    share_times = sorted(s.time for s in shares)
    groups: dict[tuple[datetime, datetime], list[RollupRecord]] = {}
    for r in rollups:
        if not isinstance(r, RollupRecord):
            raise TypeError(f"rollups: expected RollupRecord, got {type(r).__name__}")
        if r.period_end > block.found_at:
            raise ValueError(
                f"rollup of miner {r.miner_id!r} ends {r.period_end.isoformat()}, after the "
                f"block was found ({block.found_at.isoformat()})")
        groups.setdefault((r.period_start, r.period_end), []).append(r)
    ordered = sorted(groups.items(), key=lambda g: g[0], reverse=True)
    for newer, older in itertools.pairwise(ordered):
        if older[0][1] > newer[0][0]:
            raise ValueError(f"rollup periods {_period_ref(*older[0])} and "
                             f"{_period_ref(*newer[0])} overlap")
    result = []
    for (start, end), members in ordered:
        i = bisect.bisect_left(share_times, start)
        if i < len(share_times) and share_times[i] < end:
            raise ValueError(f"rollup period {_period_ref(start, end)} overlaps raw shares "
                             f"(a raw share at {share_times[i].isoformat()}); a period is "
                             "either rolled up or raw, never both")
        members.sort(key=lambda r: r.miner_id)
        for a, b in itertools.pairwise(members):
            if a.miner_id == b.miner_id:
                raise ValueError(f"rollups: miner {a.miner_id!r} has two rollups for "
                                 f"{_period_ref(start, end)}")
        result.append(_Group(start, end, tuple(members)))
    return result
