"""Payment transports (``payouts.payments.PaymentTransport``): bitcoind's wallet, or embedded.

``NodeWallet`` talks to a Bitcoin Core wallet over JSON-RPC:

* ``sendmany "" {address: amount, ...} minconf "comment"`` — one transaction per batch, the
  batch's unique comment stored with it by the wallet;
* ``listtransactions "*" count skip`` — newest last, paged backwards; an entry whose ``comment``
  equals the batch's gives the txid (reconciliation after a crash between send and record);
* ``gettransaction txid`` — ``confirmations`` (negative when the transaction conflicts with one
  in the main chain).

Amounts: integer satoshis become BTC as ``Decimal(sats) / 10**8`` with exactly 8 places and go
into the request body as JSON *numbers* written from that decimal (``0.00100000``), never through
a float. Errors where bitcoind guarantees nothing was committed (insufficient funds, invalid
address or amount, locked wallet, ...) raise ``PaymentRejected``; anything else (timeouts, lost
connections, unknown codes) propagates, so the batch stays pending and is reconciled by comment.

``EmbeddedWallet`` pays on the embedded regtest chain: each ``send_many`` builds a real
serialized transaction (segwit v0 input spending a made-up outpoint, one output per address,
P2WPKH/P2TR/... scripts from the addresses), and appends it — txid, raw hex, outputs, comment,
chain height — to an fsync'd JSONL file before returning the txid, so ``find_by_comment``
survives a restart. Confirmations come from the embedded chain's height (0 until the next block,
then 1, 2, ...). Like ``sendmany`` it does not deduplicate: two sends with one comment are two
transactions, so a test reading the file sees any double payment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from payouts.payments import PaymentRejected
from poolserver.bitcoin.node import NodeClient, Rpc, RpcError
from poolserver.config import Config, ConfigError
from stratum.address import AddressError, address_to_script
from stratum.tx import Tx, TxIn, TxOut

log = logging.getLogger(__name__)

SATS_PER_BTC = 100_000_000
_EIGHT_PLACES = Decimal("0.00000001")

# Bitcoin Core error codes (rpc/protocol.h) after which sendmany committed nothing.
RPC_TYPE_ERROR = -3
RPC_WALLET_ERROR = -4
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_INVALID_PARAMETER = -8
RPC_WALLET_UNLOCK_NEEDED = -13
RPC_WALLET_NOT_FOUND = -18
REJECTING_CODES = frozenset({
    RPC_TYPE_ERROR, RPC_WALLET_ERROR, RPC_INVALID_ADDRESS_OR_KEY, RPC_WALLET_INSUFFICIENT_FUNDS,
    RPC_INVALID_PARAMETER, RPC_WALLET_UNLOCK_NEEDED, RPC_WALLET_NOT_FOUND,
})  # fmt: skip
LIST_PAGE = 200


def btc_amount(sats: int) -> Decimal:
    """Integer satoshis as an exact BTC Decimal with 8 places (``100000`` → ``0.00100000``)."""
    if not isinstance(sats, int) or isinstance(sats, bool):
        raise TypeError(f"amount: satoshis must be int, got {type(sats).__name__}")
    if sats <= 0:
        raise ValueError(f"amount: must be > 0 satoshis, got {sats}")
    return (Decimal(sats) / SATS_PER_BTC).quantize(_EIGHT_PLACES)


def rpc_dumps(value: Any) -> str:
    """JSON text like ``json.dumps``, but a ``Decimal`` is written as a JSON number from its
    exact decimal digits (``Decimal("0.00100000")`` → ``0.00100000``); floats are refused so an
    amount can never pass through binary floating point."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"rpc_dumps: {value} is not a finite number")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("rpc_dumps: floats are not sent to the node (use Decimal)")
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{rpc_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(rpc_dumps(v) for v in value) + "]"
    return json.dumps(value)


class WalletNodeClient(NodeClient):
    """A ``NodeClient`` whose requests are serialized with ``rpc_dumps`` (exact amounts)."""

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4, keepalive_timeout=60),
                json_serialize=rpc_dumps,
            )
        return self._session


