"""The API's route handlers: parse and check parameters (``params``), check the token where
one is needed (``tokens``), read (``queries``), answer JSON. Nothing here writes."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.config import WebConfig
from poolserver.web import params, queries
from poolserver.web.openapi import openapi_schema
from poolserver.web.tokens import WebTokens, regulator_ok

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The same answer for an unknown account and a wrong token: no way to tell which.
NOT_FOUND_OR_DENIED = {
    "error": "not_found",
    "detail": "no such account, or the read token is not valid for it",
}


@dataclass
class WebContext:
    """What the handlers read: the database, the pool's live figures and the settings."""

    engine: AsyncEngine
    config: WebConfig
    pool_name: str
    pplns_k: str
    default_fee_bps: int
    figures: Callable[[], queries.PoolFigures]
    regulator_sha256: str
    network: str
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # public answers (pool, hashrate, blocks) are the same for everyone: kept this long, so a
    # crowd of visitors costs the database one read per URL every few seconds
    cache_s: float = 5.0
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict)


CTX = web.AppKey("ctx", WebContext)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


CACHE_KEYS = 1000


async def cached(request: web.Request, read: Callable[[], Awaitable[Any]]) -> Any:
    """``read()``'s answer for this URL, reused for ``cache_s`` seconds (public data only)."""
    ctx = request.app[CTX]
    key, now = request.path_qs, time.monotonic()
    hit = ctx.cache.get(key)
    if hit is not None and now - hit[0] < ctx.cache_s:
        return hit[1]
    body = await read()
    if len(ctx.cache) >= CACHE_KEYS:
        ctx.cache.clear()
    ctx.cache[key] = (now, body)
    return body


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(detail: str) -> web.Response:
    resp = ok({"error": "unauthorized", "detail": detail}, 401)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="qazpool"'
    return resp


async def pool(request: web.Request) -> web.Response:
    params.known_only(request.query, ())
    ctx = request.app[CTX]

    async def read() -> dict[str, Any]:
        body = await queries.pool_stats(
            ctx.engine, ctx.clock(), window_s=ctx.config.hashrate_window_s,
            pplns_k=ctx.pplns_k, default_fee_bps=ctx.default_fee_bps, figures=ctx.figures(),
        )  # fmt: skip
        return {**body, "name": ctx.pool_name, "languages": list(ctx.config.languages)}

    return ok(await cached(request, read))


