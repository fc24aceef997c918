"""Merkle trees as Bitcoin builds them (duplicate the last node of an odd level), pure functions.

All hashes are internal byte order. ``coinbase_branch`` is what `mining.notify` carries: the
siblings on the path of the coinbase (index 0), so a miner folds ``sha256d(coinbase)`` with them
(the coinbase is always the left operand).
"""

from __future__ import annotations

from collections.abc import Sequence

from stratum.hashcore import sha256d

ZERO32 = b"\0" * 32
WITNESS_MAGIC = bytes.fromhex("aa21a9ed")


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a full list of leaf hashes (txids, or wtxids for the witness tree)."""
    if not hashes:
        raise ValueError("merkle root of an empty list")
    layer = list(hashes)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def coinbase_branch(txids: Sequence[bytes]) -> list[bytes]:
    """Branch for index 0, given the txids of every transaction *after* the coinbase."""
    branch: list[bytes] = []
    layer: list[bytes | None] = [None, *txids]
    while len(layer) > 1:
        branch.append(layer[1])  # type: ignore[arg-type]
        if len(layer) % 2:
            layer.append(layer[-1])
        layer = [None] + [
            sha256d(layer[i] + layer[i + 1])  # type: ignore[operator]
            for i in range(2, len(layer), 2)
        ]
    return branch


def fold_branch(leaf: bytes, branch: Sequence[bytes]) -> bytes:
    r = leaf
    for b in branch:
        r = sha256d(r + b)
    return r


def witness_root(wtxids: Sequence[bytes]) -> bytes:
    """BIP141 witness merkle root; the coinbase's wtxid counts as 32 zero bytes."""
    return merkle_root([ZERO32, *wtxids])


def witness_commitment_script(wtxids: Sequence[bytes], reserved: bytes = ZERO32) -> bytes:
    """The coinbase output script ``6a24aa21a9ed || sha256d(witness_root || reserved)``."""
    commitment = sha256d(witness_root(wtxids) + reserved)
    return b"\x6a\x24" + WITNESS_MAGIC + commitment


def find_witness_commitment(scripts: Sequence[bytes]) -> int | None:
    """Index of the output carrying the commitment (the last matching one counts), or None."""
    found = None
    for i, s in enumerate(scripts):
        if len(s) >= 38 and s[:6] == b"\x6a\x24" + WITNESS_MAGIC:
            found = i
    return found
