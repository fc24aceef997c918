"""One node shared by several pool instances, for the scale-out test: a loopback JSON-RPC server
in its own process with bitcoind's method names and answer shapes, backed by the embedded
regtest chain (real blocks, proof of work checked, long polling) and the embedded wallet (real
signed transactions, coinbase maturity, fees), the one allowed fake since bitcoind cannot run
here.

    python -m tests.shared_node STATE_DIR PORT BITS_HEX

Chain methods are the embedded chain's (``getblocktemplate`` with ``longpollid``,
``submitblock``, ``getblock``, ...). Wallet methods answer as Bitcoin Core's wallet does
(amounts as exact decimal BTC): ``sendmany "" {addr: btc} minconf comment [subtractfeefrom]``,
``listtransactions "*" count skip true`` (category ``send`` entries with the comment),
``gettransaction txid`` (``fee`` negative, ``confirmations``), ``getbalances`` (``mine``).
Insufficient funds: code -6 as Core. At start the pool's address gets 20 coinbases matured by
100 blocks of others (the float, recorded by the test as the operator's deposit); the rest of
the network then finds a block every ~2 s so rewards mature.

Test controls: ``test_hold_sendmany [mode]`` holds the next ``sendmany`` either ``before`` it is
executed (the request reached the node; if the caller dies meanwhile nothing is sent, as when a
process dies before its request went out) or ``after`` (the transaction is sent and recorded,
the reply withheld: the caller never learns the txid). The node prints ``HELD <mode> <comment>``
on stdout and keeps holding until the caller's connection closes or 60 s pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from payouts.payments import PaymentRejected, WalletUnderfunded
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.node import RpcError
from poolserver.bitcoin.wallet import DEFAULT_POOL_ADDRESS, EmbeddedWallet
from stratum.address import address_to_script
from tests.payout_support import OTHER_MINER

USER, PASSWORD = "pool", "secret"
COIN = 100_000_000
FLOAT_BLOCKS = 20  # coinbases to the pool's address before the pool starts: its float


def _sats(value: Any) -> int:
    return int(Decimal(str(value)) * COIN)


def btc_amount(sats: int) -> Decimal:
    """Satoshis as bitcoind writes BTC (8 decimals, zero and negatives included)."""
    return (Decimal(sats) / COIN).quantize(Decimal("0.00000001"))


class SharedNode:
    def __init__(self, state: Path, bits: int) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.chain = EmbeddedChain("regtest", bits=bits, state_path=state / "chain.jsonl")
        if self.chain.height == 0:
            self.chain.generatetoaddress(FLOAT_BLOCKS, DEFAULT_POOL_ADDRESS)
            self.chain.generatetoaddress(100, OTHER_MINER)
        self.wallet = EmbeddedWallet(self.chain, state / "wallet.jsonl")
        self.hold: str | None = None

    async def wallet_call(self, request: web.Request, method: str, params: list[Any]) -> Any:
        if method == "sendmany":
            outputs = {a: _sats(v) for a, v in params[1].items()}
            comment = params[3]
            subtract = bool(params[4]) if len(params) > 4 else False
            mode, self.hold = self.hold, None
            if mode == "before" and not await self._held(request, mode, comment):
                return None  # the caller died before its request counted: nothing sent
            try:
                txid = await self.wallet.send_many(outputs, comment, subtract)
            except WalletUnderfunded as exc:
                raise RpcError("node", method, -6, str(exc)) from None
            except PaymentRejected as exc:
                raise RpcError("node", method, -3, str(exc)) from None
            if mode == "after":
                await self._held(request, mode, comment)
            return txid
        if method == "listtransactions":
            count, skip = int(params[1]), int(params[2])
            entries = [{"address": next(iter(r.outputs), ""), "category": "send",
                        "amount": -btc_amount(sum(r.outputs.values())),
                        "fee": -btc_amount(r.fee), "txid": r.txid, "comment": r.comment}
                       for r in self.wallet.recorded()]  # fmt: skip
            return entries[::-1][skip:skip + count][::-1]  # newest last, paged from the newest
        if method == "gettransaction":
            for r in self.wallet.recorded():
                if r.txid == params[0]:
                    return {"txid": r.txid, "fee": -btc_amount(r.fee), "comment": r.comment,
                            "confirmations": await self.wallet.confirmations(r.txid)}
            raise RpcError("node", method, -5, "Invalid or non-wallet transaction id")
        if method == "getbalances":
            b = self.wallet.balance()
            return {"mine": {"trusted": btc_amount(b.spendable),
                             "untrusted_pending": btc_amount(b.pending),
                             "immature": btc_amount(b.immature)}}  # fmt: skip
        if method == "test_hold_sendmany":
            self.hold = params[0] if params else "before"
            return self.hold
        raise KeyError(method)

    async def _held(self, request: web.Request, mode: str, comment: str) -> bool:
        """Hold the request; False when the caller went away meanwhile."""
        print(f"HELD {mode} {comment}", flush=True)
        for _ in range(600):
            await asyncio.sleep(0.1)
            transport = request.transport
            if transport is None or transport.is_closing():
                print(f"GONE {mode} {comment}", flush=True)
                return False
        return True

    async def handle(self, request: web.Request) -> web.Response:
        req = json.loads(await request.read(), parse_float=Decimal)
        method, params, rid = req["method"], req.get("params", []), req.get("id")
        try:
            if method in ("sendmany", "listtransactions", "gettransaction", "getbalances",
                          "test_hold_sendmany"):  # fmt: skip
                result = await self.wallet_call(request, method, params)
            else:
                result = await self.chain.call(method, *params)
            body: dict[str, Any] = {"result": result, "error": None, "id": rid}
            status = 200
        except RpcError as exc:
            body = {"result": None, "error": {"code": exc.code, "message": exc.message},
                    "id": rid}  # fmt: skip
            status = 404 if exc.code == -32601 else 500
        # amounts as bitcoind writes them: numbers with <= 8 decimals (the pool's parser reads
        # the float's shortest repr, which is exactly these digits)
        text = json.dumps(body, default=lambda d: float(d) if isinstance(d, Decimal) else str(d))
        return web.Response(text=text, status=status, content_type="application/json")


async def main(state: Path, port: int, bits: int) -> None:
    node = SharedNode(state, bits)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/", node.handle)
    app.router.add_post("/wallet/{name}", node.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"READY {node.chain.height}", flush=True)
    await node.chain.run_other_miners(2.0, address_to_script(OTHER_MINER, "regtest"))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3], 16)))
