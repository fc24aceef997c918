"""Pure-Python (hashlib) implementation of the hash core API.

This is the reference the C extension (``stratum._hashcore``) must match byte for byte, and
the fallback used when the extension is not built. Keep the two APIs identical:

- ``sha256d(data) -> bytes``
- ``sha256d_many(items) -> list[bytes]``
- ``merkle_root(coinbase, branch) -> bytes``: txid of ``coinbase`` folded with each branch hash
- ``header_hash(version, prevhash, merkle_root, ntime, nbits, nonce) -> bytes``
- ``check_share(coinb1, extranonce1, extranonce2, coinb2, branch, version, prevhash, ntime,
  nbits, nonce, share_target, network_target, version_bits=0, version_mask=0)
  -> (hash, meets_share_target, meets_network_target)``
- ``check_shares(items) -> list[(hash, meets_share_target, meets_network_target)]`` where each
  item is the tuple of ``check_share``'s positional arguments (12 or 14 of them); an argument
  error names the item: ``"items[3]: nonce must be int, not str"``.

Bad arguments raise TypeError (wrong type) or ValueError (wrong length, out of range) naming the
argument; the C core raises the same types with the same messages.

Byte orders: ``prevhash`` and ``merkle_root`` are the 32 header bytes (internal order); the
returned hash is internal order (display = ``h[::-1].hex()``); targets are 32 bytes
little-endian, i.e. ``int.to_bytes(32, "little")``, compared as little-endian integers.
Integers (version, ntime, nbits, nonce, version_bits, version_mask) are uint32.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

BACKEND = "hashlib"

_sha256 = hashlib.sha256
_pack_header_tail = struct.Struct("<III").pack
_pack_u32 = struct.Struct("<I").pack
_U32 = 0xFFFFFFFF


def _bytes_arg(value: object, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    data = bytes(value)
    if size is not None and len(data) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(data)}")
    return data


def _u32_arg(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if not 0 <= value <= _U32:
        raise ValueError(f"{name} must be a uint32 (0..4294967295), got {value}")
    return value


def _branch_arg(branch: object) -> list[bytes]:
    if isinstance(branch, bytes | bytearray | str) or not isinstance(branch, Sequence):
        raise TypeError(f"branch must be a sequence of 32-byte bytes, not {type(branch).__name__}")
    return [_bytes_arg(b, f"branch[{i}]", 32) for i, b in enumerate(branch)]


def sha256d(data: bytes) -> bytes:
    data = _bytes_arg(data, "data")
    return _sha256(_sha256(data).digest()).digest()


def sha256d_many(items: Sequence[bytes]) -> list[bytes]:
    if isinstance(items, bytes | bytearray | str) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a sequence of bytes, not {type(items).__name__}")
    return [sha256d(_bytes_arg(x, f"items[{i}]")) for i, x in enumerate(items)]


def _fold(txid: bytes, branch: list[bytes]) -> bytes:
    r = txid
    for b in branch:
        r = _sha256(_sha256(r + b).digest()).digest()
    return r


def merkle_root(coinbase: bytes, branch: Sequence[bytes]) -> bytes:
    coinbase = _bytes_arg(coinbase, "coinbase")
    return _fold(sha256d(coinbase), _branch_arg(branch))


def _header(
    version: int, prevhash: bytes, root: bytes, ntime: int, nbits: int, nonce: int
) -> bytes:
    return _pack_u32(version) + prevhash + root + _pack_header_tail(ntime, nbits, nonce)


def header_hash(
    version: int, prevhash: bytes, merkle_root: bytes, ntime: int, nbits: int, nonce: int
) -> bytes:
    header = _header(
        _u32_arg(version, "version"),
        _bytes_arg(prevhash, "prevhash", 32),
        _bytes_arg(merkle_root, "merkle_root", 32),
        _u32_arg(ntime, "ntime"),
        _u32_arg(nbits, "nbits"),
        _u32_arg(nonce, "nonce"),
    )
    return _sha256(_sha256(header).digest()).digest()


def check_share(
    coinb1: bytes,
    extranonce1: bytes,
    extranonce2: bytes,
    coinb2: bytes,
    branch: Sequence[bytes],
    version: int,
    prevhash: bytes,
    ntime: int,
    nbits: int,
    nonce: int,
    share_target: bytes,
    network_target: bytes,
    version_bits: int = 0,
    version_mask: int = 0,
) -> tuple[bytes, bool, bool]:
    coinbase = (
        _bytes_arg(coinb1, "coinb1")
        + _bytes_arg(extranonce1, "extranonce1")
        + _bytes_arg(extranonce2, "extranonce2")
        + _bytes_arg(coinb2, "coinb2")
    )
    root = _fold(sha256d(coinbase), _branch_arg(branch))
    version = _u32_arg(version, "version")
    mask = _u32_arg(version_mask, "version_mask")
    bits = _u32_arg(version_bits, "version_bits")
    rolled = (version & ~mask & _U32) | (bits & mask)
    header = _header(
        rolled,
        _bytes_arg(prevhash, "prevhash", 32),
        root,
        _u32_arg(ntime, "ntime"),
        _u32_arg(nbits, "nbits"),
        _u32_arg(nonce, "nonce"),
    )
    h = _sha256(_sha256(header).digest()).digest()
    value = int.from_bytes(h, "little")
    share = int.from_bytes(_bytes_arg(share_target, "share_target", 32), "little")
    network = int.from_bytes(_bytes_arg(network_target, "network_target", 32), "little")
    return h, value <= share, value <= network


def check_shares(items: Sequence[Sequence[object]]) -> list[tuple[bytes, bool, bool]]:
    if isinstance(items, bytes | bytearray | str) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a sequence of tuples, not {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, tuple | list) or len(item) not in (12, 14):
            raise TypeError(f"items[{i}] must be a tuple of 12 or 14 check_share arguments")
        try:
            out.append(check_share(*item))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"items[{i}]: {exc}") from None
    return out