async def pool_hashrate(request: web.Request) -> web.Response:
    params.known_only(request.query, ("hours",))
    hours = params.integer(request.query, "hours", 24, 1, 168)
    ctx = request.app[CTX]
    bucket = max(300, hours * 3600 // 96)  # ~96 points, at least 5 minutes each

    async def read() -> dict[str, Any]:
        end_b = (int(ctx.clock().timestamp()) // bucket + 1) * bucket  # the current bucket too
        end_at = datetime.fromtimestamp(end_b, UTC)
        start = end_at - timedelta(hours=hours)
        points = await queries.hashrate_history(ctx.engine, start, end_at, bucket)
        return {"bucket_s": bucket, "points": points}

    return ok(await cached(request, read))


async def blocks(request: web.Request) -> web.Response:
    params.known_only(request.query, ("limit", "cursor"))
    limit, cursor = params.limit(request.query), params.cursor(request.query)

    async def read() -> dict[str, Any]:
        items, nxt = await queries.blocks_page(request.app[CTX].engine, limit, cursor)
        return {"items": items, "next_cursor": None if nxt is None else str(nxt)}

    return ok(await cached(request, read))


def account_route(handler: Callable[[web.Request, str], Awaitable[web.Response]]) -> Handler:
    """The account's own data: 401 without a token; the same 404 for an unknown account and a
    token that is not a live token of that account."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        account = params.account(request.match_info["account"])
        token = _bearer(request)
        if token is None:
            return _unauthorized("send the account's read token: Authorization: Bearer <token>")
        if not await WebTokens(request.app[CTX].engine).check(account, token):
            return ok(NOT_FOUND_OR_DENIED, 404)
        return await handler(request, account)

    return wrapped


@account_route
async def account_workers(request: web.Request, account: str) -> web.Response:
    params.known_only(request.query, ())
    ctx = request.app[CTX]
    items = await queries.workers(ctx.engine, account, ctx.clock(), ctx.config.hashrate_window_s,
                                  ctx.config.worker_history_h)  # fmt: skip
    return ok({"account": account, "hashrate_window_s": ctx.config.hashrate_window_s,
               "items": items})  # fmt: skip


@account_route
async def account_balance(request: web.Request, account: str) -> web.Response:
    params.known_only(request.query, ())
    body = await queries.balance(request.app[CTX].engine, account)
    return ok({"account": account, **body})


@account_route
async def account_payments(request: web.Request, account: str) -> web.Response:
    params.known_only(request.query, ("limit", "cursor"))
    limit, cursor = params.limit(request.query), params.cursor(request.query)
    items, nxt = await queries.payments_page(request.app[CTX].engine, account, limit, cursor)
    return ok({"account": account, "items": items,
               "next_cursor": None if nxt is None else str(nxt)})  # fmt: skip


@account_route
async def account_distributions(request: web.Request, account: str) -> web.Response:
    params.known_only(request.query, ("limit", "cursor", "from", "to"))
    limit = params.limit(request.query)
    offset = params.cursor(request.query) or 0
    rng = params.day_range(request.query, required=False)
    start, end = rng if rng is not None else (None, None)
    rows = await queries.account_distributions(request.app[CTX].engine, account, start, end)
    page = rows[offset : offset + limit]
    more = offset + limit < len(rows)
    return ok({"account": account, "items": [queries.distribution_json(r) for r in page],
               "next_cursor": str(offset + limit) if more else None})  # fmt: skip


def regulator_route(handler: Handler) -> Handler:
    """The regulator's view: 404 while no regulator token is configured, 401 without the token
    or with a wrong one (constant-time comparison of its SHA-256)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CTX]
        if not ctx.regulator_sha256:
            raise web.HTTPNotFound()
        if not regulator_ok(_bearer(request), ctx.regulator_sha256):
            return _unauthorized("send the regulator's read token: Authorization: Bearer <token>")
        return await handler(request)

    return wrapped


async def _register(ctx: WebContext) -> Any:
    from poolserver.register.repository import RegisterRepository

    return await RegisterRepository(ctx.engine, network=ctx.network).snapshot()


def _license_json(snap: Any, account: str, at: datetime) -> dict[str, Any]:
    status = snap.status(account, at)
    lic = status.license
    return {
        "state": status.state.value,
        "number": lic.number if lic else None,
        "issued_on": lic.issued_on.isoformat() if lic else None,
        "expires_on": lic.expires_on.isoformat() if lic else None,
    }


@regulator_route
async def regulator_miners(request: web.Request) -> web.Response:
    params.known_only(request.query, ("from", "to"))
    rng = params.day_range(request.query, required=True)
    assert rng is not None
    start, end = rng
    ctx = request.app[CTX]
    snap = await _register(ctx)
    at = min(ctx.clock(), end)
    workers = await queries.workers_in_range(ctx.engine, start, end)
    dists = await queries.all_distributions(ctx.engine, start, end)
    items = []
    for account, m in sorted(snap.miners.items()):
        rows = dists.get(account, [])
        items.append({
            "account": account, "iin_bin": m.iin_bin, "id_kind": m.kind, "legal_name": m.legal_name,
            "license": _license_json(snap, account, at),
            "workers": len(workers.get(account, [])),
            "distributions": len(rows),
            "net_sats": sum(r.net_sats for r in rows),
        })  # fmt: skip
    return ok({"from": queries.iso(start), "to": queries.iso(end), "items": items})


@regulator_route
async def regulator_miner(request: web.Request) -> web.Response:
    params.known_only(request.query, ("from", "to"))
    account = params.account(request.match_info["account"])
    rng = params.day_range(request.query, required=True)
    assert rng is not None
    start, end = rng
    ctx = request.app[CTX]
    snap = await _register(ctx)
    miner = snap.miners.get(account)
    if miner is None:
        raise web.HTTPNotFound()
    at = min(ctx.clock(), end)
    workers = await queries.workers_in_range(ctx.engine, start, end, account)
    history = await queries.hashrate_history(ctx.engine, start, end, 3600, account)
    dists = await queries.all_distributions(ctx.engine, start, end)
    return ok({
        "account": account, "iin_bin": miner.iin_bin, "id_kind": miner.kind,
        "legal_name": miner.legal_name, "license": _license_json(snap, account, at),
        "from": queries.iso(start), "to": queries.iso(end),
        "workers": workers.get(account, []),
        "hashrate_history": history,
        "distributions": [queries.distribution_json(r) for r in dists.get(account, [])],
    })  # fmt: skip


async def openapi(request: web.Request) -> web.Response:
    return ok(openapi_schema())
