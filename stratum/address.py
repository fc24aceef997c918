"""Payout address → scriptPubKey (P2PKH, P2SH, P2WPKH, P2WSH, P2TR) for each Bitcoin network.

Base58Check for legacy addresses, BIP173 bech32 for witness v0 and BIP350 bech32m for v1+.
Every refusal is an ``AddressError`` carrying the address and the reason, so the pool can say at
startup exactly what is wrong with its configured payout address::

    script = address_to_script("bcrt1q...", "regtest")
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

NETWORKS = ("main", "test", "signet", "regtest")


@dataclass(frozen=True, slots=True)
class NetworkParams:
    hrp: str
    p2pkh: int
    p2sh: int


PARAMS = {
    "main": NetworkParams("bc", 0x00, 0x05),
    "test": NetworkParams("tb", 0x6F, 0xC4),
    "signet": NetworkParams("tb", 0x6F, 0xC4),
    "regtest": NetworkParams("bcrt", 0x6F, 0xC4),
}


class AddressError(ValueError):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"invalid address {address!r}: {reason}")
        self.address = address
        self.reason = reason


class Encoding(Enum):
    BECH32 = 1
    BECH32M = 2


_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(_CHARSET)}
_BECH32M_CONST = 0x2BC830A3
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_REV = {c: i for i, c in enumerate(_B58)}


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_decode(address: str) -> tuple[str, list[int], Encoding]:
    """(hrp, 5-bit data without checksum, encoding); raises AddressError."""
    if any(ord(c) < 33 or ord(c) > 126 for c in address):
        raise AddressError(address, "contains a character outside printable US-ASCII")
    if address.lower() != address and address.upper() != address:
        raise AddressError(address, "mixes upper and lower case")
    if len(address) > 90:
        raise AddressError(address, f"is {len(address)} characters long (bech32 allows 90)")
    s = address.lower()
    pos = s.rfind("1")
    if pos < 1:
        raise AddressError(address, "has no human-readable part before the '1' separator")
    if pos + 7 > len(s):
        raise AddressError(address, "is too short for a bech32 checksum")
    hrp = s[:pos]
    data = []
    for i, c in enumerate(s[pos + 1 :], start=pos + 1):
        if c not in _CHARSET_REV:
            raise AddressError(address, f"invalid bech32 character {c!r} at position {i}")
        data.append(_CHARSET_REV[c])
    const = _polymod(_hrp_expand(hrp) + data)
    if const == 1:
        enc = Encoding.BECH32
    elif const == _BECH32M_CONST:
        enc = Encoding.BECH32M
    else:
        raise AddressError(address, "bech32 checksum does not match")
    return hrp, data[:-6], enc


def _convert_bits(address: str, data: list[int], frombits: int, tobits: int, pad: bool) -> bytes:
    acc = bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for v in data:
        acc = (acc << frombits) | v
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise AddressError(address, "has invalid padding in its witness program")
    return bytes(out)


def decode_segwit(address: str, hrp: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit address for ``hrp``; raises AddressError."""
    got_hrp, data, enc = bech32_decode(address)
    if got_hrp != hrp:
        raise AddressError(address, f"prefix {got_hrp!r} is not this network's {hrp!r}")
    if not data:
        raise AddressError(address, "has no witness version")
    version = data[0]
    if version > 16:
        raise AddressError(address, f"witness version {version} is above 16")
    program = _convert_bits(address, data[1:], 5, 8, False)
    if not 2 <= len(program) <= 40:
        raise AddressError(address, f"witness program of {len(program)} bytes (must be 2..40)")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError(
            address, f"v0 witness program of {len(program)} bytes (must be 20 or 32)"
        )
    if version == 0 and enc is not Encoding.BECH32:
        raise AddressError(address, "witness v0 must use bech32, not bech32m (BIP350)")
    if version != 0 and enc is not Encoding.BECH32M:
        raise AddressError(address, f"witness v{version} must use bech32m, not bech32 (BIP350)")
    return version, program


def encode_segwit(hrp: str, version: int, program: bytes) -> str:
    data = [version, *_convert_bits("", list(program), 8, 5, True)]
    const = 1 if version == 0 else _BECH32M_CONST
    values = _hrp_expand(hrp) + data
    mod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def base58check_decode(address: str) -> bytes:
    if not address:
        raise AddressError(address, "is empty")
    n = 0
    for i, c in enumerate(address):
        if c not in _B58_REV:
            raise AddressError(address, f"invalid base58 character {c!r} at position {i}")
        n = n * 58 + _B58_REV[c]
    zeros = len(address) - len(address.lstrip("1"))
    raw = b"\0" * zeros + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")
    if len(raw) < 5:
        raise AddressError(address, "is too short for a base58check payload")
    payload, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        raise AddressError(address, "base58check checksum does not match")
    return payload


def witness_script(version: int, program: bytes) -> bytes:
    op = 0 if version == 0 else 0x50 + version
    return bytes((op, len(program))) + program


def address_to_script(address: str, network: str, *, allow_future_witness: bool = False) -> bytes:
    """The scriptPubKey paying ``address`` on ``network``.

    Witness versions without defined spending rules (v1 with a non-32-byte program, v2..v16)
    are valid addresses but anyone can spend such outputs today, so they are refused unless
    ``allow_future_witness`` (used for the BIP350 test vectors).
    """
    if network not in PARAMS:
        raise AddressError(address, f"unknown network {network!r} (known: {', '.join(NETWORKS)})")
    if not isinstance(address, str):
        raise AddressError(str(address), "is not a string")
    params = PARAMS[network]
    if not address:
        raise AddressError(address, "is empty")
    hrps = {p.hrp for p in PARAMS.values()}
    looks_bech32 = address[: address.rfind("1")].lower() in hrps or any(
        address.lower().startswith(h + "1") for h in hrps
    )
    if looks_bech32:
        version, program = decode_segwit(address, params.hrp)
        if not allow_future_witness and not (version == 0 or (version == 1 and len(program) == 32)):
            raise AddressError(
                address,
                f"witness v{version} with a {len(program)}-byte program has no spending rules "
                "yet (anyone could spend it); refusing to pay to it",
            )
        return witness_script(version, program)
    payload = base58check_decode(address)
    if len(payload) != 21:
        raise AddressError(address, f"base58 payload is {len(payload)} bytes (expected 21)")
    ver, h = payload[0], payload[1:]
    if ver == params.p2pkh:
        return b"\x76\xa9\x14" + h + b"\x88\xac"
    if ver == params.p2sh:
        return b"\xa9\x14" + h + b"\x87"
    owner = [n for n, p in PARAMS.items() if ver in (p.p2pkh, p.p2sh)]
    where = f" (a {'/'.join(owner)} address)" if owner else ""
    raise AddressError(address, f"base58 version byte {ver:#04x} is not valid on {network}{where}")
