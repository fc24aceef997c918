"""Block → frozen Allocation: who gets what of one block's reward, in integer satoshis.

Order of operations (README.md states the same):

1. ``bonus = floor(reward * finder_bonus_bps / 10000)`` to the finder (0 when off, when there is
   no finder, or when the finder was suspended at ``found_at``);
2. ``distributable = reward - bonus`` is split (``split.split_exact``) over the PPLNS window's
   fractions, plus the pool's fraction when the window is underfilled with ``pool_remainder``
   (or empty);
3. per miner ``gross = pplns + bonus``, ``fee = floor(gross * bps / 10000)`` with the miner's rate
   in force at ``found_at``, ``net = gross - fee``.

Invariants (tested): ``sum(gross) + pool_remainder == reward`` and
``sum(net) + pool_fee + pool_remainder == reward``.

The allocation has one canonical byte form (sorted-key compact JSON, fractions as "n/d", times
as UTC ISO-8601 with "Z") and carries ``inputs_hash``: sha256 of the canonical form of the inputs
that determined it (block, parameters, the walked window items, the fee rates applied). Replaying
the same history gives the same bytes; storage freezes them and never recomputes in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from payouts.fees import FeePolicy, fee_for, finder_bonus
from payouts.pplns import (
    PplnsParams,
    UnderfillPolicy,
    WindowItem,
    WindowOutcome,
    compute_window,
)
from payouts.split import split_exact
from payouts.types import (
    POOL_ACCOUNT,
    BlockRecord,
    RollupRecord,
    ShareRecord,
    Suspensions,
)

FORMAT_VERSION = "qazpool-allocation/1"


@dataclass(frozen=True, slots=True)
class AllocationLine:
    miner_id: str
    weight: Fraction  # weight counted in the PPLNS window
    pplns_sats: int  # this miner's part of the distributable amount
    bonus_sats: int  # finder bonus (0 unless this miner found the block and the bonus is on)
    gross_sats: int  # pplns + bonus
    fee_bps: int  # the rate in force for this miner at found_at
    fee_sats: int  # floor(gross * fee_bps / 10000)
    net_sats: int  # gross - fee: what the miner is credited when the block matures


@dataclass(frozen=True, slots=True)
class Allocation:
    block: BlockRecord
    k: Fraction
    underfill_policy: UnderfillPolicy
    outcome: WindowOutcome
    window_target: Fraction
    window_filled: Fraction
    finder_bonus_bps: int
    lines: tuple[AllocationLine, ...]  # by miner id
    pool_remainder_sats: int  # unfilled window (pool_remainder) or empty window
    pool_fee_sats: int  # sum of the lines' fees
    inputs_hash: str  # sha256 hex of the canonical inputs

    @property
    def pool_total_sats(self) -> int:
        """What the pool account is credited: fees plus any booked remainder."""
        return self.pool_fee_sats + self.pool_remainder_sats

    @property
    def distributable_sats(self) -> int:
        """The reward minus the finder bonus (what the PPLNS window splits)."""
        return self.block.reward_sats - sum(line.bonus_sats for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "block": _block_dict(self.block),
            "k": _frac(self.k),
            "underfill_policy": self.underfill_policy.value,
            "outcome": self.outcome.value,
            "window_target": _frac(self.window_target),
            "window_filled": _frac(self.window_filled),
            "finder_bonus_bps": self.finder_bonus_bps,
            "lines": [
                {
                    "miner_id": ln.miner_id,
                    "weight": _frac(ln.weight),
                    "pplns_sats": ln.pplns_sats,
                    "bonus_sats": ln.bonus_sats,
                    "gross_sats": ln.gross_sats,
                    "fee_bps": ln.fee_bps,
                    "fee_sats": ln.fee_sats,
                    "net_sats": ln.net_sats,
                }
                for ln in self.lines
            ],
            "pool_remainder_sats": self.pool_remainder_sats,
            "pool_fee_sats": self.pool_fee_sats,
            "inputs_hash": self.inputs_hash,
        }

    def to_bytes(self) -> bytes:
        """The canonical serialization: what storage freezes."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Allocation:
        """Parse a frozen allocation; round-trips ``to_bytes`` exactly (refuses anything else)."""
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT_VERSION:
                raise ValueError(f"allocation.format: expected {FORMAT_VERSION!r}, "
                                 f"got {d.get('format')!r}")
            b = d["block"]
            allocation = cls(
                block=BlockRecord(
                    height=b["height"], block_hash=b["hash"], reward_sats=b["reward_sats"],
                    network_difficulty=Fraction(b["network_difficulty"]),
                    found_at=_parse_time(b["found_at"]), finder=b["finder"]),
                k=Fraction(d["k"]),
                underfill_policy=UnderfillPolicy(d["underfill_policy"]),
                outcome=WindowOutcome(d["outcome"]),
                window_target=Fraction(d["window_target"]),
                window_filled=Fraction(d["window_filled"]),
                finder_bonus_bps=d["finder_bonus_bps"],
                lines=tuple(
                    AllocationLine(
                        miner_id=ln["miner_id"], weight=Fraction(ln["weight"]),
                        pplns_sats=ln["pplns_sats"], bonus_sats=ln["bonus_sats"],
                        gross_sats=ln["gross_sats"], fee_bps=ln["fee_bps"],
                        fee_sats=ln["fee_sats"], net_sats=ln["net_sats"])
                    for ln in d["lines"]),
                pool_remainder_sats=d["pool_remainder_sats"],
                pool_fee_sats=d["pool_fee_sats"],
                inputs_hash=d["inputs_hash"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"allocation: not a canonical allocation ({exc})") from None
        if allocation.to_bytes() != data:
            raise ValueError("allocation: bytes are not in canonical form")
        return allocation


def allocate(
    block: BlockRecord,
    shares: Iterable[ShareRecord],
    fees: FeePolicy,
    *,
    rollups: Iterable[RollupRecord] = (),
    params: PplnsParams | None = None,
    suspensions: Suspensions | None = None,
) -> Allocation:
    """Allocate ``block``'s reward over the share history (pure; see module doc)."""
    params = params or PplnsParams()
    suspensions = suspensions or Suspensions()
    window = compute_window(block, shares, rollups, params, suspensions)
    reward = block.reward_sats

    bonus = 0
    finder = block.finder
    if finder is not None and not suspensions.is_suspended(finder, block.found_at):
        bonus = finder_bonus(reward, fees.finder_bonus_bps)
    distributable = reward - bonus

    miner_fractions, pool_fraction = window.shares_of_block()
    split_weights: list[tuple[str, Fraction]] = list(miner_fractions)
    if pool_fraction:
        split_weights.append((POOL_ACCOUNT, pool_fraction))
    parts = split_exact(distributable, split_weights)
    pool_remainder = parts.pop(POOL_ACCOUNT, 0)

    weights = dict(window.weights)
    miners = sorted(set(weights) | ({finder} if bonus else set()))
    lines = []
    for miner in miners:
        pplns_sats = parts.get(miner, 0)
        bonus_sats = bonus if miner == finder else 0
        gross = pplns_sats + bonus_sats
        bps = fees.bps_for(miner, block.found_at)
        fee = fee_for(gross, bps)
        lines.append(AllocationLine(
            miner_id=miner, weight=weights.get(miner, Fraction(0)), pplns_sats=pplns_sats,
            bonus_sats=bonus_sats, gross_sats=gross, fee_bps=bps, fee_sats=fee,
            net_sats=gross - fee))

    inputs = {
        "format": FORMAT_VERSION,
        "block": _block_dict(block),
        "k": _frac(params.k),
        "underfill_policy": params.underfill.value,
        "finder_bonus_bps": fees.finder_bonus_bps,
        "fee_bps": {line.miner_id: line.fee_bps for line in lines},
        "items": [_item_dict(item) for item in window.items],
    }
    return Allocation(
        block=block,
        k=params.k,
        underfill_policy=params.underfill,
        outcome=window.outcome,
        window_target=window.target,
        window_filled=window.filled,
        finder_bonus_bps=fees.finder_bonus_bps,
        lines=tuple(lines),
        pool_remainder_sats=pool_remainder,
        pool_fee_sats=sum(line.fee_sats for line in lines),
        inputs_hash=hashlib.sha256(canonical_json(inputs)).hexdigest(),
    )


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only: one byte string per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _frac(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _block_dict(block: BlockRecord) -> dict[str, Any]:
    return {
        "height": block.height,
        "hash": block.block_hash,
        "reward_sats": block.reward_sats,
        "network_difficulty": _frac(block.network_difficulty),
        "found_at": _time(block.found_at),
        "finder": block.finder,
    }


def _item_dict(item: WindowItem) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "ref": item.ref,
        "miner_id": item.miner_id,
        "difficulty": _frac(item.difficulty),
        "counted": _frac(item.counted),
        "suspended": item.suspended,
        "at": _time(item.at),
    }
