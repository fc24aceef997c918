"""The coinbase transaction, built once per template and split around the extranonce slot.

Layout (non-witness form, what miners hash), matching the blocks bitcoind accepted in
``tests/vectors/bitcoind-regtest/``::

    version(4, =1) 01 00*32 ffffffff varint(len scriptSig)
      scriptSig = BIP34 height push || extranonce1 || extranonce2 || pool tag
    ffffffff(sequence) varint(n outputs) outputs locktime(4, =0)

``coinb1`` ends right before extranonce1, ``coinb2`` starts right after extranonce2. The tag sits
after the extranonces as raw bytes; the scriptSig must be 2..100 bytes (consensus
``bad-cb-length``) and ``build_coinbase`` refuses anything else with a ``CoinbaseError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stratum.merkle import ZERO32
from stratum.tx import tx_output, varint

MAX_SCRIPTSIG = 100
MIN_SCRIPTSIG = 2


class CoinbaseError(ValueError):
    """A coinbase that would break consensus or the pool's own limits."""


def bip34_height_push(height: int) -> bytes:
    """``CScript() << height`` exactly as Bitcoin Core encodes it (BIP34, ``push_int64``)."""
    if height < 0:
        raise CoinbaseError(f"height must be >= 0, got {height}")
    if height == 0:
        return b"\x00"  # OP_0
    if height <= 16:
        return bytes((0x50 + height,))  # OP_1 .. OP_16
    n = height.to_bytes((height.bit_length() + 7) // 8, "little")
    if n[-1] & 0x80:
        n += b"\x00"  # keep the script number positive
    return bytes((len(n),)) + n


def decode_bip34_height(script_sig: bytes) -> int | None:
    """The height a scriptSig starts with, or None if it does not start with a number push."""
    if not script_sig:
        return None
    op = script_sig[0]
    if op == 0:
        return 0
    if 0x51 <= op <= 0x60:
        return op - 0x50
    if 1 <= op <= 8 and len(script_sig) > op:
        n = script_sig[1 : 1 + op]
        if n[-1] & 0x80:
            return None  # negative
        return int.from_bytes(n, "little")
    return None


@dataclass(frozen=True, slots=True)
class CoinbaseParts:
    coinb1: bytes
    coinb2: bytes
    script_sig_len: int


def build_coinbase(
    height: int,
    outputs: Sequence[tuple[int, bytes]],
    *,
    tag: bytes,
    extranonce_size: int,
    version: int = 1,
    sequence: int = 0xFFFFFFFF,
    locktime: int = 0,
) -> CoinbaseParts:
    """coinb1/coinb2 for a coinbase with ``outputs`` [(satoshis, scriptPubKey)] and an
    ``extranonce_size``-byte slot (extranonce1 + extranonce2) inside the scriptSig."""
    if not outputs:
        raise CoinbaseError("a coinbase needs at least one output")
    if extranonce_size < 0:
        raise CoinbaseError(f"extranonce size must be >= 0, got {extranonce_size}")
    head = bip34_height_push(height)
    script_len = len(head) + extranonce_size + len(tag)
    if script_len > MAX_SCRIPTSIG:
        raise CoinbaseError(
            f"coinbase scriptSig would be {script_len} bytes (height push {len(head)} + "
            f"extranonces {extranonce_size} + tag {len(tag)}); consensus allows at most "
            f"{MAX_SCRIPTSIG}: shorten pool.tag or the extranonce sizes"
        )
    if script_len < MIN_SCRIPTSIG:
        raise CoinbaseError(f"coinbase scriptSig would be {script_len} bytes (minimum 2)")
    coinb1 = b"".join(
        (
            version.to_bytes(4, "little"),
            b"\x01",
            ZERO32,
            b"\xff\xff\xff\xff",
            varint(script_len),
            head,
        )
    )
    coinb2 = b"".join(
        (
            tag,
            sequence.to_bytes(4, "little"),
            varint(len(outputs)),
            *(tx_output(v, s) for v, s in outputs),
            locktime.to_bytes(4, "little"),
        )
    )
    return CoinbaseParts(coinb1, coinb2, script_len)


def add_witness_reserved_value(coinbase: bytes, reserved: bytes = ZERO32) -> bytes:
    """Witness serialization of a non-witness coinbase: marker 00, flag 01 after the version
    and one 32-byte stack item (the witness reserved value) before the locktime."""
    if len(reserved) != 32:
        raise CoinbaseError("the witness reserved value must be 32 bytes")
    return coinbase[:4] + b"\x00\x01" + coinbase[4:-4] + b"\x01\x20" + reserved + coinbase[-4:]
