"""Node client against a real HTTP server on loopback replaying recorded bitcoind answers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from poolserver.bitcoin.node import (
    NodeClient,
    NodeGroup,
    NodeStartupError,
    NodeUnavailable,
    RpcAuthError,
    RpcError,
    RpcMethodNotFound,
    RpcTimeout,
    check_node,
)
from tests.conftest import load_fixture, wait_until
from tests.fake_bitcoind import FakeBitcoind


@pytest.fixture
async def node():
    fake = await FakeBitcoind().start()
    yield fake
    await fake.stop()


def _client(fake: FakeBitcoind, **kw) -> NodeClient:
    kw.setdefault("user", fake.user)
    kw.setdefault("password", fake.password)
    return NodeClient(fake.url, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_call_returns_result_and_reuses_connection(node):
    c = _client(node)
    try:
        info = await c.call("getblockchaininfo")
        assert info == load_fixture("getblockchaininfo.json")
        gbt = await c.call("getblocktemplate", {"rules": ["segwit"]})
        assert gbt == load_fixture("getblocktemplate_with_txs.json")
        connector = c._session.connector  # type: ignore[union-attr]
        assert len(connector._conns) == 1  # keep-alive: one pooled connection, reused
    finally:
        await c.close()


async def test_cookie_auth_and_reload_after_node_restart(node, tmp_path):
    cookie = tmp_path / ".cookie"
    node.user, node.password = "__cookie__", "first"
    cookie.write_text("__cookie__:first")
    c = NodeClient(node.url, cookie_file=str(cookie))
    try:
        assert (await c.call("getblockchaininfo"))["chain"] == "regtest"
        node.password = "second"  # bitcoind restarted and wrote a new cookie
        cookie.write_text("__cookie__:second")
        assert (await c.call("getblockchaininfo"))["chain"] == "regtest"
    finally:
        await c.close()


async def test_missing_cookie_file_is_named(node, tmp_path):
    c = NodeClient(node.url, cookie_file=str(tmp_path / "nope"))
    with pytest.raises(RpcAuthError, match=r"cannot read cookie file .*nope"):
        await c.call("getblockchaininfo")
    await c.close()


async def test_wrong_password_is_401(node):
    c = _client(node, password="wrong")
    with pytest.raises(RpcAuthError, match=r"HTTP 401.*rpcuser/rpcpassword"):
        await c.call("getblockchaininfo")
    await c.close()


async def test_http_500_error_object(node):
    c = _client(node)
    with pytest.raises(RpcError) as err:
        await c.call("getblocktemplate", {})
    rec = load_fixture("error_getblocktemplate_without_segwit.json")["response"]["error"]
    assert err.value.code == rec["code"] == -8
    assert err.value.message == rec["message"]
    await c.close()


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_method_not_found_404_and_jsonrpc2_200(node, version):
    c = _client(node, jsonrpc=version)
    with pytest.raises(RpcMethodNotFound) as err:
        await c.call("nosuchmethod")
    assert err.value.code == -32601 and err.value.message == "Method not found"
    await c.close()


async def test_timeout(node):
    node.delay = 1.0
    c = _client(node, timeout=0.1)
    with pytest.raises(RpcTimeout, match=r"timed out after 0.1 s"):
        await c.call("getblockchaininfo")
    node.delay = 0
    assert await c.call("getblockchaininfo", timeout=5)
    await c.close()


async def test_connection_refused():
    c = NodeClient(f"http://127.0.0.1:{_free_port()}/", user="u", password="p")
    with pytest.raises(NodeUnavailable, match="cannot connect"):
        await c.call("getblockchaininfo")
    await c.close()


async def test_non_json_503_is_unavailable():
    from aiohttp import web

    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=503, text="Work queue depth exceeded")

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    c = NodeClient(f"http://127.0.0.1:{port}/")
    try:
        with pytest.raises(NodeUnavailable, match="HTTP 503, not JSON: 'Work queue depth"):
            await c.call("getblockchaininfo")
    finally:
        await c.close()
        await runner.cleanup()


async def test_failover_across_nodes(node):
    dead = NodeClient(f"http://127.0.0.1:{_free_port()}/", user="u", password="p")
    group = NodeGroup([dead, _client(node)])
    try:
        assert (await group.call("getblockchaininfo"))["chain"] == "regtest"
        assert group.preferred.name == node.url
        with pytest.raises(RpcMethodNotFound):  # an answer from a node is not failed over
            await group.call("nosuchmethod")
        await node.down()
        with pytest.raises(NodeUnavailable, match="no node answered"):
            await group.call("getblockchaininfo")
        await node.up()
        assert (await group.call("getblockchaininfo"))["blocks"] == 114
    finally:
        await group.close()


async def test_longpoll_wakes_on_new_block(node):
    c = _client(node)
    try:
        first = await c.call("getblocktemplate", {"rules": ["segwit"]})
        task = asyncio.create_task(
            c.call(
                "getblocktemplate",
                {"rules": ["segwit"], "longpollid": first["longpollid"]},
                timeout=10,
            )
        )
        await wait_until(lambda: node.longpolls_held == 1)  # the node holds the long poll
        assert not task.done()
        node.new_block()
        second = await asyncio.wait_for(task, 5)
        assert second["height"] == first["height"] + 1
        assert second["previousblockhash"] == load_fixture("solved_block_case.json")["block_hash"]
    finally:
        await c.close()


async def test_startup_check_messages(node):
    c = _client(node)
    try:
        info = await check_node(c, "regtest")
        assert info["blocks"] == 114
        with pytest.raises(NodeStartupError, match="chain 'regtest' but the pool is configured"):
            await check_node(c, "main")
        node.chain_info = {
            **node.chain_info,
            "initialblockdownload": True,
            "verificationprogress": 0.5,
            "headers": 900,
        }
        with pytest.raises(NodeStartupError, match=r"still syncing.*114 of 900.*50\.00%"):
            await check_node(c, "regtest")
    finally:
        await c.close()
    dead = NodeClient(f"http://127.0.0.1:{_free_port()}/")
    with pytest.raises(NodeStartupError, match=r"cannot reach bitcoind.*rpcallowip"):
        await check_node(dead, "regtest")
    await dead.close()
