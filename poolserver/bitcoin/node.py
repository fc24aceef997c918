"""JSON-RPC client for Bitcoin Core (HTTP/1.1 keep-alive via aiohttp), one or several nodes.

API::

    client = NodeClient("http://127.0.0.1:18443", cookie_file="~/.bitcoin/regtest/.cookie")
    info = await client.call("getblockchaininfo")
    nodes = NodeGroup([client, other])        # same call(); fails over on transport errors
    status = await check_node(nodes, "regtest")  # startup check, NodeStartupError with advice
    await nodes.close()

Errors (mapped from the shapes recorded in ``tests/vectors/bitcoind-regtest/error_*.json``):

- ``RpcError(code, message)``: the node answered with an ``error`` object, whatever the HTTP
  status (500 and 404 for JSON-RPC 1.0, 200 for ``"jsonrpc": "2.0"``). ``RpcMethodNotFound``
  for -32601. Codes in ``TRANSIENT_CODES`` (warming up, in IBD, no peers) are
  ``RpcTransientError``: the node is there but cannot serve yet, so ``NodeGroup`` tries the next.
- ``NodeUnavailable``: no usable answer (connection refused, timeout → ``RpcTimeout``, HTTP 401
  → ``RpcAuthError``, a non-JSON body such as bitcoind's 503 "Work queue depth exceeded").

Anything with a ``name`` and an ``async call(method, *params, timeout=None)`` is an ``Rpc``;
the embedded chain implements the same surface, so the template feed and the block submitter
work unchanged against it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

RPC_METHOD_NOT_FOUND = -32601
RPC_IN_WARMUP = -28
RPC_CLIENT_IN_INITIAL_DOWNLOAD = -10
RPC_CLIENT_NOT_CONNECTED = -9
TRANSIENT_CODES = frozenset(
    {RPC_IN_WARMUP, RPC_CLIENT_IN_INITIAL_DOWNLOAD, RPC_CLIENT_NOT_CONNECTED}
)


class NodeUnavailable(Exception):
    """The node gave no usable answer (transport-level); retrying later may help."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"node {node}: {reason}")
        self.node = node
        self.reason = reason


class RpcTimeout(NodeUnavailable):
    pass


class RpcAuthError(NodeUnavailable):
    pass


class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, node: str, method: str, code: int, message: str) -> None:
        super().__init__(f"node {node}: {method} failed: {message} (code {code})")
        self.node = node
        self.method = method
        self.code = code
        self.message = message


class RpcMethodNotFound(RpcError):
    pass


class RpcTransientError(RpcError):
    pass


class NodeStartupError(Exception):
    """The node cannot be used yet; the message says what is wrong and what to check."""


class Rpc(Protocol):
    name: str

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any: ...


def _rpc_error(node: str, method: str, err: Any) -> RpcError:
    if isinstance(err, dict):
        code = err.get("code", 0)
        message = str(err.get("message", ""))
    else:
        code, message = 0, str(err)
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code == RPC_METHOD_NOT_FOUND:
        return RpcMethodNotFound(node, method, code, message)
    if code in TRANSIENT_CODES:
        return RpcTransientError(node, method, code, message)
    return RpcError(node, method, code, message)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _redact(url: str) -> str:
    u = URL(url)
    return str(u.with_user(None)) if u.user or u.password else url


