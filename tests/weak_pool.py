"""A deliberately weakened pool for the security suite's own tests: ``python -m
tests.weak_pool WEAKENING[,WEAKENING...] --config FILE run`` patches the server in this process
and then runs the real ``poolserver`` command. The switches live here, in the test harness
only, never in the production config: each removes one defence the suite claims to detect.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import sys
from collections.abc import Callable
from typing import Any


def no_line_limit() -> None:
    """Lines of any length are buffered (no max_line_bytes)."""
    from stratum import protocol

    init = protocol.LineBuffer.__init__

    def __init__(self: Any, limit: int) -> None:
        init(self, 1 << 40)

    protocol.LineBuffer.__init__ = __init__  # type: ignore[method-assign]


def lenient_framing() -> None:
    """Bad input is dropped silently: no error replies, no close on fatal protocol errors."""
    from stratum import protocol, session

    protocol.error_reply = lambda req_id, code, message: b""
    protocol.error_reply_cached = lambda req_id, tail: b""

    def _protocol_error(self: Any, req_id: Any, exc: Any) -> None:
        self.server.stats.protocol_errors[exc.label] += 1

    session.Session._protocol_error = _protocol_error  # type: ignore[method-assign]


def no_timeouts() -> None:
    """No subscribe/authorize or idle timeout."""
    from stratum import server

    sweep = server.StratumServer.sweep

    def no_sweep(self: Any, now: float | None = None) -> None:
        return None

    server.StratumServer.sweep = no_sweep  # type: ignore[method-assign]
    _ = sweep


def no_write_limit() -> None:
    """Unread replies pile up without bound (no max_write_buffer_bytes)."""
    _settings_patch(max_write_buffer_bytes=1 << 40)


def no_conn_cap() -> None:
    _settings_patch(max_connections_per_ip=0)


def no_bans() -> None:
    """No invalid-share ban, no authorization back-off or address ban."""
    _settings_patch(ban_min_submits=1 << 30, auth_failures_allowed=1 << 30)


def no_flood_limit() -> None:
    from stratum import session

    session.MAX_QUEUED_LINES = 1 << 40
    session.MAX_WORKERS_PER_SESSION = 1 << 20


def no_fd_raise() -> None:
    """The pool keeps a low open-files limit (256) instead of raising it at startup."""
    import resource

    from poolserver import fdlimit

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    fdlimit.check_open_files_limit = lambda cap: 256


# The suite pool holds ~25 descriptors idle and its cap is 150: EX-10's 200 connections take
# every descriptor left (libuv then closes what it cannot accept) and 150+ stay open.
GLOBAL_CAP_FD_LIMIT = 192


def no_global_cap() -> None:
    """No global connection cap is enforced ([stratum].max_connections; the gauge still shows
    the configured one, so EX-10 must see the flood get through, not read it off /metrics), and
    the pool's descriptors are as scarce as the cap assumed: soft = hard open-files limit 192
    (the pool cannot raise it), so the flood really takes every descriptor."""
    import resource

    from stratum import server

    resource.setrlimit(resource.RLIMIT_NOFILE, (GLOBAL_CAP_FD_LIMIT, GLOBAL_CAP_FD_LIMIT))
    init = server.StratumServer.__init__

    def __init__(self: Any, settings: Any, *args: Any, **kw: Any) -> None:
        init(self, dataclasses.replace(settings, max_connections=0), *args, **kw)
        self.stats.connections_max = settings.max_connections

    server.StratumServer.__init__ = __init__  # type: ignore[method-assign]


def _settings_patch(**changes: Any) -> None:
    from poolserver import app

    original = app.server_settings

    def server_settings(config: Any) -> Any:
        return dataclasses.replace(original(config), **changes)

    app.server_settings = server_settings


def no_auth_check() -> None:
    """A submit is trusted for the worker it names, subscribed or not."""
    from stratum import server, session

    submit = server.StratumServer.submit

    def trusting_submit(self: Any, s: Any, req_id: Any, params: Any) -> bool:
        if isinstance(params, list) and params and isinstance(params[0], str):
            s.subscribed = True
            parsed = session.parse_worker_name(params[0])
            if isinstance(parsed, tuple) and params[0] not in s.workers:
                s.workers[params[0]] = parsed
        return submit(self, s, req_id, params)

    server.StratumServer.submit = trusting_submit  # type: ignore[method-assign]


def _clear_rejects(*labels: str) -> None:
    from stratum import server

    precheck = server.precheck

    def lenient(params: Any, **kw: Any) -> Any:
        result = precheck(params, **kw)
        if getattr(result, "reject", None) is not None and result.reject.label in labels:
            result.reject = None
        return result

    server.precheck = lenient


def lenient_jobs() -> None:
    """Unknown job ids fall back to the current job; stale shares are accepted."""
    from stratum import tip

    init = tip.TipBook.__init__

    def __init__(self: Any, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        by_id = self._by_id
        self.find = lambda job_id: by_id.get(job_id) or self.current

    tip.TipBook.__init__ = __init__  # type: ignore[method-assign]
    _clear_rejects("stale")


def no_en2_check() -> None:
    _clear_rejects("bad_extranonce2")


def no_ntime_check() -> None:
    _clear_rejects("ntime_out_of_range")


def no_version_mask() -> None:
    """Any version bits; configure grants whatever mask the miner asks for."""
    from stratum import session

    _clear_rejects("version_mask")
    configure = session.Session._configure

    def _configure(self: Any, req: Any) -> None:
        configure(self, req)
        self.version_mask = 0xFFFFFFFF
        if self._out:
            self._out[-1] = self._out[-1].replace(b'"1fffe000"', b'"ffffffff"')

    session.Session._configure = _configure  # type: ignore[method-assign]
    session._HANDLERS["mining.configure"] = _configure


def ignore_outside_bits() -> None:
    """Version bits outside the mask are neither refused nor hashed (dropped silently)."""
    from stratum import server

    precheck = server.precheck

    def lenient(params: Any, **kw: Any) -> Any:
        result = precheck(params, **kw)
        if getattr(result, "reject", None) is not None and result.reject.label == "version_mask":
            result.reject = None
            result.hash_mask = kw["version_mask"]
        return result

    server.precheck = lenient


def lenient_hex() -> None:
    """ntime/nonce/version bits of any length are read as numbers (leading zeros allowed)."""
    from stratum import validate

    validate._hexu32 = re.compile(r"[0-9a-fA-F]{1,16}").fullmatch
    _clear_rejects("bad_nonce", "bad_ntime", "bad_version_bits")


def no_diff_check() -> None:
    """Every hash counts as a share (the difficulty check is gone)."""
    from stratum import server, validate

    judge = validate.judge

    def lenient(meets_share: bool, meets_network: bool, duplicate: bool,
                reject: Any = None) -> Any:  # fmt: skip
        return judge(True, meets_network, duplicate, reject)

    server.judge = lenient


def no_diff_clamp() -> None:
    """suggest_difficulty is taken as it comes: zero, negative, tiny, huge."""
    from stratum import session

    def number(value: object) -> float | None:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    def suggest(self: Any, value: float) -> None:
        self.floor = value
        self._change_difficulty(value)

    session._number = number
    session.Session.suggest = suggest  # type: ignore[method-assign]


def no_dedup() -> None:
    """No duplicate check, and the journal keys shares by a per-submission id instead of the
    header hash (so its unique index does not catch the duplicate either)."""
    from stratum import server, validate

    judge = validate.judge

    def no_dup(meets_share: bool, meets_network: bool, duplicate: bool,
               reject: Any = None) -> Any:  # fmt: skip
        return judge(meets_share, meets_network, False, reject)

    server.judge = no_dup
    put = server.StratumServer._put

    async def salted_put(self: Any, accepted: Any) -> Any:
        salted = [(p, dataclasses.replace(s, share_hash=hashlib.sha256(
            s.share_hash + os.urandom(8)).digest()), c, t) for p, s, c, t in accepted]
        return await put(self, salted)

    server.StratumServer._put = salted_put  # type: ignore[method-assign]


def no_resume_check() -> None:
    """A resumed session id is handed out again even while its owner is connected."""
    from stratum import extranonce

    allocate = extranonce.ExtranonceAllocator.allocate

    def allocate_any(self: Any, resume: bytes | None = None) -> bytes:
        if resume is not None and len(resume) == self.size:
            return resume
        return allocate(self, resume)

    extranonce.ExtranonceAllocator.allocate = allocate_any  # type: ignore[method-assign]


def lenient_names() -> None:
    """Any string is a worker name."""
    from stratum import session

    session._ACCOUNT_RE = re.compile(r"(?s).{0,100000}")
    session._WORKER_RE = re.compile(r"(?s).{0,100000}")

    from poolserver.register import names

    for attr in ("validate_account", "validate_worker"):
        if hasattr(names, attr):
            setattr(names, attr, lambda value, *a, **k: value)
    from poolserver.register import policy

    policy.validate_account = lambda value, *a, **k: value
    policy.validate_worker = lambda value, *a, **k: value


def no_enforce() -> None:
    """Every well-formed account may mine: no license check, no cut-off on a suspension."""
    from poolserver import app

    app.register_enforced = lambda config: False


def leaky_metrics() -> None:
    """The metrics endpoint also publishes the report signing key (a 'debug' label)."""
    from prometheus_client.core import GaugeMetricFamily

    from poolserver import metrics

    collect = metrics.PoolCollector.collect

    def leaky(self: Any) -> Any:
        yield from collect(self)
        from poolserver.config import load_config
        from poolserver.report_deadline import key_path

        path = key_path(load_config(_config_arg()))
        text = path.read_text().replace("\n", " ") if path.exists() else "none"
        g = GaugeMetricFamily("qazpool_debug_info", "debug", labels=["signing_key"])
        g.add_metric([text], 1)
        yield g

    metrics.PoolCollector.collect = leaky  # type: ignore[method-assign]


def extra_listener() -> None:
    """A forgotten debug port: the process listens on one more socket."""
    from poolserver import app

    original = app.server_settings

    def server_settings(config: Any) -> Any:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        _KEEP.append(sock)
        return original(config)

    app.server_settings = server_settings


_KEEP: list[socket.socket] = []


# ---- the web server (issue 16) ----------------------------------------------------------------


def web_enumeration() -> None:
    """An account nobody holds a token for answers a plain 'no such account' 404."""
    from aiohttp import web
    from sqlalchemy import func, select

    from poolserver.storage.web_models import WebToken
    from poolserver.web import tokens

    check = tokens.WebTokens.check

    async def leaky(self: Any, account: str, presented: str | None) -> bool:
        if await check(self, account, presented):
            return True
        async with self.engine.connect() as db:
            n = await db.scalar(select(func.count()).where(WebToken.account == account))
        if not n:
            raise web.HTTPNotFound(reason="no such account")
        return False

    tokens.WebTokens.check = leaky  # type: ignore[method-assign]


def no_web_rate_limit() -> None:
    from poolserver.web import ratelimit

    ratelimit.RateLimiter.take = lambda self, key, now: None  # type: ignore[method-assign]


def web_trust_forwarded() -> None:
    """X-Forwarded-For is believed from any peer."""
    from poolserver.web import app

    def client_ip(request: Any, proxies: frozenset[str]) -> str:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        return hops[-1] if hops[-1] else (request.remote or "unknown")

    app.client_ip = client_ip


def web_query_token() -> None:
    """The read token is also taken from ?token= (ends up in proxy logs and browser history)."""
    from poolserver.web import handlers, params

    bearer, known_only = handlers._bearer, params.known_only

    def _bearer(request: Any) -> str | None:
        return bearer(request) or request.query.get("token") or request.query.get("access_token")

    def lenient(query: Any, allowed: tuple[str, ...]) -> None:
        known_only(query, (*allowed, "token", "access_token"))

    handlers._bearer = _bearer
    params.known_only = lenient


def _wrap_headers(extra: Callable[[Any, Any], None] | None = None,
                  only_success: bool = False) -> None:  # fmt: skip
    from aiohttp import web

    from poolserver.web import app

    inner = app.headers

    @web.middleware
    async def headers(request: Any, handler: Any) -> Any:
        if only_success:
            resp = await handler(request)
            return await inner(request, lambda r: _done(resp)) if resp.status < 400 else resp
        resp = await inner(request, handler)
        if extra is not None:
            extra(request, resp)
        return resp

    app.headers = headers


async def _done(resp: Any) -> Any:
    return resp


def web_cors() -> None:
    """Any origin may read answers, credentials included."""

    def grant(request: Any, resp: Any) -> None:
        resp.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
        resp.headers["Access-Control-Allow-Credentials"] = "true"

    _wrap_headers(grant)


def web_cacheable() -> None:
    """Token-protected answers are cacheable like public ones."""
    from poolserver.web import app

    app.PRIVATE_PREFIXES = ()


def web_headers_on_success_only() -> None:
    """Security headers only on successful answers (errors go out bare)."""
    _wrap_headers(only_success=True)


def web_unsafe_csp() -> None:
    from poolserver.web import app

    app.CSP = app.CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")


def web_open_regulator() -> None:
    """Any bearer token opens the regulator view."""
    from poolserver.web import handlers

    handlers.regulator_ok = lambda presented, configured: bool(presented)


def web_naive_static() -> None:
    """Static files served by joining the decoded path to the directory, with a listing."""
    import urllib.parse
    from pathlib import Path

    from aiohttp import web

    def add_static(self: Any, prefix: str, path: Any, **kw: Any) -> Any:
        async def naive(request: Any) -> Any:
            tail = urllib.parse.unquote(request.match_info["tail"])
            target = Path(f"{path}/{tail}")
            if target.is_dir():
                return web.Response(text="Index of\n" + "\n".join(os.listdir(target)))
            if not target.is_file():
                raise web.HTTPNotFound()
            return web.Response(body=target.read_bytes())

        return self.add_get(prefix + "/{tail:.*}", naive)

    web.UrlDispatcher.add_static = add_static  # type: ignore[method-assign]


def web_lenient_params() -> None:
    """Numbers are read with int() and no bounds: bad values reach the query layer."""
    from poolserver.web import params

    def integer(query: Any, field: str, default: int, low: int, high: int) -> int:
        raw = query.get(field)
        return default if raw is None else int(raw)

    params.integer = integer


def web_any_method() -> None:
    """Every route answers every method."""
    from aiohttp import web

    def add_get(self: Any, path: str, handler: Any, **kw: Any) -> Any:
        kw.pop("allow_head", None)
        return self.add_route("*", path, handler, **kw)

    web.UrlDispatcher.add_get = add_get  # type: ignore[method-assign]


def web_huge_headers() -> None:
    """The HTTP parser takes header fields and request lines of any size."""
    from aiohttp import web

    init = web.AppRunner.__init__

    def __init__(self: Any, app: Any, **kw: Any) -> None:
        init(self, app, **kw, max_line_size=1 << 26, max_field_size=1 << 26,
             max_headers=1 << 20)  # fmt: skip

    web.AppRunner.__init__ = __init__  # type: ignore[method-assign]


def web_bind_all() -> None:
    """The web server listens on every interface whatever [web].host says."""
    from aiohttp import web

    init = web.TCPSite.__init__

    def __init__(self: Any, runner: Any, host: Any = None, port: Any = None, **kw: Any) -> None:
        init(self, runner, "0.0.0.0", port, **kw)

    web.TCPSite.__init__ = __init__  # type: ignore[method-assign]


def _config_arg() -> str | None:
    argv = sys.argv
    return argv[argv.index("--config") + 1] if "--config" in argv else None


WEAKENINGS: dict[str, Callable[[], None]] = {
    f.__name__: f
    for f in (no_line_limit, lenient_framing, no_timeouts, no_write_limit, no_conn_cap, no_bans,
              no_flood_limit, no_auth_check, lenient_jobs, no_en2_check, no_ntime_check,
              no_version_mask, ignore_outside_bits, lenient_hex, no_diff_check, no_diff_clamp,
              no_dedup, no_resume_check,
              lenient_names, no_enforce, leaky_metrics, extra_listener, no_fd_raise,
              no_global_cap,
              web_enumeration, no_web_rate_limit, web_trust_forwarded, web_query_token,
              web_cors, web_cacheable, web_headers_on_success_only, web_unsafe_csp,
              web_open_regulator, web_naive_static, web_lenient_params, web_any_method,
              web_huge_headers, web_bind_all)
}


def main() -> int:
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        WEAKENINGS[name]()
    sys.argv = ["poolserver", *sys.argv[2:]]
    from poolserver.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
