"""An in-process chain that behaves like bitcoind on regtest, for the demo and the tests.

It answers the same RPC calls with the same shapes as the recordings in
``tests/vectors/bitcoind-regtest/`` (``getblocktemplate``, ``submitblock``,
``getblockchaininfo``, ``getblock``, ``getblockhash``, ``getbestblockhash``, ``getblockcount``,
``getmininginfo``, ``generatetoaddress``) through ``await chain.call(method, *params)``, so the
template feed and the block submitter use it exactly like a ``poolserver.bitcoin.node.NodeClient``.

What is real: block and transaction serialization, txids/wtxids, the witness commitment, the
coinbase value (subsidy halving every 150 blocks on regtest, plus fees of the included
mempool transactions), and ``submitblock``'s checks with bitcoind's reason strings:
``high-hash``, ``bad-txnmrklroot``, ``bad-cb-missing``, ``bad-cb-length``,
``prev-blk-not-found``, ``bad-diffbits``, ``time-too-old``, ``time-too-new``, ``bad-cb-height``,
``bad-witness-nonce-size``, ``bad-witness-merkle-match``, ``unexpected-witness``,
``bad-txns-inputs-missingorspent``, ``bad-cb-amount``, ``duplicate``, ``duplicate-invalid``,
``inconclusive`` (valid but not on the best chain).
What is synthetic: mempool transactions spend made-up outputs (their scripts are not executed)
and blocks made by ``generatetoaddress`` (the rest of the network) skip proof of work.

The network difficulty is ``bits``: ``0x207fffff`` (regtest) makes every share a block; use
``bits_for_shares`` for a chain where a block takes about N shares of a given difficulty.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolserver.bitcoin.node import RpcError, RpcMethodNotFound
from poolserver.config import Config, ConfigError
from stratum.address import address_to_script
from stratum.coinbase import add_witness_reserved_value, bip34_height_push, build_coinbase
from stratum.difficulty import DIFF1, target_from_nbits
from stratum.hashcore import sha256d
from stratum.merkle import ZERO32, find_witness_commitment, merkle_root, witness_commitment_script
from stratum.template import target_to_bits
from stratum.tx import DecodeError, Tx, TxIn, TxOut, parse_block, varint

log = logging.getLogger(__name__)

REGTEST_BITS = 0x207FFFFF
POW_LIMIT = target_from_nbits(REGTEST_BITS)
COIN = 100_000_000
COINBASE_MATURITY = 100
# bitcoind regtest genesis block (chainparams.cpp): the chain's block 0.
GENESIS_HEADER = bytes.fromhex(
    "01000000" + "00" * 32
    + "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
    + "dae5494d" + "ffff7f20" + "02000000"
)  # fmt: skip
HALVING_INTERVAL = {"regtest": 150, "test": 210_000, "signet": 210_000}
RPC_DESERIALIZATION_ERROR = -22
RPC_INVALID_PARAMETER = -8
RPC_INVALID_ADDRESS_OR_KEY = -5
# The rest of the network's blocks ([chain].network_block_interval_s) pay this P2WPKH script: a
# fixed program that is not the pool's address on any network.
NETWORK_MINER_SCRIPT = b"\x00\x14" + hashlib.sha256(b"qazpool embedded network").digest()[:20]


class EmbeddedChainError(ValueError):
    """The embedded chain cannot run with this configuration."""


def subsidy(height: int, network: str = "regtest") -> int:
    halvings = height // HALVING_INTERVAL[network]
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


def bits_for_shares(shares_per_block: float, share_difficulty: float) -> int:
    """nBits of a network target at which a block takes ~``shares_per_block`` shares of
    ``share_difficulty`` (capped at regtest's pow limit)."""
    if shares_per_block <= 0 or share_difficulty <= 0:
        raise EmbeddedChainError("shares_per_block and share difficulty must be positive")
    target = min(int(DIFF1 / (shares_per_block * share_difficulty)), POW_LIMIT)
    return target_to_bits(max(target, 1))


def embedded_bits(config: Config) -> int:
    """``[chain].bits``, or derived: a block takes ``shares_per_block`` shares at the lowest
    listener ``start_difficulty``."""
    if config.chain.bits:
        try:
            bits = int(config.chain.bits, 16)
            target_from_nbits(bits)
        except ValueError:
            raise ConfigError(f"chain.bits: {config.chain.bits!r} is not hex nBits") from None
        return bits
    lowest = min((lst.start_difficulty for lst in config.stratum.listeners), default=1.0)
    try:
        return bits_for_shares(config.chain.shares_per_block, lowest)
    except EmbeddedChainError as exc:
        raise ConfigError(f"chain.shares_per_block: {exc}") from None


def from_config(config: Config) -> EmbeddedChain:
    """The embedded chain for ``poolserver run`` without nodes; says so in the log."""
    path = config.data_path / "embedded-chain.jsonl" if config.chain.persist else None
    try:
        chain = EmbeddedChain(
            config.chain.network,
            bits=embedded_bits(config),
            mempool_tx_count=config.chain.mempool_tx_count,
            state_path=path,
        )
    except EmbeddedChainError as exc:
        raise ConfigError(f"chain: {exc}") from None
    log.warning(chain.describe())
    return chain


@dataclass(frozen=True, slots=True)
class MempoolTx:
    tx: Tx
    raw: bytes
    txid: bytes
    wtxid: bytes
    fee: int
    weight: int


@dataclass(slots=True)
class ChainBlock:
    hash: bytes
    height: int
    header: bytes
    prev: bytes
    time: int
    bits: int
    txids: tuple[bytes, ...]
    coinbase_value: int
    fees: int
    size: int
    raw: bytes
    self_mined: bool = False


def _display(h: bytes) -> str:
    return h[::-1].hex()


def _btc(sats: int) -> float:
    """bitcoind's JSON amount (BTC as a number); readers convert back with ``sats_from_btc``."""
    return sats / 100_000_000


def _script_type(script: bytes) -> str:
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return "witness_v0_keyhash"
    if len(script) == 34 and script[:2] == b"\x00\x20":
        return "witness_v0_scripthash"
    if len(script) == 34 and script[:2] == b"\x51\x20":
        return "witness_v1_taproot"
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[-2:] == b"\x88\xac":
        return "pubkeyhash"
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[-1:] == b"\x87":
        return "scripthash"
    if script[:1] == b"\x6a":
        return "nulldata"
    return "nonstandard"


def tx_json(tx: Tx) -> dict[str, Any]:
    """A transaction as ``getblock`` verbosity 2 shows it (Bitcoin Core's field names and
    shapes; ``scriptPubKey`` without ``asm``/``desc``/``address``, ``fee`` left out)."""
    raw = tx.serialize()
    vin: list[dict[str, Any]] = []
    for i in tx.inputs:
        entry: dict[str, Any]
        if tx.is_coinbase:
            entry = {"coinbase": i.script_sig.hex()}
        else:
            entry = {"txid": _display(i.prev_txid), "vout": i.prev_index,
                     "scriptSig": {"asm": "", "hex": i.script_sig.hex()}}  # fmt: skip
        if i.witness:
            entry["txinwitness"] = [w.hex() for w in i.witness]
        entry["sequence"] = i.sequence
        vin.append(entry)
    vout = [{"value": _btc(o.value), "n": n,
             "scriptPubKey": {"hex": o.script.hex(), "type": _script_type(o.script)}}
            for n, o in enumerate(tx.outputs)]  # fmt: skip
    return {
        "txid": _display(tx.txid),
        "hash": _display(tx.wtxid),
        "version": tx.version,
        "size": len(raw),
        "vsize": (tx.weight + 3) // 4,
        "weight": tx.weight,
        "locktime": tx.locktime,
        "vin": vin,
        "vout": vout,
        "hex": raw.hex(),
    }


class EmbeddedChain:
    name = "embedded"

    def __init__(
        self,
        network: str = "regtest",
        *,
        bits: int = REGTEST_BITS,
        mempool_tx_count: int = 3,
        clock: Callable[[], float] = time.time,
        state_path: str | Path | None = None,
    ) -> None:
        if network == "main":
            raise EmbeddedChainError(
                "the embedded chain is for tests and demos and refuses network = 'main'; "
                "configure [[node.nodes]] with a real bitcoind for mainnet"
            )
        if network not in HALVING_INTERVAL:
            raise EmbeddedChainError(f"unknown network {network!r} for the embedded chain")
        try:
            target = target_from_nbits(bits)
        except ValueError as exc:  # negative or beyond 256 bits
            raise EmbeddedChainError(
                f"bits {bits:08x} is outside regtest's pow limit: {exc}"
            ) from None
        if not 0 < target <= POW_LIMIT:
            raise EmbeddedChainError(f"bits {bits:08x} is outside regtest's pow limit")
        if mempool_tx_count < 0:
            raise EmbeddedChainError("mempool_tx_count must be >= 0")
        self.network = network
        self.bits = bits
        self.target = target
        self.mempool_tx_count = mempool_tx_count
        self.clock = clock
        self.blocks: dict[bytes, ChainBlock] = {}
        self.invalid: set[bytes] = set()
        self.main: list[bytes] = []
        self.mempool: OrderedDict[bytes, MempoolTx] = OrderedDict()
        self._tx_counter = 0
        self._seq = 0
        self._changed = asyncio.Event()
        genesis = ChainBlock(
            hash=sha256d(GENESIS_HEADER), height=0, header=GENESIS_HEADER, prev=ZERO32,
            time=1296688602, bits=REGTEST_BITS, txids=(GENESIS_HEADER[36:68],),
            coinbase_value=50 * COIN, fees=0, size=285, raw=b"",
        )  # fmt: skip
        self._connect(genesis)
        self._state_path = Path(state_path) if state_path else None
        if self._state_path is not None:
            self._replay_state()
        self._refill_mempool()

    # ---- description -------------------------------------------------------------------
    def describe(self) -> str:
        diff = DIFF1 / self.target
        return (
            f"EMBEDDED CHAIN (no bitcoind configured): simulated {self.network} at height "
            f"{self.height}, nbits {self.bits:08x} (network difficulty {diff:.6g}), "
            f"{self.mempool_tx_count} synthetic mempool transactions per block. Blocks found here "
            "are not real bitcoin."
        )

    # ---- chain state -------------------------------------------------------------------
    @property
    def tip(self) -> ChainBlock:
        return self.blocks[self.main[-1]]

    @property
    def height(self) -> int:
        return len(self.main) - 1

    @property
    def longpollid(self) -> str:
        return _display(self.tip.hash) + str(self._seq)

    def median_time_past(self) -> int:
        times = sorted(self.blocks[h].time for h in self.main[-11:])
        return times[len(times) // 2]

    def confirmations(self, block_hash: bytes) -> int:
        """bitcoind's ``confirmations``: tip height - height + 1 on the best chain, -1 if the
        block is known but not on it (orphaned), 0 if unknown."""
        b = self.blocks.get(block_hash)
        if b is None:
            return 0
        if b.height < len(self.main) and self.main[b.height] == block_hash:
            return self.height - b.height + 1
        return -1

    def _connect(self, block: ChainBlock) -> None:
        self.blocks[block.hash] = block
        self.main.append(block.hash)
        for txid in block.txids[1:]:
            self.mempool.pop(txid, None)
        self._bump()

    def _bump(self) -> None:
        self._seq += 1
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- mempool -----------------------------------------------------------------------
    def _synthetic_tx(self) -> MempoolTx:
        """A one-input, two-output P2WPKH spend with a real serialization (the prevout and the
        signature are made up, so txid, wtxid and weight are real; scripts are not run)."""
        self._tx_counter += 1
        n = self._tx_counter
        seed = hashlib.sha256(f"qazpool-embedded-{n}".encode()).digest()
        fee = 1410 + 20 * (n % 10)
        value_in = 2 * COIN + n
        sig = b"\x30\x44\x02\x20" + seed + b"\x02\x20" + seed[::-1] + b"\x01"
        pubkey = b"\x02" + hashlib.sha256(seed).digest()
        tx = Tx(
            version=2,
            inputs=(TxIn(seed, n % 3, b"", 0xFFFFFFFD, (sig, pubkey)),),
            outputs=(
                TxOut(30_000_000, b"\x00\x14" + seed[:20]),
                TxOut(value_in - 30_000_000 - fee, b"\x00\x14" + seed[12:32]),
            ),
            locktime=self.height,
        )
        raw = tx.serialize()
        return MempoolTx(tx, raw, tx.txid, tx.wtxid, fee, tx.weight)

    def _refill_mempool(self) -> None:
        while len(self.mempool) < self.mempool_tx_count:
            m = self._synthetic_tx()
            self.mempool[m.txid] = m

    # ---- RPC surface -------------------------------------------------------------------
    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        if method == "getblocktemplate":
            opts = params[0] if params else {}
            if not isinstance(opts, dict) or "segwit" not in opts.get("rules", []):
                raise RpcError(
                    self.name, method, RPC_INVALID_PARAMETER,
                    'getblocktemplate must be called with the segwit rule set (call with '
                    '{"rules": ["segwit"]})',
                )  # fmt: skip
            lp = opts.get("longpollid")
            if lp is not None and lp == self.longpollid:
                await self._changed.wait()
            return self.getblocktemplate()
        handler = {
            "submitblock": self.submitblock,
            "getblockchaininfo": self.getblockchaininfo,
            "getmininginfo": self.getmininginfo,
            "getbestblockhash": lambda: _display(self.tip.hash),
            "getblockcount": lambda: self.height,
            "getblockhash": self.getblockhash,
            "getblock": self.getblock,
            "generatetoaddress": self.generatetoaddress,
        }.get(method)
        if handler is None:
            raise RpcMethodNotFound(self.name, method, -32601, "Method not found")
        try:
            return handler(*params)
        except TypeError as exc:
            raise RpcError(self.name, method, RPC_INVALID_PARAMETER, str(exc)) from None

    async def close(self) -> None:
        return None

    def coinbase_value(self) -> int:
        return subsidy(self.height + 1, self.network) + sum(m.fee for m in self.mempool.values())

    def getblocktemplate(self) -> dict[str, Any]:
        txs = list(self.mempool.values())
        mtp = self.median_time_past()
        return {
            "bits": f"{self.bits:08x}",
            "capabilities": ["proposal"],
            "coinbaseaux": {},
            "coinbasevalue": self.coinbase_value(),
            "curtime": max(int(self.clock()), mtp + 1),
            "default_witness_commitment": witness_commitment_script([m.wtxid for m in txs]).hex(),
            "height": self.height + 1,
            "longpollid": self.longpollid,
            "mintime": mtp + 1,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "previousblockhash": _display(self.tip.hash),
            "rules": ["csv", "!segwit", "taproot"],
            "sigoplimit": 80000,
            "sizelimit": 4000000,
            "target": f"{self.target:064x}",
            "transactions": [
                {
                    "data": m.raw.hex(),
                    "depends": [],
                    "fee": m.fee,
                    "hash": _display(m.wtxid),
                    "sigops": 1,
                    "txid": _display(m.txid),
                    "weight": m.weight,
                }
                for m in txs
            ],
            "vbavailable": {},
            "vbrequired": 0,
            "version": 0x20000000,
            "weightlimit": 4000000,
        }

    def _chainwork(self) -> int:
        return sum((1 << 256) // (target_from_nbits(self.blocks[h].bits) + 1) for h in self.main)

    def getblockchaininfo(self) -> dict[str, Any]:
        tip = self.tip
        return {
            "bestblockhash": _display(tip.hash),
            "bits": f"{self.bits:08x}",
            "blocks": self.height,
            "chain": self.network,
            "chainwork": f"{self._chainwork():064x}",
            "difficulty": DIFF1 / self.target,
            "headers": self.height,
            "initialblockdownload": False,
            "mediantime": self.median_time_past(),
            "pruned": False,
            "size_on_disk": sum(b.size for b in self.blocks.values()),
            "target": f"{self.target:064x}",
            "time": tip.time,
            "verificationprogress": 1,
            "warnings": ["embedded chain: simulated blocks, not real bitcoin"],
        }

    def getmininginfo(self) -> dict[str, Any]:
        return {
            "bits": f"{self.bits:08x}",
            "blocks": self.height,
            "chain": self.network,
            "difficulty": DIFF1 / self.target,
            "pooledtx": len(self.mempool),
            "target": f"{self.target:064x}",
            "warnings": [],
        }

    def getblockhash(self, height: int) -> str:
        if not isinstance(height, int) or not 0 <= height <= self.height:
            raise RpcError(self.name, "getblockhash", RPC_INVALID_PARAMETER,
                           "Block height out of range")  # fmt: skip
        return _display(self.main[height])

    def getblock(self, block_hash: str, verbosity: int = 1) -> Any:
        try:
            b = self.blocks.get(bytes.fromhex(block_hash)[::-1])
        except (ValueError, TypeError):
            b = None
        if b is None:
            raise RpcError(self.name, "getblock", RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        if verbosity == 0:
            return b.raw.hex()
        if verbosity not in (1, 2, True, False):
            raise RpcError(self.name, "getblock", RPC_INVALID_PARAMETER,
                           "Verbosity must be in range 0..3")  # fmt: skip
        nxt = self.main[b.height + 1] if self.confirmations(b.hash) > 1 else None
        out = {
            "hash": _display(b.hash),
            "confirmations": self.confirmations(b.hash),
            "height": b.height,
            "version": int.from_bytes(b.header[:4], "little"),
            "versionHex": b.header[:4][::-1].hex(),
            "merkleroot": _display(b.header[36:68]),
            "time": b.time,
            "nonce": int.from_bytes(b.header[76:80], "little"),
            "bits": f"{b.bits:08x}",
            "target": f"{target_from_nbits(b.bits):064x}",
            "difficulty": DIFF1 / target_from_nbits(b.bits),
            "nTx": len(b.txids),
            "previousblockhash": _display(b.prev),
            "size": b.size,
            "tx": [_display(t) for t in b.txids],
            "coinbase_value": b.coinbase_value,
        }
        if verbosity == 2:
            txs = parse_block(b.raw).txs
            out["tx"] = [tx_json(t) for t in txs]
            cb = txs[0]
            out["coinbase_tx"] = {
                "version": cb.version, "locktime": cb.locktime,
                "sequence": cb.inputs[0].sequence, "coinbase": cb.inputs[0].script_sig.hex(),
                **({"witness": cb.inputs[0].witness[0].hex()} if cb.inputs[0].witness else {}),
            }  # fmt: skip
        if b.height == 0:
            del out["previousblockhash"]
        if nxt is not None:
            out["nextblockhash"] = _display(nxt)
        return out

    def generatetoaddress(self, nblocks: int, address: str) -> list[str]:
        """Blocks by the rest of the network (no proof of work), paying ``address``."""
        try:
            script = address_to_script(address, self.network)
        except ValueError as exc:
            raise RpcError(self.name, "generatetoaddress", RPC_INVALID_ADDRESS_OR_KEY,
                           f"Error: Invalid address: {exc}") from None  # fmt: skip
        return [_display(self.mine_block(script).hash) for _ in range(nblocks)]

    def mine_block(self, payout_script: bytes, *, include_mempool: bool = True) -> ChainBlock:
        txs = list(self.mempool.values()) if include_mempool else []
        height = self.height + 1
        value = subsidy(height, self.network) + sum(m.fee for m in txs)
        outs = [(value, payout_script), (0, witness_commitment_script([m.wtxid for m in txs]))]
        parts = build_coinbase(height, outs, tag=b"/embedded/", extranonce_size=8)
        cb = parts.coinb1 + self._seq.to_bytes(8, "little") + parts.coinb2
        root = merkle_root([sha256d(cb), *(m.txid for m in txs)])
        ntime = max(int(self.clock()), self.median_time_past() + 1)
        header = (0x20000000).to_bytes(4, "little") + self.tip.hash + root + ntime.to_bytes(
            4, "little") + self.bits.to_bytes(4, "little") + b"\0\0\0\0"  # fmt: skip
        raw = b"".join((header, varint(1 + len(txs)), add_witness_reserved_value(cb),
                        *(m.raw for m in txs)))  # fmt: skip
        block = self._accept(raw, trusted=True)
        assert isinstance(block, ChainBlock)
        return block

    async def run_other_miners(self, interval_s: float, payout_script: bytes) -> None:
        """The rest of the network: a block by someone else every ``interval_s`` seconds on
        average (exponential gaps), so miners see clean jobs and stale shares as on a real
        chain. Runs until cancelled; ``interval_s <= 0`` returns at once."""
        if interval_s <= 0:
            return
        rng = random.Random(0x51A)
        while True:
            await asyncio.sleep(rng.expovariate(1 / interval_s))
            block = self.mine_block(payout_script)
            log.info("embedded chain: the network found block %d %s", block.height,
                     _display(block.hash))  # fmt: skip

    # ---- submitblock -------------------------------------------------------------------
    def submitblock(self, block_hex: str, _dummy: Any = None) -> str | None:
        try:
            raw = bytes.fromhex(block_hex)
        except (ValueError, TypeError):
            raise RpcError(self.name, "submitblock", RPC_DESERIALIZATION_ERROR,
                           "Block decode failed") from None  # fmt: skip
        result = self._accept(raw, trusted=False)
        return result if isinstance(result, str) or result is None else None

    def _accept(self, raw: bytes, trusted: bool) -> ChainBlock | str | None:
        try:
            block = parse_block(raw)
        except DecodeError:
            raise RpcError(self.name, "submitblock", RPC_DESERIALIZATION_ERROR,
                           "Block decode failed") from None  # fmt: skip
        if not block.txs or not block.txs[0].is_coinbase:
            raise RpcError(self.name, "submitblock", RPC_DESERIALIZATION_ERROR,
                           "Block does not start with a coinbase")  # fmt: skip
        h = block.hash
        if h in self.blocks:
            return "duplicate"
        if h in self.invalid:
            return "duplicate-invalid"
        # CheckBlockHeader / CheckBlock (context-free)
        if not trusted and int.from_bytes(h, "little") > target_from_nbits(block.bits):
            return "high-hash"
        txids = [t.txid for t in block.txs]
        if merkle_root(txids) != block.merkle_root:
            return "bad-txnmrklroot"
        if len(set(txids)) != len(txids):
            return "bad-txns-duplicate"
        if any(t.is_coinbase for t in block.txs[1:]):
            return "bad-cb-multiple"
        cb = block.txs[0]
        if not 2 <= len(cb.inputs[0].script_sig) <= 100:
            return "bad-cb-length"
        # AcceptBlockHeader / ContextualCheckBlockHeader
        prev = self.blocks.get(block.prevhash)
        if prev is None:
            return "prev-blk-not-found"
        height = prev.height + 1
        if block.bits != self.bits:
            return "bad-diffbits"
        if not trusted:
            window = sorted(self.blocks[x].time for x in self._ancestors(prev.hash, 11))
            if block.time <= window[len(window) // 2]:
                return "time-too-old"
            if block.time > self.clock() + 2 * 60 * 60:
                return "time-too-new"
        if block.version < 4:
            return f"bad-version(0x{block.version:08x})"
        # ContextualCheckBlock
        if not cb.inputs[0].script_sig.startswith(bip34_height_push(height)):
            self.invalid.add(h)
            return "bad-cb-height"
        verdict = self._check_witness(block)
        if verdict:
            self.invalid.add(h)
            return verdict
        weight = sum(t.weight for t in block.txs)
        if weight > 4_000_000:
            self.invalid.add(h)
            return "bad-blk-weight"
        if prev.hash != self.tip.hash:
            # valid so far but not building on our best block: stored, not connected
            self.blocks[h] = self._record(block, raw, height, 0, self_mined=trusted)
            return "inconclusive"
        # ConnectBlock
        fees = 0
        for t in block.txs[1:]:
            m = self.mempool.get(t.txid)
            if m is None and not trusted:
                self.invalid.add(h)
                return "bad-txns-inputs-missingorspent"
            fees += m.fee if m is not None else 0
        paid = sum(o.value for o in cb.outputs)
        if paid > subsidy(height, self.network) + fees and not trusted:
            self.invalid.add(h)
            return "bad-cb-amount"
        record = self._record(block, raw, height, fees, self_mined=trusted)
        self._persist(raw)
        self._connect(record)
        self._refill_mempool()
        if trusted:
            return record
        log.info("embedded chain: accepted block %d %s", height, _display(h))
        return None

    def _record(
        self, block: Any, raw: bytes, height: int, fees: int, self_mined: bool
    ) -> ChainBlock:
        return ChainBlock(
            hash=block.hash, height=height, header=block.header, prev=block.prevhash,
            time=block.time, bits=block.bits, txids=tuple(t.txid for t in block.txs),
            coinbase_value=sum(o.value for o in block.txs[0].outputs), fees=fees,
            size=len(raw), raw=raw, self_mined=self_mined,
        )  # fmt: skip

    def _ancestors(self, start: bytes, n: int) -> list[bytes]:
        out = []
        h = start
        while h in self.blocks and len(out) < n:
            out.append(h)
            h = self.blocks[h].prev
        return out

    @staticmethod
    def _check_witness(block: Any) -> str | None:
        cb = block.txs[0]
        idx = find_witness_commitment([o.script for o in cb.outputs])
        if idx is not None:
            witness = cb.inputs[0].witness
            if len(witness) != 1 or len(witness[0]) != 32:
                return "bad-witness-nonce-size"
            expected = witness_commitment_script([t.wtxid for t in block.txs[1:]], witness[0])
            if cb.outputs[idx].script[:38] != expected:
                return "bad-witness-merkle-match"
            return None
        if any(t.has_witness for t in block.txs):
            return "unexpected-witness"
        return None

    # ---- optional persistence (so a demo pool keeps its chain across restarts) ---------------
    def _persist(self, raw: bytes) -> None:
        if self._state_path is None:
            return
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        with self._state_path.open("a", encoding="ascii") as fh:
            fh.write(json.dumps({"block": raw.hex()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _replay_state(self) -> None:
        assert self._state_path is not None
        if not self._state_path.exists():
            return
        path, self._state_path = self._state_path, None  # do not re-append while replaying
        for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
            try:
                raw = bytes.fromhex(json.loads(line)["block"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s line %d: unreadable, ignored (torn write?)", path, n)
                continue
            result = self._accept(raw, trusted=True)
            if not isinstance(result, ChainBlock):
                log.warning("%s line %d: block not reconnected (%s)", path, n, result)
        self._state_path = path
        log.info("embedded chain: restored %d blocks from %s", self.height, path)
