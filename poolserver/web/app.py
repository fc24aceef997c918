"""The web server: aiohttp application factory, middlewares and the running server.

Middlewares, outermost first:

- ``observe``: counts every request by route template and status class, times it (metrics);
- ``headers``: security headers on every answer, errors included (CSP with no external
  source, no sniffing, no framing, no referrer) and ``Cache-Control: no-store`` on
  token-protected data;
- ``guard``: any exception becomes a JSON answer without details: ``ParamError`` → 422 naming
  the field, an HTTP error → its status, a database outage → 503, anything else → 500 (the
  traceback goes to the pool's log, never to the client);
- ``limit``: per client IP token bucket → 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from poolserver.aio import cancel_and_wait
from poolserver.web import handlers
from poolserver.web.handlers import CTX, WebContext, ok
from poolserver.web.params import ParamError
from poolserver.web.ratelimit import RateLimiter
from poolserver.web.stats import WebStats

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
API = "/api/v1"
LIMITER = web.AppKey("limiter", RateLimiter)
STATS = web.AppKey("stats", WebStats)
PROXIES = web.AppKey("proxies", frozenset)
CLOCK = web.AppKey("clock", Callable)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")  # fmt: skip
PRIVATE_PREFIXES = (f"{API}/accounts/", f"{API}/regulator/")


def routes() -> list[tuple[str, Callable[..., Any]]]:
    """Every API route (path template, handler); the OpenAPI schema lists exactly these."""
    h = handlers
    return [
        (f"{API}/pool", h.pool),
        (f"{API}/pool/hashrate", h.pool_hashrate),
        (f"{API}/blocks", h.blocks),
        (f"{API}/accounts/{{account}}/workers", h.account_workers),
        (f"{API}/accounts/{{account}}/balance", h.account_balance),
        (f"{API}/accounts/{{account}}/payments", h.account_payments),
        (f"{API}/accounts/{{account}}/distributions", h.account_distributions),
        (f"{API}/regulator/miners", h.regulator_miners),
        (f"{API}/regulator/miners/{{account}}", h.regulator_miner),
        (f"{API}/openapi.json", h.openapi),
    ]


def client_ip(request: web.Request, proxies: frozenset[str]) -> str:
    """The TCP peer, or, when the peer is a trusted proxy, the right-most address in
    X-Forwarded-For that is not a trusted proxy itself (what the proxy saw)."""
    peer = request.remote or "unknown"
    if peer not in proxies:
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed header: count the proxy, not a made-up client
        if hop not in proxies:
            return hop
    return peer


def bucket_key(ip: str) -> str:
    """The rate limit's key: an IPv4 address, or an IPv6 address's /64 (one subscriber's
    network: rotating addresses inside it must not multiply the allowance)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 6 and addr.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr.ipv4_mapped or addr) if addr.version == 6 else str(addr)


def _route_label(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    finally:
        request.app[STATS].observe(_route_label(request), status, time.perf_counter() - start)


def _error(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    return ok({"error": error, "detail": detail, **extra}, status)


_SLUG = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 400: "bad_request"}


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ParamError as exc:
        return _error(422, "invalid_parameter", str(exc), field=exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = _error(exc.status, _SLUG.get(exc.status, "error"), exc.reason)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        from sqlalchemy.exc import InterfaceError, OperationalError

        if isinstance(exc, OperationalError | InterfaceError | OSError):
            log.warning("web: %s %s: database unavailable: %s", request.method,
                        request.path, exc)  # fmt: skip
            resp = _error(503, "unavailable", "the pool's database is not reachable; try later")
            resp.headers["Retry-After"] = "5"
            return resp
        log.exception("web: %s %s failed", request.method, request.path)
        return _error(500, "internal", "internal error (logged by the pool)")


@web.middleware
async def limit(request: web.Request, handler: Any) -> web.StreamResponse:
    limiter = request.app[LIMITER]
    key = bucket_key(client_ip(request, request.app[PROXIES]))
    wait = limiter.take(key, request.app[CLOCK]())
    if wait is not None:
        request.app[STATS].rate_limited += 1
        resp = _error(429, "rate_limited", "too many requests from this address; slow down")
        resp.headers["Retry-After"] = str(limiter.retry_after(wait))
        return resp
    return await handler(request)


@web.middleware
async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
    resp = await handler(request)
    h = resp.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "no-referrer"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.path.startswith(PRIVATE_PREFIXES):
        h["Cache-Control"] = "no-store"
    elif "Cache-Control" not in h:
        h["Cache-Control"] = "no-cache"
    return resp


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def make_app(ctx: WebContext, stats: WebStats | None = None,
             monotonic: Callable[[], float] = time.monotonic) -> web.Application:  # fmt: skip
    cfg = ctx.config
    app = web.Application(middlewares=[observe, headers, guard, limit],
                          client_max_size=16 * 1024)  # fmt: skip
    app[CTX] = ctx
    app[STATS] = stats or WebStats()
    app[LIMITER] = RateLimiter(cfg.rate_limit_per_minute, cfg.rate_limit_burst)
    app[PROXIES] = frozenset(cfg.trusted_proxies)
    app[CLOCK] = monotonic
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC, show_index=False, follow_symlinks=False)
    for path, handler in routes():
        app.router.add_get(path, handler)
    return app


class WebServer:
    """The page and API on ``[web]`` host:port inside the pool process."""

    def __init__(self, ctx: WebContext, stats: WebStats) -> None:
        self.ctx = ctx
        self.stats = stats
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._prune: asyncio.Task[None] | None = None

    async def start(self) -> tuple[str, int]:
        cfg = self.ctx.config
        app = make_app(self.ctx, self.stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            reason = exc.strerror or exc
            raise ValueError(
                f"web: cannot listen on {cfg.host}:{cfg.port} ({reason}); "
                "set [web].port, or [web].enabled = false"
            ) from None
        server = site._server
        sock = server.sockets[0] if server is not None and server.sockets else None
        self.address = sock.getsockname()[:2] if sock is not None else (cfg.host, cfg.port)
        self._prune = asyncio.get_running_loop().create_task(self._prune_loop(app[LIMITER]))
        log.info("web page and API on http://%s:%d/", *self.address)
        return self.address

    async def _prune_loop(self, limiter: RateLimiter) -> None:
        while True:
            await asyncio.sleep(60)
            limiter.prune(time.monotonic())

    async def stop(self) -> None:
        await cancel_and_wait(self._prune)
        if self._runner is not None:
            await self._runner.cleanup()
