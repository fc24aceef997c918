"""Bitcoin transaction and block serialization: the byte-level codec, pure functions.

Used by the job builder (varints, outputs), the template parser (txid check) and the embedded
chain (parsing submitted blocks). Hashes are internal byte order throughout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stratum.hashcore import sha256d

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class DecodeError(ValueError):
    """Bytes that are not a valid transaction or block; the message says where and why."""


def varint(n: int) -> bytes:
    """Bitcoin CompactSize."""
    if n < 0:
        raise ValueError(f"varint of a negative number: {n}")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def push_data(data: bytes) -> bytes:
    """Minimal script push of ``data`` (up to 520 bytes)."""
    n = len(data)
    if n < 0x4C:
        return bytes((n,)) + data
    if n <= 0xFF:
        return b"\x4c" + bytes((n,)) + data
    if n <= 520:
        return b"\x4d" + n.to_bytes(2, "little") + data
    raise ValueError(f"push of {n} bytes exceeds the 520-byte script element limit")


def tx_output(value: int, script: bytes) -> bytes:
    if not 0 <= value <= 21_000_000 * 100_000_000:
        raise ValueError(f"output value out of range: {value}")
    return _U64.pack(value) + varint(len(script)) + script


@dataclass(frozen=True, slots=True)
class TxIn:
    prev_txid: bytes  # internal order
    prev_index: int
    script_sig: bytes
    sequence: int
    witness: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class TxOut:
    value: int
    script: bytes


@dataclass(frozen=True, slots=True)
class Tx:
    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int

    @property
    def has_witness(self) -> bool:
        return any(i.witness for i in self.inputs)

    def serialize(self, with_witness: bool = True) -> bytes:
        wit = with_witness and self.has_witness
        parts = [_U32.pack(self.version)]
        if wit:
            parts.append(b"\x00\x01")
        parts.append(varint(len(self.inputs)))
        for i in self.inputs:
            parts += [
                i.prev_txid,
                _U32.pack(i.prev_index),
                varint(len(i.script_sig)),
                i.script_sig,
                _U32.pack(i.sequence),
            ]
        parts.append(varint(len(self.outputs)))
        parts += [tx_output(o.value, o.script) for o in self.outputs]
        if wit:
            for i in self.inputs:
                parts.append(varint(len(i.witness)))
                parts += [varint(len(item)) + item for item in i.witness]
        parts.append(_U32.pack(self.locktime))
        return b"".join(parts)

    @property
    def txid(self) -> bytes:
        return sha256d(self.serialize(with_witness=False))

    @property
    def wtxid(self) -> bytes:
        return sha256d(self.serialize(with_witness=True))

    @property
    def is_coinbase(self) -> bool:
        return (
            len(self.inputs) == 1
            and self.inputs[0].prev_txid == b"\0" * 32
            and self.inputs[0].prev_index == 0xFFFFFFFF
        )

    @property
    def weight(self) -> int:
        return len(self.serialize(False)) * 3 + len(self.serialize(True))


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.what = what

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise DecodeError(f"{self.what}: truncated at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def varint(self) -> int:
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        n = int.from_bytes(self.take(size), "little")
        if n < (0xFD, 0x10000, 0x100000000)[(2, 4, 8).index(size)]:
            raise DecodeError(f"{self.what}: non-canonical varint at byte {self.pos - size - 1}")
        return n

    def count(self, limit: int, name: str) -> int:
        n = self.varint()
        if n > limit:
            raise DecodeError(f"{self.what}: {name} count {n} is implausibly large")
        return n


def _read_tx(r: _Reader) -> Tx:
    version = r.u32()
    n_in = r.count(100_000, "input")
    witness_flag = False
    if n_in == 0:
        flag = r.take(1)[0]
        if flag != 1:
            raise DecodeError(f"{r.what}: bad segwit flag {flag:#x}")
        witness_flag = True
        n_in = r.count(100_000, "input")
    ins = []
    for _ in range(n_in):
        prev = r.take(32)
        idx = r.u32()
        script = r.take(r.count(10_000, "scriptSig byte"))
        seq = r.u32()
        ins.append([prev, idx, script, seq, ()])
    outs = []
    for _ in range(r.count(100_000, "output")):
        value = r.u64()
        outs.append(TxOut(value, r.take(r.count(10_000, "scriptPubKey byte"))))
    if witness_flag:
        for item in ins:
            n = r.count(100_000, "witness item")
            item[4] = tuple(r.take(r.count(4_000_000, "witness byte")) for _ in range(n))
        if not any(item[4] for item in ins):
            raise DecodeError(f"{r.what}: segwit flag set but all witnesses are empty")
    locktime = r.u32()
    return Tx(version, tuple(TxIn(*i) for i in ins), tuple(outs), locktime)


def parse_tx(data: bytes) -> Tx:
    r = _Reader(data, "transaction")
    tx = _read_tx(r)
    if r.pos != len(data):
        raise DecodeError(f"transaction: {len(data) - r.pos} trailing bytes")
    return tx


@dataclass(frozen=True, slots=True)
class Block:
    header: bytes
    txs: tuple[Tx, ...]

    @property
    def hash(self) -> bytes:
        return sha256d(self.header)

    @property
    def version(self) -> int:
        return _U32.unpack_from(self.header, 0)[0]

    @property
    def prevhash(self) -> bytes:
        return self.header[4:36]

    @property
    def merkle_root(self) -> bytes:
        return self.header[36:68]

    @property
    def time(self) -> int:
        return _U32.unpack_from(self.header, 68)[0]

    @property
    def bits(self) -> int:
        return _U32.unpack_from(self.header, 72)[0]

    @property
    def nonce(self) -> int:
        return _U32.unpack_from(self.header, 76)[0]


def parse_block(data: bytes) -> Block:
    r = _Reader(data, "block")
    header = r.take(80)
    n = r.count(1_000_000, "transaction")
    txs = tuple(_read_tx(r) for _ in range(n))
    if r.pos != len(data):
        raise DecodeError(f"block: {len(data) - r.pos} trailing bytes")
    return Block(header, txs)


def strip_witness(data: bytes) -> bytes:
    """The non-witness serialization of a raw transaction (txid preimage)."""
    if len(data) > 5 and data[4] == 0:
        return parse_tx(data).serialize(with_witness=False)
    return data
