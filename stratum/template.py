"""Parse a ``getblocktemplate`` answer into a ``BlockTemplate``, checking every field used.

A bad template is refused with ``TemplateError`` naming the field and the reason, never a
KeyError deep in the job builder. Transaction ids are checked against their data (``hash`` is
sha256d of ``data``; ``txid`` of its non-witness form) and the node's
``default_witness_commitment`` against the one recomputed from the wtxids, so a block built from
the template cannot fail on ``bad-txnmrklroot`` or ``bad-witness-merkle-match``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stratum.difficulty import target_from_nbits
from stratum.hashcore import sha256d
from stratum.interfaces import BlockTemplate, TemplateTx
from stratum.merkle import witness_commitment_script
from stratum.tx import DecodeError, strip_witness


class TemplateError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"getblocktemplate field {field!r}: {reason}")
        self.field = field
        self.reason = reason


def target_to_bits(target: int) -> int:
    """256-bit target → compact nBits (consensus ``GetCompact``)."""
    if target <= 0:
        raise ValueError("target must be positive")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def _int(gbt: Mapping[str, Any], name: str, lo: int = 0, hi: int = 0xFFFFFFFF) -> int:
    if name not in gbt:
        raise TemplateError(name, "missing")
    v = gbt[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise TemplateError(name, f"expected an integer, got {v!r}")
    if not lo <= v <= hi:
        raise TemplateError(name, f"{v} is outside {lo}..{hi}")
    return v


def _hex(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise TemplateError(name, f"expected a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise TemplateError(name, "not valid hex") from None
    if size is not None and len(raw) != size:
        raise TemplateError(name, f"expected {size} bytes, got {len(raw)}")
    return raw


def _tx(entry: Any, i: int, verify: bool) -> TemplateTx:
    where = f"transactions[{i}]"
    if not isinstance(entry, Mapping):
        raise TemplateError(where, "expected an object")
    for key in ("data", "txid", "hash"):
        if key not in entry:
            raise TemplateError(f"{where}.{key}", "missing")
    data = _hex(entry["data"], f"{where}.data")
    txid = _hex(entry["txid"], f"{where}.txid", 32)[::-1]
    wtxid = _hex(entry["hash"], f"{where}.hash", 32)[::-1]
    fee = entry.get("fee", 0)
    weight = entry.get("weight", 0)
    if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
        raise TemplateError(f"{where}.fee", f"expected a non-negative integer, got {fee!r}")
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise TemplateError(f"{where}.weight", f"expected a non-negative integer, got {weight!r}")
    if verify:
        if sha256d(data) != wtxid:
            raise TemplateError(f"{where}.hash", "does not equal sha256d(data)")
        try:
            nonwitness = strip_witness(data)
        except DecodeError as exc:
            raise TemplateError(f"{where}.data", str(exc)) from None
        if sha256d(nonwitness) != txid:
            raise TemplateError(f"{where}.txid", "does not match the transaction data")
    return TemplateTx(data=data, txid=txid, wtxid=wtxid, fee=fee, weight=weight)


def parse_template(
    gbt: Mapping[str, Any], network: str = "regtest", *, verify_txs: bool = True
) -> BlockTemplate:
    """``BlockTemplate`` from a GBT result dict; raises ``TemplateError``."""
    if not isinstance(gbt, Mapping):
        raise TemplateError("result", f"expected an object, got {type(gbt).__name__}")
    height = _int(gbt, "height", 0, 0x7FFFFFFF)
    version = _int(gbt, "version")
    curtime = _int(gbt, "curtime")
    mintime = _int(gbt, "mintime") if "mintime" in gbt else curtime
    if curtime < mintime:
        raise TemplateError("curtime", f"{curtime} is before mintime {mintime}")
    coinbase_value = _int(gbt, "coinbasevalue", 0, 21_000_000 * 100_000_000)
    if "previousblockhash" not in gbt:
        raise TemplateError("previousblockhash", "missing")
    prevhash = _hex(gbt["previousblockhash"], "previousblockhash", 32)[::-1]
    if "bits" not in gbt:
        raise TemplateError("bits", "missing")
    bits = int.from_bytes(_hex(gbt["bits"], "bits", 4), "big")
    try:
        target = target_from_nbits(bits)
    except ValueError as exc:  # negative or beyond 256 bits (consensus ``SetCompact``)
        raise TemplateError("bits", str(exc)) from None
    if target == 0:
        raise TemplateError("bits", f"{bits:08x} encodes a zero target")
    if "target" in gbt:
        given = int.from_bytes(_hex(gbt["target"], "target", 32), "big")
        if given != target:
            raise TemplateError("target", f"{gbt['target']} does not match bits {gbt['bits']}")
    txs_raw = gbt.get("transactions", [])
    if not isinstance(txs_raw, list):
        raise TemplateError("transactions", "expected a list")
    txs = tuple(_tx(t, i, verify_txs) for i, t in enumerate(txs_raw))
    dwc = gbt.get("default_witness_commitment")
    commitment = None
    if dwc is not None:
        commitment = _hex(dwc, "default_witness_commitment")
        expected = witness_commitment_script([t.wtxid for t in txs])
        if commitment != expected:
            raise TemplateError(
                "default_witness_commitment",
                f"{dwc} differs from the commitment recomputed from the transactions "
                f"({expected.hex()})",
            )
    elif any(t.txid != t.wtxid for t in txs):
        raise TemplateError(
            "default_witness_commitment", "missing while transactions carry witness data"
        )
    longpollid = gbt.get("longpollid", "")
    if not isinstance(longpollid, str):
        raise TemplateError("longpollid", "expected a string")
    return BlockTemplate(
        height=height,
        version=version,
        prevhash=prevhash,
        bits=bits,
        target=target,
        curtime=curtime,
        mintime=mintime,
        coinbase_value=coinbase_value,
        transactions=txs,
        default_witness_commitment=commitment,
        longpollid=longpollid,
        network=network,
    )
