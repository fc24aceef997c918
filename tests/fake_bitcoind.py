"""A loopback HTTP server that answers like bitcoind, replaying the recorded responses in
``tests/vectors/bitcoind-regtest/`` (the one allowed fake: bitcoind cannot run here).

Replies are the recorded objects with only ``id`` replaced by the request's; the recorded
HTTP status goes with each error shape. Controls for tests: ``delay`` (slow node),
``down()``/``up()`` (connection refused while down), ``new_block()`` (wakes longpolls and
switches to the next recorded template), ``credentials``/``cookie``.

Blocks it accepts (``submit_result`` None) join its chain on top of the recorded template's
parent, at the height their coinbase's BIP34 push names, and are served by ``getblockcount``,
``getblockhash`` and ``getblock`` (verbosity 0, 1, 2) in Bitcoin Core's shapes (the recorded
``solved_block_case.json`` ``getblock_verbose``; amounts as BTC numbers); an unknown height or
hash gets bitcoind's error (-8 "Block height out of range", -5 "Block not found", HTTP 500).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from poolserver.bitcoin.embedded_chain import tx_json
from stratum.difficulty import DIFF1, target_from_nbits
from stratum.tx import parse_block
from tests.conftest import load_fixture


class FakeBitcoind:
    def __init__(self, user: str = "pool", password: str = "secret") -> None:
        self.user = user
        self.password = password
        self.templates = [
            load_fixture("getblocktemplate_with_txs.json"),
            load_fixture("getblocktemplate_empty_mempool.json"),
        ]
        self.tip = 0
        self.delay = 0.0
        self.calls: list[tuple[str, list[Any]]] = []
        self.submitted: list[str] = []
        self.submit_result: Any = None
        self.chain_info: dict[str, Any] = load_fixture("getblockchaininfo.json")
        self.longpolls_held = 0  # getblocktemplate long polls parked right now
        self.chain: dict[int, str] = {}  # height -> hash of the blocks it accepted
        self.block_raw: dict[str, tuple[int, bytes]] = {}  # hash -> (height, raw block)
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def template(self) -> dict[str, Any]:
        return self.templates[min(self.tip, len(self.templates) - 1)]

    async def start(self, port: int = 0) -> FakeBitcoind:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", port or self.port)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def down(self) -> None:
        """Like bitcoind dying: parked long polls lose their connection, new ones are refused."""
        assert self._runner is not None
        self._closing.set()
        await self._runner.cleanup()
        self._runner = None

    async def up(self) -> None:
        await self.start(self.port)

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def new_block(self) -> None:
        self.tip += 1
        self._changed.set()
        self._changed = asyncio.Event()

    @staticmethod
    def _reply(obj: dict[str, Any], status: int, request_id: Any) -> web.Response:
        body = dict(obj)
        body["id"] = request_id
        return web.Response(
            body=(json.dumps(body) + "\n").encode(), status=status, content_type="application/json"
        )

    def _recorded(self, name: str, request_id: Any) -> web.Response:
        rec = load_fixture(name)
        return self._reply(rec["response"], rec["http_status"], request_id)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            # bitcoind: 401 with an empty body and a WWW-Authenticate header
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        body = await request.read()
        req = json.loads(body)
        method, params, rid = req["method"], req.get("params", []), req.get("id")
        self.calls.append((method, params))
        if self.delay:
            await asyncio.sleep(self.delay)
        if method == "getblockchaininfo":
            return self._reply({"result": self.chain_info, "error": None}, 200, rid)
        if method == "getblocktemplate":
            opts = params[0] if params else {}
            if "segwit" not in opts.get("rules", []):
                return self._recorded("error_getblocktemplate_without_segwit.json", rid)
            lp = opts.get("longpollid")
            if lp is not None and lp == self.template["longpollid"]:
                changed = asyncio.ensure_future(self._changed.wait())
                closing = asyncio.ensure_future(self._closing.wait())
                self.longpolls_held += 1
                try:
                    await asyncio.wait({changed, closing}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self.longpolls_held -= 1
                changed.cancel()
                closing.cancel()
                if self._closing.is_set():
                    assert request.transport is not None
                    request.transport.close()  # connection dropped mid-request
                    return web.Response(status=500)
            return self._reply({"result": self.template, "error": None}, 200, rid)
        if method == "submitblock":
            self.submitted.append(params[0])
            if self.submit_result is None:
                self._connect(params[0])
            return self._reply({"result": self.submit_result, "error": None}, 200, rid)
        if method == "getblockcount":
            return self._reply({"result": self._count(), "error": None}, 200, rid)
        if method == "getblockhash":
            h = params[0] if params else None
            if h not in self.chain:
                return self._error(-8, "Block height out of range", rid)
            return self._reply({"result": self.chain[h], "error": None}, 200, rid)
        if method == "getblock":
            found = self.block_raw.get(params[0]) if params else None
            if found is None:
                return self._error(-5, "Block not found", rid)
            verbosity = params[1] if len(params) > 1 else 1
            return self._reply({"result": self._getblock(params[0], *found, verbosity),
                                "error": None}, 200, rid)  # fmt: skip
        if req.get("jsonrpc") == "2.0":
            return self._recorded("error_unknown_method_jsonrpc2.json", rid)
        return self._recorded("error_unknown_method.json", rid)

    # ---- the chain of accepted blocks -----------------------------------------------------
    def _error(self, code: int, message: str, rid: Any) -> web.Response:
        return self._reply({"result": None, "error": {"code": code, "message": message}}, 500,
                           rid)  # fmt: skip

    def _count(self) -> int:
        return max(self.chain, default=int(self.templates[0]["height"]) - 1)

    def _connect(self, block_hex: str) -> None:
        raw = bytes.fromhex(block_hex)
        block = parse_block(raw)
        push = block.txs[0].inputs[0].script_sig
        n = push[0]  # BIP34: a minimal push of the height (OP_1..OP_16 for 1..16)
        height = int.from_bytes(push[1 : 1 + n], "little") if 1 <= n <= 8 else n - 0x50
        block_hash = block.hash[::-1].hex()
        self.chain[height] = block_hash
        self.block_raw[block_hash] = (height, raw)

    def _getblock(self, block_hash: str, height: int, raw: bytes, verbosity: int) -> Any:
        if verbosity == 0:
            return raw.hex()
        block = parse_block(raw)
        target = target_from_nbits(block.bits)
        txs = [tx_json(t) for t in block.txs]
        out: dict[str, Any] = {
            "hash": block_hash,
            "confirmations": self._count() - height + 1,
            "height": height,
            "version": block.version,
            "versionHex": f"{block.version:08x}",
            "merkleroot": block.merkle_root[::-1].hex(),
            "time": block.time,
            "nonce": block.nonce,
            "bits": f"{block.bits:08x}",
            "target": f"{target:064x}",
            "difficulty": DIFF1 / target,
            "nTx": len(block.txs),
            "previousblockhash": block.prevhash[::-1].hex(),
            "size": len(raw),
            "tx": txs if verbosity == 2 else [t["txid"] for t in txs],
        }
        if height + 1 in self.chain:
            out["nextblockhash"] = self.chain[height + 1]
        return out