class NodeWallet:
    """``PaymentTransport`` on a Bitcoin Core wallet (see the module doc)."""

    def __init__(self, rpc: Rpc, *, minconf: int = 1) -> None:
        self.rpc = rpc
        self.minconf = minconf

    async def close(self) -> None:
        close = getattr(self.rpc, "close", None)
        if close is not None:
            await close()

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        amounts = {address: btc_amount(sats) for address, sats in sorted(outputs.items())}
        try:
            txid = await self.rpc.call("sendmany", "", amounts, self.minconf, comment)
        except RpcError as exc:
            if exc.code in REJECTING_CODES:
                raise PaymentRejected(f"sendmany: {exc.message} (code {exc.code})") from None
            raise
        if not isinstance(txid, str) or len(txid) != 64:
            raise RuntimeError(f"sendmany: unexpected answer {txid!r} (batch {comment!r} stays "
                               "pending and is reconciled by comment)")  # fmt: skip
        return txid

    async def find_by_comment(self, comment: str) -> str | None:
        skip = 0
        while True:
            page = await self.rpc.call("listtransactions", "*", LIST_PAGE, skip, True)
            if not isinstance(page, list):
                raise RuntimeError(f"listtransactions: expected a list, got {type(page).__name__}")
            for entry in page:
                if (isinstance(entry, dict) and entry.get("comment") == comment
                        and entry.get("category") == "send"):
                    return str(entry["txid"])
            if len(page) < LIST_PAGE:
                return None
            skip += LIST_PAGE

    async def confirmations(self, txid: str) -> int:
        tx = await self.rpc.call("gettransaction", txid)
        value = tx.get("confirmations") if isinstance(tx, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise RuntimeError(f"gettransaction {txid}: no confirmations in the answer")
        return value


@dataclass(frozen=True, slots=True)
class RecordedPayment:
    comment: str
    txid: str
    raw: str
    outputs: dict[str, int]
    height: int
    at: str


class EmbeddedWallet:
    """``PaymentTransport`` for the embedded chain (see the module doc)."""

    def __init__(self, chain: Any, path: str | Path, network: str = "regtest") -> None:
        self.chain = chain
        self.path = Path(path)
        self.network = network
        self._lock = asyncio.Lock()

    def recorded(self) -> list[RecordedPayment]:
        """Every transaction this wallet ever sent, in order (a torn last line is skipped)."""
        if not self.path.exists():
            return []
        out = []
        lines = self.path.read_text(encoding="ascii").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                out.append(RecordedPayment(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                log.warning("%s line %d unreadable (%s)%s", self.path, n, exc,
                            ", torn last write ignored" if n == len(lines) else "")  # fmt: skip
        return out

    def build_tx(self, outputs: Mapping[str, int], comment: str, nonce: int) -> Tx:
        outs = []
        for address, sats in sorted(outputs.items()):
            try:
                script = address_to_script(address, self.network)
            except AddressError as exc:
                raise PaymentRejected(f"invalid address {address!r}: {exc}") from None
            if not isinstance(sats, int) or isinstance(sats, bool) or sats <= 0:
                raise PaymentRejected(f"invalid amount {sats!r} for {address}")
            outs.append(TxOut(sats, script))
        if not outs:
            raise PaymentRejected("no outputs")
        seed = hashlib.sha256(f"qazpool-embedded-wallet/{comment}/{nonce}".encode()).digest()
        sig = b"\x30\x44\x02\x20" + seed + b"\x02\x20" + seed[::-1] + b"\x01"
        pubkey = b"\x02" + hashlib.sha256(seed).digest()
        return Tx(version=2, inputs=(TxIn(seed, 0, b"", 0xFFFFFFFD, (sig, pubkey)),),
                  outputs=tuple(outs), locktime=0)  # fmt: skip

    def _append(self, record: RecordedPayment) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_as_dict(record), separators=(",", ":"), sort_keys=True) + "\n"
        with self.path.open("a+b") as fh:
            if fh.tell() > 0:  # a torn last line from a crash: end it so this record stands
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode("ascii"))
            fh.flush()
            os.fsync(fh.fileno())
        if new:
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        async with self._lock:
            nonce = len(self.recorded())
            tx = self.build_tx(outputs, comment, nonce)
            record = RecordedPayment(
                comment=comment, txid=tx.txid[::-1].hex(), raw=tx.serialize().hex(),
                outputs=dict(sorted(outputs.items())), height=self.chain.height,
                at=datetime.now(UTC).isoformat())  # fmt: skip
            await asyncio.to_thread(self._append, record)
        log.info("embedded wallet: sent %s paying %d output(s), comment %r", record.txid,
                 len(outputs), comment)  # fmt: skip
        return record.txid

    async def find_by_comment(self, comment: str) -> str | None:
        for r in await asyncio.to_thread(self.recorded):
            if r.comment == comment:
                return r.txid
        return None

    async def confirmations(self, txid: str) -> int:
        for r in await asyncio.to_thread(self.recorded):
            if r.txid == txid:
                return max(0, int(self.chain.height) - r.height)
        raise KeyError(f"embedded wallet: no transaction {txid}")


def _as_dict(record: RecordedPayment) -> dict[str, Any]:
    return {f: getattr(record, f) for f in RecordedPayment.__slots__}  # type: ignore[attr-defined]


def wallet_from_config(config: Config, chain: Any) -> Any:
    """The configured ``PaymentTransport`` (None for ``wallet = "off"``)."""
    from poolserver.bitcoin.embedded_chain import EmbeddedChain

    kind = config.payouts.wallet
    if kind not in ("auto", "node", "embedded", "off"):
        raise ConfigError(f"payouts.wallet: {kind!r} is not one of auto, node, embedded, off")
    if kind == "off":
        return None
    if kind == "embedded" or (kind == "auto" and isinstance(chain, EmbeddedChain)):
        if not isinstance(chain, EmbeddedChain):
            raise ConfigError("payouts.wallet: \"embedded\" needs the embedded chain "
                              "(no [[node.nodes]] configured)")  # fmt: skip
        return EmbeddedWallet(chain, config.data_path / "embedded-wallet.jsonl",
                              config.chain.network)  # fmt: skip
    if not config.node.nodes:
        raise ConfigError("payouts.wallet: \"node\" needs a [[node.nodes]] entry")
    node = config.node.nodes[0]
    url = node.url.rstrip("/")
    if config.payouts.wallet_name:
        url = f"{url}/wallet/{config.payouts.wallet_name}"
    name = f"wallet {config.payouts.wallet_name or '(default)'}"
    client = WalletNodeClient(url, user=node.user, password=node.password,
                              cookie_file=node.cookie_file, timeout=config.node.rpc_timeout_s,
                              name=name)  # fmt: skip
    return NodeWallet(client, minconf=config.payouts.wallet_minconf)