class NodeClient:
    """One bitcoind. Credentials: ``user``/``password``, or ``cookie_file`` (re-read when the
    node answers 401, since bitcoind writes a new cookie at every start)."""

    def __init__(
        self,
        url: str,
        *,
        user: str = "",
        password: str = "",
        cookie_file: str = "",
        timeout: float = 10.0,
        name: str = "",
        jsonrpc: str = "1.0",
    ) -> None:
        self.url = url
        self.jsonrpc = jsonrpc
        self.name = name or _redact(url)
        self.timeout = timeout
        self._user = user
        self._password = password
        self._cookie_file = cookie_file
        self._cookie: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    def _auth(self, reload: bool = False) -> dict[str, str]:
        if self._cookie_file:
            if self._cookie is None or reload:
                path = Path(self._cookie_file).expanduser()
                try:
                    text = path.read_text().strip()
                except OSError as exc:
                    raise RpcAuthError(
                        self.name, f"cannot read cookie file {path}: {exc.strerror or exc}"
                    ) from None
                user, sep, password = text.partition(":")
                if not sep:
                    raise RpcAuthError(self.name, f"cookie file {path} is not 'user:password'")
                self._cookie = _basic(user, password)
            return {"Authorization": self._cookie}
        if self._user or self._password:
            return {"Authorization": _basic(self._user, self._password)}
        return {}

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # keep-alive: one pooled connector per node, connections reused across calls
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, keepalive_timeout=60),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        try:
            return await self._call(method, params, timeout, reload_auth=False)
        except RpcAuthError:
            if not self._cookie_file:
                raise
            return await self._call(method, params, timeout, reload_auth=True)

    async def _call(
        self, method: str, params: Sequence[Any], timeout: float | None, reload_auth: bool
    ) -> Any:
        request_id = next(self._ids)
        payload = {
            "jsonrpc": self.jsonrpc,
            "id": request_id,
            "method": method,
            "params": list(params),
        }
        limit = self.timeout if timeout is None else timeout
        session = self._session_for_loop()
        try:
            async with session.post(
                self.url,
                json=payload,
                headers=self._auth(reload=reload_auth),
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise RpcTimeout(self.name, f"{method} timed out after {limit:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise NodeUnavailable(self.name, f"cannot connect: {exc.os_error or exc}") from None
        except aiohttp.ClientError as exc:
            raise NodeUnavailable(self.name, f"{method}: {type(exc).__name__}: {exc}") from None
        if status in (401, 403):
            how = "cookie file " + self._cookie_file if self._cookie_file else "rpcuser/rpcpassword"
            raise RpcAuthError(
                self.name, f"HTTP {status}: the node refused our credentials ({how})"
            )
        try:
            reply = json.loads(body)
        except ValueError:
            snippet = body[:200].decode("utf-8", "replace").strip()
            raise NodeUnavailable(
                self.name, f"{method}: HTTP {status}, not JSON: {snippet!r}"
            ) from None
        if not isinstance(reply, dict):
            raise NodeUnavailable(self.name, f"{method}: HTTP {status}, reply is not an object")
        if reply.get("error") is not None:
            raise _rpc_error(self.name, method, reply["error"])
        if status != 200:
            raise NodeUnavailable(self.name, f"{method}: HTTP {status} without an error object")
        if "result" not in reply:
            raise NodeUnavailable(self.name, f"{method}: reply has neither result nor error")
        if reply.get("id") != request_id:
            raise NodeUnavailable(
                self.name, f"{method}: reply id {reply.get('id')!r} != {request_id}"
            )
        return reply["result"]


class NodeGroup:
    """Several nodes behind one ``call``: sticks to the last node that answered and moves on to
    the next when one is unavailable. ``members`` is there for calls that must reach every node
    (``submitblock``)."""

    def __init__(self, members: Sequence[Rpc]) -> None:
        if not members:
            raise ValueError("NodeGroup needs at least one node")
        self.members = list(members)
        self._preferred = 0
        self.name = ",".join(m.name for m in self.members)

    @property
    def preferred(self) -> Rpc:
        return self.members[self._preferred]

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        errors: list[str] = []
        n = len(self.members)
        for step in range(n):
            i = (self._preferred + step) % n
            node = self.members[i]
            try:
                result = await node.call(method, *params, timeout=timeout)
            except (NodeUnavailable, RpcTransientError) as exc:
                errors.append(str(exc))
                if n > 1:
                    log.warning("%s; trying the next node", exc)
                continue
            if i != self._preferred:
                log.warning("failing over to node %s", node.name)
                self._preferred = i
            return result
        raise NodeUnavailable(self.name, "no node answered: " + "; ".join(errors))

    async def close(self) -> None:
        for m in self.members:
            close = getattr(m, "close", None)
            if close is not None:
                await close()


_CHAIN_ALIASES = {
    "main": {"main"},
    "test": {"test", "testnet4"},
    "signet": {"signet"},
    "regtest": {"regtest"},
}


async def check_node(rpc: Rpc, network: str) -> dict[str, Any]:
    """``getblockchaininfo`` startup check. Returns the info; raises ``NodeStartupError`` when
    the node is unreachable, on another chain, or still in initial block download."""
    try:
        info = await rpc.call("getblockchaininfo")
    except RpcAuthError as exc:
        raise NodeStartupError(f"bitcoind refused our login: {exc}") from None
    except NodeUnavailable as exc:
        raise NodeStartupError(
            f"cannot reach bitcoind ({exc}); is it running, with server=1 and the RPC port "
            "reachable (rpcbind/rpcallowip)?"
        ) from None
    except RpcTransientError as exc:
        raise NodeStartupError(f"bitcoind is not ready yet: {exc.message}") from None
    if not isinstance(info, dict):
        raise NodeStartupError(f"getblockchaininfo returned {type(info).__name__}, not an object")
    chain = info.get("chain")
    if chain not in _CHAIN_ALIASES.get(network, {network}):
        raise NodeStartupError(
            f"bitcoind is on chain {chain!r} but the pool is configured for {network!r} "
            "([chain].network and the payout address must match the node)"
        )
    if info.get("initialblockdownload"):
        progress = float(info.get("verificationprogress", 0.0)) * 100
        raise NodeStartupError(
            f"bitcoind is still syncing (initial block download): block {info.get('blocks')} "
            f"of {info.get('headers')} headers, {progress:.2f}% verified; the pool starts "
            "when it has caught up"
        )
    warnings = info.get("warnings") or []
    for w in [warnings] if isinstance(warnings, str) else warnings:
        if w:
            log.warning("bitcoind warning: %s", w)
    return info


async def wait_until_ready(
    rpc: Rpc, network: str, retry_s: float = 5.0, attempts: int | None = None
) -> dict[str, Any]:
    """``check_node`` until it passes, logging each reason once per change."""
    last = ""
    n = 0
    while True:
        try:
            return await check_node(rpc, network)
        except NodeStartupError as exc:
            n += 1
            if "configured for" in str(exc) or (attempts is not None and n >= attempts):
                raise
            if str(exc) != last:
                log.error("%s (retrying every %g s)", exc, retry_s)
                last = str(exc)
            await asyncio.sleep(retry_s)
