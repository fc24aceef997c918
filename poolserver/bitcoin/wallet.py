"""Payment transports (``payouts.payments.PaymentTransport``): bitcoind's wallet, or embedded.

``NodeWallet`` talks to a Bitcoin Core wallet over JSON-RPC:

* ``sendmany "" {address: amount, ...} minconf "comment" [subtractfeefrom]`` — one transaction
  per batch, the batch's unique comment stored with it by the wallet; with
  ``fee_policy = "miners"`` every address is in ``subtractfeefrom``;
* ``listtransactions "*" count skip`` — newest last, paged backwards; an entry whose ``comment``
  equals the batch's gives the txid (reconciliation after a crash between send and record);
* ``gettransaction txid`` — ``confirmations`` (negative when the transaction conflicts with one
  in the main chain) and ``fee`` (negative BTC: the network fee the wallet paid);
* ``getbalances`` — ``mine.trusted`` (spendable: the planning budget), ``untrusted_pending``,
  ``immature`` (coinbases below depth 101), for ``payouts reconcile``. The pool's coinbase
  address must belong to this wallet, or its rewards never reach it.

Amounts: integer satoshis become BTC as ``Decimal(sats) / 10**8`` with exactly 8 places and go
into the request body as JSON *numbers* written from that decimal (``0.00100000``), never through
a float. Amounts read back (fees, balances) become satoshis with ``sats_from_btc`` (exact; see
there). Errors where bitcoind guarantees nothing was committed (insufficient funds →
``WalletUnderfunded``; invalid address or amount, locked wallet, ... → ``PaymentRejected``) are
refusals; anything else (timeouts, lost connections, unknown codes) propagates, so the batch
stays pending and is reconciled by comment.

``EmbeddedWallet`` is a coin-tracking wallet of the pool's coinbase address on the embedded
regtest chain (see the class doc: coinbase maturity, change, fee by vsize). Each ``send_many``
builds a real serialized transaction (segwit v0 inputs spending the wallet's coins, one output
per address, P2WPKH/P2TR/... scripts from the addresses, change back to the pool's script) and
appends it — txid, raw hex, outputs paid, fee, comment, chain height — to an fsync'd JSONL file
before returning the txid, so ``find_by_comment`` and the coin set survive a restart.
Confirmations come from the embedded chain's height (0 until the next block, then 1, 2, ...).
Like ``sendmany`` it does not deduplicate: two sends with one comment are two transactions, so a
test reading the file sees any double payment.
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

from payouts.payments import PaymentRejected, WalletUnderfunded
from payouts.txfee import DUST_LIMIT_SATS, subtracted
from poolserver.bitcoin.node import NodeClient, Rpc, RpcError
from poolserver.config import ChainConfig, Config, ConfigError
from stratum.address import AddressError, address_to_script
from stratum.tx import Tx, TxIn, TxOut, parse_block, parse_tx

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
COINBASE_MATURITY = 100  # a coinbase is spendable at depth COINBASE_MATURITY + 1 (101)
DEFAULT_POOL_ADDRESS = ChainConfig.payout_address


def btc_amount(sats: int) -> Decimal:
    """Integer satoshis as an exact BTC Decimal with 8 places (``100000`` → ``0.00100000``)."""
    if not isinstance(sats, int) or isinstance(sats, bool):
        raise TypeError(f"amount: satoshis must be int, got {type(sats).__name__}")
    if sats <= 0:
        raise ValueError(f"amount: must be > 0 satoshis, got {sats}")
    return (Decimal(sats) / SATS_PER_BTC).quantize(_EIGHT_PLACES)


def sats_from_btc(value: object, field: str) -> int:
    """A BTC amount from a node's JSON as exact integer satoshis. The node writes amounts with
    at most 8 decimals; the JSON parser gives a float, whose shortest repr is exactly the digits
    the node wrote, so ``Decimal(repr(value))`` recovers them without float arithmetic. A value
    with more than 8 decimals is refused (naming ``field``)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field}: expected a BTC amount, got {value!r}")
    if isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, (int, str, Decimal)):
        amount = Decimal(value)
    else:
        raise ValueError(f"{field}: expected a BTC amount, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite amount")
    sats = amount * SATS_PER_BTC
    if sats != sats.to_integral_value():
        raise ValueError(f"{field}: {value!r} has more than 8 decimal places")
    return int(sats)


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

    async def send_many(self, outputs: Mapping[str, int], comment: str,
                        subtract_fee: bool = False) -> str:
        amounts = {address: btc_amount(sats) for address, sats in sorted(outputs.items())}
        params: list[Any] = ["", amounts, self.minconf, comment]
        if subtract_fee:
            params.append(list(amounts))  # subtractfeefrom: every output, in the sent order
        try:
            txid = await self.rpc.call("sendmany", *params)
        except RpcError as exc:
            if exc.code == RPC_WALLET_INSUFFICIENT_FUNDS:
                raise WalletUnderfunded(f"sendmany: {exc.message} (code {exc.code})") from None
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

    async def transaction_fee(self, txid: str) -> int:
        """``gettransaction``'s ``fee`` (negative BTC for a send) as positive satoshis."""
        tx = await self.rpc.call("gettransaction", txid)
        value = tx.get("fee") if isinstance(tx, dict) else None
        if value is None:
            raise RuntimeError(f"gettransaction {txid}: no fee in the answer (not our send?)")
        return -sats_from_btc(value, f"gettransaction {txid} fee")

    async def balances(self) -> WalletBalance:
        """``getbalances``: mine.trusted (spendable) + untrusted_pending, and mine.immature."""
        answer = await self.rpc.call("getbalances")
        mine = answer.get("mine") if isinstance(answer, dict) else None
        if not isinstance(mine, dict):
            raise RuntimeError("getbalances: no 'mine' object in the answer")
        trusted = sats_from_btc(mine.get("trusted"), "getbalances mine.trusted")
        pending = sats_from_btc(mine.get("untrusted_pending", 0), "getbalances untrusted_pending")
        immature = sats_from_btc(mine.get("immature", 0), "getbalances mine.immature")
        return WalletBalance(trusted, immature, pending)

    async def spendable(self) -> int:
        return (await self.balances()).spendable

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
    outputs: dict[str, int]  # address -> sats actually paid (after any fee subtraction)
    height: int
    at: str
    fee: int = 0  # sats: inputs - outputs (records written before fees were tracked: 0)


