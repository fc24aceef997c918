"""Payment transports: exact BTC amounts, NodeWallet over HTTP against a loopback wallet
server, EmbeddedWallet's recorded transactions.

There is no recorded fixture for bitcoind's wallet calls in tests/vectors (the recordings cover
mining RPCs only). ``FakeWalletNode`` therefore follows Bitcoin Core's documented RPC shapes
exactly (``bitcoin-cli help sendmany|listtransactions|gettransaction``, v25+): ``sendmany``
returns the txid hex string; ``listtransactions "*" count skip include_watchonly`` returns the
``count`` most recent entries after skipping ``skip``, oldest first, one ``send`` entry per
output carrying ``comment``; ``gettransaction`` returns an object with ``confirmations``;
errors are JSON-RPC 1.0 error objects with HTTP 500 (``-6 Insufficient funds``, ``-5 Invalid
Bitcoin address``)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from payouts.payments import (
    PaymentRejected,
    PaymentStatus,
    PayoutParams,
    WalletUnderfunded,
    run_payments,
)
from payouts.txfee import subtracted
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.node import NodeUnavailable
from poolserver.bitcoin.wallet import (
    DEFAULT_POOL_ADDRESS,
    EmbeddedWallet,
    NodeWallet,
    WalletBalance,
    WalletNodeClient,
    btc_amount,
    rpc_dumps,
    sats_from_btc,
)
from poolserver.storage.repository import Ledger, SqlPaymentOutbox
from stratum.address import address_to_script
from stratum.tx import parse_tx
from tests.payout_support import ADDR

MAX_SATS = 21_000_000 * 100_000_000


def test_btc_amounts_are_exact_decimal_numbers():
    assert rpc_dumps(btc_amount(1)) == "0.00000001"
    assert rpc_dumps(btc_amount(100_000)) == "0.00100000"
    assert rpc_dumps(btc_amount(MAX_SATS)) == "21000000.00000000"
    assert rpc_dumps({"a": btc_amount(123_456_789)}) == '{"a":1.23456789}'
    assert rpc_dumps(["", {"x\"y": btc_amount(5)}, 1, "c", None, True]) == \
        '["",{"x\\"y":0.00000005},1,"c",null,true]'
    with pytest.raises(TypeError, match="floats"):
        rpc_dumps({"a": 0.001})
    with pytest.raises(TypeError, match="must be int"):
        btc_amount(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="> 0"):
        btc_amount(0)


@given(st.integers(min_value=1, max_value=MAX_SATS))
def test_amount_round_trips_through_json(sats):
    text = rpc_dumps({"addr": btc_amount(sats)})
    parsed = json.loads(text, parse_float=Decimal)["addr"]
    assert parsed * 100_000_000 == sats
    assert len(text.split(".")[1]) == 8 + 1  # eight places and the closing brace


class FakeWalletNode:
    """A loopback bitcoind wallet (see the module doc for the shapes it follows)."""

    def __init__(self, balance_sats: int = 10 * 100_000_000) -> None:
        self.balance = balance_sats
        self.txs: list[dict[str, Any]] = []  # wallet transactions, oldest first
        self.entries: list[dict[str, Any]] = []  # listtransactions entries, oldest first
        self.raw_bodies: list[str] = []
        self.sent: list[tuple[dict[str, Decimal], str]] = []
        self.subtract_from: list[list[str]] = []
        self.drop_after_send = False  # commit the send, then lose the reply
        self.height = 200
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> FakeWalletNode:
        app = web.Application()
        app.router.add_post("/wallet/pool", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wallet/pool"

    def add_unrelated(self, n: int) -> None:
        for i in range(n):
            txid = hashlib.sha256(f"other{i}".encode()).hexdigest()
            self.entries.append({"address": ADDR["alice"], "category": "receive",
                                 "amount": 0.1, "label": "", "vout": 0, "confirmations": 50,
                                 "txid": txid, "walletconflicts": [], "time": 1700000000 + i,
                                 "timereceived": 1700000000 + i,
                                 "bip125-replaceable": "no"})  # fmt: skip

    @staticmethod
    def _reply(rid: Any, result: Any = None, error: Any = None) -> web.Response:
        status = 500 if error is not None else 200
        return web.Response(text=json.dumps({"result": result, "error": error, "id": rid}),
                            status=status, content_type="application/json")  # fmt: skip

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode()
        self.raw_bodies.append(body)
        req = json.loads(body, parse_float=Decimal)
        method, params, rid = req["method"], req["params"], req["id"]
        if method == "sendmany":
            dummy, amounts, minconf, comment = params[:4]
            assert dummy == "" and isinstance(minconf, int)
            self.subtract_from.append(params[4] if len(params) > 4 else [])
            for address in amounts:
                if not address.startswith(("bcrt1", "m", "n", "2")):
                    return self._reply(rid, error={"code": -5, "message":
                                                   f"Invalid Bitcoin address: {address}"})
            total = sum(amounts.values()) * 100_000_000
            if total > self.balance:
                return self._reply(rid, error={"code": -6, "message": "Insufficient funds"})
            self.balance -= int(total)
            txid = hashlib.sha256(f"{comment}{len(self.txs)}".encode()).hexdigest()
            self.sent.append((amounts, comment))
            self.txs.append({"txid": txid, "comment": comment, "height": self.height})
            for vout, (address, amount) in enumerate(amounts.items()):
                self.entries.append({"address": address, "category": "send",
                                     "amount": float(-amount), "label": "", "vout": vout,
                                     "fee": -0.0000141, "confirmations": 0, "trusted": True,
                                     "txid": txid, "walletconflicts": [], "time": 1764000000,
                                     "timereceived": 1764000000, "comment": comment,
                                     "bip125-replaceable": "yes", "abandoned": False})
            if self.drop_after_send:
                self.drop_after_send = False
                assert request.transport is not None
                request.transport.close()  # the reply is lost after the commit
                return web.Response(status=500)
            return self._reply(rid, txid)
        if method == "listtransactions":
            label, count, skip = params[0], params[1], params[2]
            assert label == "*"
            end = len(self.entries) - skip
            page = self.entries[max(0, end - count):max(0, end)]
            return self._reply(rid, page)
        if method == "gettransaction":
            for tx in self.txs:
                if tx["txid"] == params[0]:
                    conf = self.height - tx["height"]
                    return self._reply(rid, {"amount": 0, "fee": -0.0000141,
                                             "confirmations": conf, "txid": tx["txid"],
                                             "walletconflicts": [], "time": 1764000000,
                                             "timereceived": 1764000000,
                                             "comment": tx["comment"],
                                             "bip125-replaceable": "no", "details": [],
                                             "hex": "00"})  # fmt: skip
            return self._reply(rid, error={"code": -5,
                                           "message": "Invalid or non-wallet transaction id"})
        if method == "getbalances":  # Bitcoin Core v30 shape (amounts as JSON numbers)
            return self._reply(rid, {"mine": {"trusted": self.balance / 100_000_000,
                                              "untrusted_pending": 0.0,
                                              "immature": 12.5}})  # fmt: skip
        return self._reply(rid, error={"code": -32601, "message": "Method not found"})


@pytest.fixture
async def wallet_node():
    node = await FakeWalletNode().start()
    try:
        yield node
    finally:
        await node.stop()


async def test_node_wallet_sendmany_find_and_confirm(wallet_node):
    client = WalletNodeClient(wallet_node.url)
    wallet = NodeWallet(client, minconf=1)
    try:
        wallet_node.add_unrelated(450)  # reconciliation pages through 200-entry pages
        txid = await wallet.send_many({ADDR["bob"]: 100_000, ADDR["alice"]: 123_456_789},
                                      "qazpool payout pay-1")
        body = wallet_node.raw_bodies[-1]
        # amounts are JSON numbers written from exact decimals, never through a float
        assert (f'"{ADDR["alice"]}":1.23456789' in body
                and f'"{ADDR["bob"]}":0.00100000' in body), body
        assert '"sendmany"' in body and ',1,"qazpool payout pay-1"]' in body
        wallet_node.add_unrelated(3)
        assert await wallet.find_by_comment("qazpool payout pay-1") == txid
        assert await wallet.find_by_comment("qazpool payout pay-2") is None
        assert await wallet.confirmations(txid) == 0
        wallet_node.height += 2
        assert await wallet.confirmations(txid) == 2
        with pytest.raises(PaymentRejected, match="Insufficient funds"):
            await wallet.send_many({ADDR["alice"]: 50 * 100_000_000}, "qazpool payout pay-3")
        with pytest.raises(PaymentRejected, match="Invalid Bitcoin address"):
            await wallet.send_many({"xyz": 1000}, "qazpool payout pay-4")
    finally:
        await client.close()


class MemoryAddresses:
    async def __call__(self, at: datetime) -> dict[str, str]:
        return {"alice": ADDR["alice"], "bob": ADDR["bob"]}


async def test_lost_reply_is_reconciled_not_resent(engine, wallet_node):
    """sendmany commits but the reply is lost: the batch stays pending; the next run finds the
    transaction by its comment and records it, without a second sendmany."""
    from payouts.ledger import EntryKind, LedgerEntry

    await Ledger(engine).append([
        LedgerEntry("credit:x:0:alice", EntryKind.CREDIT, "alice", 300_000, block_hash="x"),
        LedgerEntry("credit:x:0:bob", EntryKind.CREDIT, "bob", 200_000, block_hash="x"),
    ])  # fmt: skip
    outbox = SqlPaymentOutbox(engine, MemoryAddresses())
    client = WalletNodeClient(wallet_node.url, timeout=2.0)
    wallet = NodeWallet(client)
    params = PayoutParams(min_payout_sats=100_000)
    now = datetime.now(UTC)
    try:
        wallet_node.drop_after_send = True
        with pytest.raises(NodeUnavailable):
            await run_payments(outbox, wallet, params, now)
        (batch,) = await outbox.unfinished()
        assert batch.status is PaymentStatus.PENDING and len(wallet_node.sent) == 1
        await run_payments(outbox, wallet, params, now)
        (batch,) = await outbox.all_batches()
        assert batch.status is PaymentStatus.BROADCAST and len(wallet_node.sent) == 1
        assert batch.txid == wallet_node.txs[0]["txid"]
        wallet_node.height += 1
        await run_payments(outbox, wallet, params, now)
        (batch,) = await outbox.all_batches()
        assert batch.status is PaymentStatus.CONFIRMED and len(wallet_node.sent) == 1
        # the fee gettransaction reports (-0.0000141 BTC) is booked to the pool (policy "pool")
        assert (await Ledger(engine).balances()) == {"alice": 0, "bob": 0, "@pool": -1410}
        assert batch.fee_sats == 1410
    finally:
        await client.close()


POOL = DEFAULT_POOL_ADDRESS  # the embedded chain's default coinbase address
NOBODY = "mfoA4eYuzEFAU94bkMKPH6UF3i5qcw7zJ8"  # blocks by the rest of the network pay here


def funded_chain(blocks: int = 1) -> EmbeddedChain:
    """``blocks`` pool coinbases (50 BTC each), then 100 network blocks: all mature (depth 101)."""
    chain = EmbeddedChain("regtest")
    chain.generatetoaddress(blocks, POOL)
    chain.generatetoaddress(100, NOBODY)
    return chain


async def test_embedded_wallet_records_real_transactions(tmp_path):
    chain = funded_chain()
    path = tmp_path / "wallet.jsonl"
    wallet = EmbeddedWallet(chain, path)
    outputs = {ADDR["alice"]: 150_000, ADDR["bob"]: 2_000_000}
    txid = await wallet.send_many(outputs, "qazpool payout pay-a")
    (rec,) = wallet.recorded()
    tx = parse_tx(bytes.fromhex(rec.raw))
    assert tx.txid[::-1].hex() == txid == rec.txid
    paid = sorted((o.value, o.script) for o in tx.outputs if o.script != wallet.pool_script)
    assert paid == sorted((v, address_to_script(a, "regtest")) for a, v in outputs.items())
    # survives a restart: a new instance reads the file
    again = EmbeddedWallet(chain, path)
    assert await again.find_by_comment("qazpool payout pay-a") == txid
    assert await again.find_by_comment("qazpool payout pay-b") is None
    assert await again.confirmations(txid) == 0
    chain.generatetoaddress(3, NOBODY)
    assert await again.confirmations(txid) == 3
    with pytest.raises(PaymentRejected, match=r"(?i)invalid address"):
        await again.send_many({"tb1qnotregtest": 1000}, "qazpool payout pay-c")
    # like sendmany, a second send with the same comment is a second transaction (so a test
    # reading the file sees any double payment)
    second = await again.send_many(outputs, "qazpool payout pay-a")
    assert second != txid and len(again.recorded()) == 2
    # a torn last line (crash mid-write) is skipped: that send never happened
    with path.open("a") as fh:
        fh.write('{"comment": "qazpool payout pay-d", "tx')
    assert len(again.recorded()) == 2
    assert await again.find_by_comment("qazpool payout pay-d") is None
    third = await again.send_many(outputs, "qazpool payout pay-e")
    assert [r.txid for r in again.recorded()] == [txid, second, third]


async def test_embedded_wallet_tracks_coins_maturity_change_and_fee(tmp_path):
    """Coins are the chain's coinbases to the pool address (spendable at depth 101, like
    Bitcoin Core), change comes back, spent coins go, the fee is rate x vsize; all of it
    survives a restart. The old wallet invented its inputs: it had no balance at all."""
    chain = EmbeddedChain("regtest")
    chain.generatetoaddress(2, POOL)  # heights 1, 2: 50 BTC each
    chain.generatetoaddress(99, NOBODY)  # tip 101: height 1 at depth 101, height 2 at 100
    wallet = EmbeddedWallet(chain, tmp_path / "w.jsonl", fee_rate_sat_vb=3)
    coin, coin2 = (chain.blocks[chain.main[h]].coinbase_value for h in (1, 2))  # 50 BTC + fees
    assert await wallet.balances() == WalletBalance(spendable=coin, immature=coin2)
    # only the mature coin can fund a payment: more than it holds is refused as underfunded
    with pytest.raises(WalletUnderfunded):
        await wallet.send_many({ADDR["alice"]: coin + 1}, "qazpool payout too-much")
    assert wallet.recorded() == []
    txid = await wallet.send_many({ADDR["alice"]: 1_000_000, ADDR["bob"]: 2_000_000},
                                  "qazpool payout p1")
    (rec,) = wallet.recorded()
    tx = parse_tx(bytes.fromhex(rec.raw))
    vsize = -(-tx.weight // 4)
    assert rec.fee == 3 * vsize == await wallet.transaction_fee(txid)
    assert len(tx.inputs) == 1 and tx.inputs[0].witness  # one real segwit input
    change = [o.value for o in tx.outputs if o.script == wallet.pool_script]
    assert change == [coin - 3_000_000 - rec.fee]
    balance = await wallet.balances()
    assert balance == WalletBalance(spendable=change[0], immature=coin2)
    # the input coin is spent: the change (own, trusted) funds the next payment
    await wallet.send_many({ADDR["alice"]: 40 * 100_000_000}, "qazpool payout p2")
    assert len({(i.prev_txid, i.prev_index) for r in wallet.recorded()
                for i in parse_tx(bytes.fromhex(r.raw)).inputs}) == 2  # nothing spent twice
    chain.generatetoaddress(1, NOBODY)  # height 2's coinbase matures
    after = await wallet.balances()
    assert after.immature == 0
    fees = sum(r.fee for r in wallet.recorded())
    assert after.total == coin + coin2 - 3_000_000 - 40 * 100_000_000 - fees
    # a restart recomputes the same coins from the chain and the file
    assert await EmbeddedWallet(chain, tmp_path / "w.jsonl").balances() == after


async def test_embedded_wallet_refuses_dust_and_subtracts_the_fee(tmp_path):
    chain = funded_chain()
    wallet = EmbeddedWallet(chain, tmp_path / "w.jsonl")
    with pytest.raises(PaymentRejected, match="dust"):
        await wallet.send_many({ADDR["alice"]: 545, ADDR["bob"]: 100_000}, "qazpool payout d")
    assert wallet.recorded() == []
    outputs = {ADDR["alice"]: 100_001, ADDR["bob"]: 200_000}
    txid = await wallet.send_many(outputs, "qazpool payout s", subtract_fee=True)
    (rec,) = wallet.recorded()
    fee = await wallet.transaction_fee(txid)
    assert rec.outputs == subtracted(outputs, fee)
    assert sum(rec.outputs.values()) + fee == sum(outputs.values())
    total_before = chain.blocks[chain.main[1]].coinbase_value
    assert (await wallet.balances()).total == total_before - sum(outputs.values())


async def test_node_wallet_reads_fee_and_balances_exactly(wallet_node):
    client = WalletNodeClient(wallet_node.url)
    wallet = NodeWallet(client)
    try:
        txid = await wallet.send_many({ADDR["alice"]: 100_000, ADDR["bob"]: 200_000},
                                      "qazpool payout f1", subtract_fee=True)
        assert wallet_node.subtract_from[-1] == sorted([ADDR["alice"], ADDR["bob"]])
        assert await wallet.transaction_fee(txid) == 1410
        balance = await wallet.balances()
        assert balance.immature == 12 * 100_000_000 + 50_000_000
        assert balance.spendable == wallet_node.balance
        with pytest.raises(WalletUnderfunded):
            await wallet.send_many({ADDR["alice"]: 50 * 100_000_000}, "qazpool payout f2")
    finally:
        await client.close()


@given(st.integers(0, 21 * 10**14))
def test_sats_from_btc_is_exact(sats):
    as_float = float(Decimal(sats) / 100_000_000)
    assert sats_from_btc(json.loads(json.dumps(as_float)), "x") == sats
    assert sats_from_btc(Decimal(sats) / 100_000_000, "x") == sats


def test_sats_from_btc_refuses_sub_satoshi_amounts():
    with pytest.raises(ValueError, match=r"fee: .* more than 8 decimal"):
        sats_from_btc(0.000000001, "fee")