@dataclass(frozen=True, slots=True)
class Coin:
    """An unspent output the wallet can sign for (pays the pool's script)."""

    txid: bytes  # internal order
    vout: int
    value: int
    height: int  # block height (coinbase) or the chain height when the wallet sent it
    coinbase: bool


@dataclass(frozen=True, slots=True)
class WalletBalance:
    """Satoshis: ``spendable`` now, ``immature`` coinbases (depth < 101), and their sum."""

    spendable: int
    immature: int
    pending: int = 0  # Bitcoin Core: untrusted_pending (incoming, unconfirmed)

    @property
    def total(self) -> int:
        return self.spendable + self.immature + self.pending


# Sizes of what the embedded wallet signs (P2WPKH input: 72-byte DER signature + 33-byte key).
_FAKE_SIG_LEN = 72


class EmbeddedWallet:
    """``PaymentTransport`` for the embedded chain (see the module doc): a coin-tracking wallet
    of the pool's payout address.

    Coins: every coinbase output of the embedded chain's **main chain** paying the pool's
    script (spendable at depth ``COINBASE_MATURITY + 1`` = 101, like Bitcoin Core; an orphaned
    block's coins vanish with it), plus the change outputs of the wallet's own transactions
    (spendable at once, like Core's trusted own change), minus every output its transactions
    spent. Nothing is stored besides the JSONL of sent transactions (raw hex included): the coin
    set is recomputed from the chain and that file, so it survives restarts exactly.

    ``send_many`` selects spendable coins oldest first, pays the outputs, pays
    ``fee_rate_sat_vb`` × the transaction's virtual size (rounded up) as fee, and returns the
    rest to the pool's script as change (change below the dust limit is left to the fee). With
    ``subtract_fee`` the fee comes out of the outputs by Bitcoin Core's rule
    (``payouts.txfee.split_fee``). Refusals as Bitcoin Core's wallet: an invalid address or
    amount, an output below the dust limit (``PaymentRejected``), not enough spendable coins
    (``WalletUnderfunded``).
    """

    def __init__(self, chain: Any, path: str | Path, network: str = "regtest", *,
                 pool_address: str = DEFAULT_POOL_ADDRESS, fee_rate_sat_vb: int = 2) -> None:
        self.chain = chain
        self.path = Path(path)
        self.network = network
        self.pool_script = address_to_script(pool_address, network)
        if not isinstance(fee_rate_sat_vb, int) or isinstance(fee_rate_sat_vb, bool) \
                or fee_rate_sat_vb < 1:
            raise ConfigError(f"payouts.fee_rate_sat_vb: must be an int >= 1, got "
                              f"{fee_rate_sat_vb!r}")
        self.fee_rate_sat_vb = fee_rate_sat_vb
        self._lock = asyncio.Lock()
        self._coinbase_cache: dict[bytes, tuple[Coin, ...]] = {}

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

    # ---- coins ------------------------------------------------------------------------------

    def _block_coins(self, block_hash: bytes) -> tuple[Coin, ...]:
        cached = self._coinbase_cache.get(block_hash)
        if cached is not None:
            return cached
        block = self.chain.blocks[block_hash]
        coins: tuple[Coin, ...] = ()
        if block.raw:
            cb = parse_block(block.raw).txs[0]
            coins = tuple(Coin(cb.txid, n, o.value, block.height, True)
                          for n, o in enumerate(cb.outputs)
                          if o.script == self.pool_script and o.value > 0)
        self._coinbase_cache[block_hash] = coins
        return coins

    def coins(self, records: list[RecordedPayment] | None = None,
              main: list[bytes] | None = None) -> list[Coin]:
        """The unspent coins, oldest first (``main``: a snapshot of the chain's main chain)."""
        records = self.recorded() if records is None else records
        found: dict[tuple[bytes, int], Coin] = {}
        if self.chain is not None:
            for block_hash in list(self.chain.main) if main is None else main:
                for coin in self._block_coins(block_hash):
                    found[(coin.txid, coin.vout)] = coin
        spent: set[tuple[bytes, int]] = set()
        for r in records:
            tx = parse_tx(bytes.fromhex(r.raw))
            spent.update((i.prev_txid, i.prev_index) for i in tx.inputs)
            for n, o in enumerate(tx.outputs):
                if o.script == self.pool_script:
                    found[(tx.txid, n)] = Coin(tx.txid, n, o.value, r.height, False)
        return [c for key, c in found.items() if key not in spent]

    @staticmethod
    def _spendable(coin: Coin, tip_height: int) -> bool:
        """Own change at once; a coinbase at depth COINBASE_MATURITY + 1 (Bitcoin Core)."""
        return not coin.coinbase or tip_height - coin.height + 1 > COINBASE_MATURITY

    def balance(self) -> WalletBalance:
        main = list(self.chain.main)  # one snapshot: the event loop may extend the chain
        coins = self.coins(main=main)
        spendable = sum(c.value for c in coins if self._spendable(c, len(main) - 1))
        return WalletBalance(spendable, sum(c.value for c in coins) - spendable)

    async def balances(self) -> WalletBalance:
        async with self._lock:
            return await asyncio.to_thread(self.balance)

    async def spendable(self) -> int:
        return (await self.balances()).spendable

    # ---- sending ----------------------------------------------------------------------------

    def _scripts(self, outputs: Mapping[str, int]) -> dict[str, bytes]:
        scripts = {}
        for address, sats in sorted(outputs.items()):
            try:
                scripts[address] = address_to_script(address, self.network)
            except AddressError as exc:
                raise PaymentRejected(f"Invalid address {address!r}: {exc} (code -5)") from None
            if not isinstance(sats, int) or isinstance(sats, bool) or sats <= 0:
                raise PaymentRejected(f"Invalid amount {sats!r} for {address} (code -3)")
        if not scripts:
            raise PaymentRejected("no outputs")
        return scripts

    def _sign(self, coins: list[Coin], outs: list[TxOut]) -> Tx:
        inputs = []
        for c in coins:
            seed = hashlib.sha256(b"qazpool-embedded-wallet/" + c.txid + bytes([c.vout % 256]))
            digest = seed.digest()
            sig = (b"\x30\x45\x02\x21\x00" + digest + b"\x02\x20" + digest[::-1]
                   + b"\x01")[:_FAKE_SIG_LEN]
            pubkey = b"\x02" + hashlib.sha256(digest).digest()
            inputs.append(TxIn(c.txid, c.vout, b"", 0xFFFFFFFD, (sig, pubkey)))
        return Tx(version=2, inputs=tuple(inputs), outputs=tuple(outs), locktime=0)

    def _fee_for(self, tx: Tx) -> int:
        return -(-tx.weight // 4) * self.fee_rate_sat_vb  # vsize rounded up, times the rate

    def build_tx(self, outputs: Mapping[str, int], records: list[RecordedPayment],
                 subtract_fee: bool = False) -> tuple[Tx, dict[str, int], int]:
        """(transaction, address -> sats paid, fee) spending this wallet's spendable coins."""
        scripts = self._scripts(outputs)
        for address, sats in outputs.items():
            if sats < DUST_LIMIT_SATS:
                raise PaymentRejected(f"Transaction amount too small: {sats} sat to {address} "
                                      f"is below the dust limit {DUST_LIMIT_SATS} (code -6)")
        main = list(self.chain.main)  # one snapshot: the event loop may extend the chain
        available = [c for c in self.coins(records, main) if self._spendable(c, len(main) - 1)]
        target = sum(outputs.values())
        chosen: list[Coin] = []
        for coin in available:
            chosen.append(coin)
            have = sum(c.value for c in chosen)
            paid = dict(sorted(outputs.items()))
            outs = [TxOut(v, scripts[a]) for a, v in paid.items()]
            fee = self._fee_for(self._sign(chosen, [*outs, TxOut(have, self.pool_script)]))
            if subtract_fee:
                paid = subtracted(outputs, fee)
                small = [a for a, v in paid.items() if v < DUST_LIMIT_SATS]
                if small:
                    raise PaymentRejected(f"The transaction amount is too small to pay the fee "
                                          f"({small[0]}) (code -4)")
                spend = target
            else:
                spend = target + fee
            if have < spend:
                continue
            outs = [TxOut(v, scripts[a]) for a, v in paid.items()]
            change = have - spend
            if change >= DUST_LIMIT_SATS:
                outs.append(TxOut(change, self.pool_script))
            else:
                change = 0  # dust change is left to the fee, as Bitcoin Core does
                if subtract_fee:  # ... and the outputs pay the fee actually paid
                    paid = subtracted(outputs, have - target + fee)
                    outs = [TxOut(v, scripts[a]) for a, v in paid.items()]
            return self._sign(chosen, outs), paid, have - sum(paid.values()) - change
        spendable = sum(c.value for c in available)
        raise WalletUnderfunded(f"Insufficient funds: {target} sat to send, {spendable} sat "
                                "spendable (code -6)")

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

    def _send(self, outputs: Mapping[str, int], comment: str, subtract_fee: bool
              ) -> RecordedPayment:  # fmt: skip
        records = self.recorded()
        tx, paid, fee = self.build_tx(outputs, records, subtract_fee)
        record = RecordedPayment(
            comment=comment, txid=tx.txid[::-1].hex(), raw=tx.serialize().hex(),
            outputs=paid, height=int(self.chain.height), at=datetime.now(UTC).isoformat(),
            fee=fee)  # fmt: skip
        self._append(record)
        return record

    async def send_many(self, outputs: Mapping[str, int], comment: str,
                        subtract_fee: bool = False) -> str:
        async with self._lock:
            record = await asyncio.to_thread(self._send, dict(outputs), comment, subtract_fee)
        log.info("embedded wallet: sent %s paying %d output(s), fee %d sat, comment %r",
                 record.txid, len(outputs), record.fee, comment)  # fmt: skip
        return record.txid

    async def withdraw(self, address: str, sats: int, comment: str) -> RecordedPayment:
        """Send ``sats`` (fee on top) to ``address``: the operator's withdrawal."""
        async with self._lock:
            return await asyncio.to_thread(self._send, {address: sats}, comment, False)

    async def find_by_comment(self, comment: str) -> str | None:
        for r in await asyncio.to_thread(self.recorded):
            if r.comment == comment:
                return r.txid
        return None

    async def transaction_fee(self, txid: str) -> int:
        for r in await asyncio.to_thread(self.recorded):
            if r.txid == txid:
                return r.fee
        raise KeyError(f"embedded wallet: no transaction {txid}")

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
                              config.chain.network, pool_address=config.chain.payout_address,
                              fee_rate_sat_vb=config.payouts.fee_rate_sat_vb)  # fmt: skip
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
