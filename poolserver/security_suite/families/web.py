"""The web page and read-only API (issue 16): account enumeration, token brute force and the
per-IP limit, tokens in URLs, caching and CORS of private answers, the regulator view, static
file traversal, parameter fuzzing, methods and oversized headers, security headers on every
status, stored XSS through a Stratum worker name, and the bind address.

Requests go byte-exact (``security_suite.http``) from the case's own loopback source. The
read tokens the cases need are issued for the suite's own ``qzsec-*`` miners through the real
CLI and revoked after the run. When ``[web]`` is disabled in the operator's config the cases
are reported "not applicable" with that reason (never "held")."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from datetime import UTC, datetime, timedelta

from poolserver.security_suite import observe
from poolserver.security_suite.context import Context
from poolserver.security_suite.http import Answer, split_base
from poolserver.security_suite.model import Observation, family

case = family("web")
CASES = case.cases

API = "/api/v1"
JSON = "application/json"
# Bytes that would show a file outside the static directory was served, or a traceback.
LEAK_MARKERS = (b"root:x:0:0", b"def make_app", b"[pool]", b"import ", b"Traceback",
                b'File "')  # fmt: skip


def _applies(ctx: Context, obs: Observation) -> bool:
    if ctx.web_url is not None:
        return True
    if not ctx.config.web.enabled:
        obs.not_applicable_because(ctx.web_off)
        return False
    raise RuntimeError(f"setup: {ctx.web_off}")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _day_range() -> str:
    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=1)}&to={today}"


def _no_traceback(obs: Observation, what: str, a: Answer) -> bool:
    leaked = [m.decode() for m in (b"Traceback", b'File "') if m in a.body]
    return obs.require(not leaked, f"{what}: no traceback in the body" if not leaked
                       else f"{what}: traceback text {leaked} in the body")  # fmt: skip


def _json_error(obs: Observation, what: str, a: Answer, statuses: range | tuple[int, ...],
                field: str | None = None) -> bool:  # fmt: skip
    body = a.json()
    good = (a.status in statuses and (a.header("content-type") or "").startswith(JSON)
            and isinstance(body, dict) and "error" in body
            and (field is None or body.get("field") == field))  # fmt: skip
    named = f", naming field {field!r}" if field else ""
    ok = obs.require(good, f"{what}: {a.describe()} (expected a JSON {statuses!s}{named})")
    return _no_traceback(obs, what, a) and ok


# ---- account data --------------------------------------------------------------------------


@case("WB-01", "Account enumeration through the account endpoints", quick=True,
      sends="GET /accounts/{a}/balance for an unknown account, a registered account with a "
            "wrong token, and a registered account with a revoked token (issued and revoked "
            "through the CLI); also each without a token",
      expected="the three answers are byte-for-byte identical (status, body); the no-token "
               "answers are identical for the unknown and the registered account")
async def wb01(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    ids = ctx.ids
    valid = await ctx.web_token(ids.attacker)
    revoked = await ctx.web_token(ids.victim)
    await ctx.revoke_web_tokens(ids.victim)
    obs.fact(f"read token issued for {ids.attacker}; a token issued for {ids.victim} and "
             "revoked through `poolserver web token revoke`")  # fmt: skip
    unknown = "qzsec-nobody-" + ctx.source.replace(".", "")
    answers = {
        "unknown account (a live token of another account)":
            await ctx.web(f"{API}/accounts/{unknown}/balance", headers=_bearer(valid)),
        "registered account, wrong token":
            await ctx.web(f"{API}/accounts/{ids.victim}/balance",
                          headers=_bearer(valid[:-4] + "AAAA")),
        "registered account, revoked token":
            await ctx.web(f"{API}/accounts/{ids.victim}/balance", headers=_bearer(revoked)),
    }  # fmt: skip
    for what, a in answers.items():
        obs.fact(f"{what}: {a.describe()}")
    first = next(iter(answers.values()))
    obs.require(first.status in range(400, 500), f"refused with {first.status}")
    same = all(a.status == first.status and a.body == first.body for a in answers.values())
    obs.require(same, "status and body bytes identical for all three" if same else
                "the answers differ: an outsider can tell which accounts exist")  # fmt: skip
    bare = [await ctx.web(f"{API}/accounts/{acc}/balance") for acc in (unknown, ids.victim)]
    obs.require(bare[0].status == bare[1].status and bare[0].body == bare[1].body,
                f"without a token: unknown {bare[0].status}, registered {bare[1].status}, "
                f"bodies {'identical' if bare[0].body == bare[1].body else 'DIFFERENT'}")
    mine = await ctx.web(f"{API}/accounts/{ids.attacker}/balance", headers=_bearer(valid))
    obs.require(mine.status == 200, f"control: the live token reads its own account: "
                f"{mine.status}")  # fmt: skip


async def _brute(ctx: Context, account: str, n: int) -> list[Answer]:
    answers = []
    for i in range(n):
        a = await ctx.web(f"{API}/accounts/{account}/balance",
                          headers=_bearer(f"qzp_guess{i:06d}{ctx.source}"))  # fmt: skip
        answers.append(a)
        if a.status == 429:
            break
    return answers


def _limit_reached(obs: Observation, answers: list[Answer], n: int) -> Answer | None:
    statuses = [a.status for a in answers]
    obs.fact(f"{len(answers)} guesses, statuses {sorted(set(statuses))}")
    obs.require(200 not in statuses, "no guess was accepted")
    last = answers[-1]
    if not obs.require(last.status == 429, f"rate limited after {len(answers)} guesses" if
                       last.status == 429 else f"still answering after {n} guesses: "
                       f"{last.describe()}"):  # fmt: skip
        return None
    retry = last.header("retry-after") or ""
    obs.require(retry.isdigit() and int(retry) >= 1, f"429 carries Retry-After: {retry!r}")
    return last


@case("WB-02", "Read-token brute force meets the per-IP rate limit",
      sends="GET /accounts/qzsec-victim/balance with a different guessed token each time, "
            "from one address, until refused (at most rate_limit_burst + 20)",
      expected="429 with Retry-After (whole seconds) before the burst is much exceeded; no "
               "guess accepted")
async def wb02(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    n = ctx.config.web.rate_limit_burst + 20
    _limit_reached(obs, await _brute(ctx, ctx.ids.victim, n), n)


@case("WB-03", "X-Forwarded-For from an untrusted peer does not reset the limit",
      sends="guesses until 429, then guesses with X-Forwarded-For: <a new address each time> "
            "from the same untrusted peer",
      expected="still 429: the header counts only from [web].trusted_proxies, so a spoofed "
               "header does not get the attacker a fresh bucket")
async def wb03(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    if ctx.source in ctx.config.web.trusted_proxies:
        raise RuntimeError(f"setup: the attack source {ctx.source} is a trusted proxy")
    n = ctx.config.web.rate_limit_burst + 20
    if _limit_reached(obs, await _brute(ctx, ctx.ids.victim, n), n) is None:
        return
    spoofed = []
    for i in range(5):
        fake = f"198.51.100.{10 + i}"
        spoofed.append(await ctx.web(f"{API}/accounts/{ctx.ids.victim}/balance",
                                     headers={**_bearer(f"qzp_spoof{i}"),
                                              "X-Forwarded-For": fake,
                                              "X-Real-IP": fake, "Forwarded": f"for={fake}"}))
    statuses = [a.status for a in spoofed]
    obs.require(all(s == 429 for s in statuses),
                f"with spoofed X-Forwarded-For / X-Real-IP / Forwarded: {statuses}")


@case("WB-04", "Read token in the URL; caching and CORS of private answers", quick=True,
      sends="the account's valid token as ?token= / ?access_token= (no header); then valid "
            "and wrong-token requests with Origin: https://evil.example and a CORS preflight",
      expected="a token in the query string is not accepted (never 200); account answers "
               "carry Cache-Control: no-store; no Access-Control-Allow-* header for a foreign "
               "origin")
async def wb04(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    acc = ctx.ids.attacker
    token = await ctx.web_token(acc)
    for name in ("token", "access_token"):
        a = await ctx.web(f"{API}/accounts/{acc}/balance?{name}={token}")
        obs.require(a.status != 200 and a.status in range(400, 500),
                    f"?{name}=<valid token>: {a.describe()}")  # fmt: skip
    evil = {"Origin": "https://evil.example"}
    checks = {
        "valid token": await ctx.web(f"{API}/accounts/{acc}/workers",
                                     headers={**_bearer(token), **evil}),
        "wrong token": await ctx.web(f"{API}/accounts/{acc}/payments",
                                     headers={**_bearer(token + "x"), **evil}),
        "no token": await ctx.web(f"{API}/accounts/{acc}/balance", headers=evil),
    }  # fmt: skip
    obs.require(checks["valid token"].status == 200,
                f"control: the valid token in the header reads: {checks['valid token'].status}")
    for what, a in checks.items():
        cache = a.header("cache-control") or ""
        obs.require("no-store" in cache, f"{what} ({a.status}): Cache-Control {cache!r}")
    pre = await ctx.web(f"{API}/accounts/{acc}/balance", method="OPTIONS",
                        headers={**evil, "Access-Control-Request-Method": "GET",
                                 "Access-Control-Request-Headers": "authorization"})
    checks["preflight"] = pre
    for what, a in checks.items():
        cors = {k: v for k, v in a.headers.items() if k.startswith("access-control-allow")}
        obs.require(not cors, f"{what} ({a.status}): no CORS grant" if not cors
                    else f"{what} ({a.status}): CORS grant {cors}")  # fmt: skip


@case("WB-05", "Regulator endpoints without or with a wrong token",
      sends="GET /regulator/miners and /regulator/miners/qzsec-victim with no token, a wrong "
            "token, a miner's read token, Basic auth and an empty Bearer",
      expected="every one refused (401, or 404 while no regulator token is configured), "
               "JSON, no data")
async def wb05(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    configured = bool(ctx.config.web.regulator_token_sha256)
    obs.fact("a regulator token is configured" if configured else
             "no regulator token configured: the view must answer 404")  # fmt: skip
    miner = await ctx.web_token(ctx.ids.attacker)
    variants = {
        "no token": {},
        "wrong token": _bearer("qzr_" + "A" * 43),
        "a miner's read token": _bearer(miner),
        "Basic auth": {"Authorization": "Basic cmVndWxhdG9yOnJlZ3VsYXRvcg=="},
        "empty Bearer": {"Authorization": "Bearer "},
    }
    expected = (401,) if configured else (404,)
    for path in (f"{API}/regulator/miners?{_day_range()}",
                 f"{API}/regulator/miners/{ctx.ids.victim}?{_day_range()}"):  # fmt: skip
        for what, headers in variants.items():
            a = await ctx.web(path, headers=headers)
            _json_error(obs, f"{path.split('?')[0]} with {what}", a, expected)
            obs.require(b"iin_bin" not in a.body, f"{what}: no register data in the body")


# ---- static files ---------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/%2E%2E/%2E%2E/config.py",
    "/static/..%2fapp.py", "/static/..%2F..%2Fconfig.py", "/static/%2e%2e%2fapp.py",
    "/static/..%5capp.py", "/static/....//app.py", "/static/%252e%252e/app.py",
    "/static/./../../web/app.py", "/static/%c0%ae%c0%ae/app.py",
    "/static/" + "../" * 12 + "etc/passwd", "/static/" + "%2e%2e%2f" * 12 + "etc/passwd",
    "/" + "../" * 12 + "etc/passwd", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/static/app.js%00.png", "/static/..;/app.py",
]
LISTINGS = ["/static", "/static/", "/static/.", "/static/%2e/", "/static//"]


@case("WB-06", "Path traversal on static files; no directory listing", quick=True,
      sends="; ".join(TRAVERSALS) + " and " + ", ".join(LISTINGS),
      expected="every traversal is refused (4xx) and no body holds bytes of a file outside "
               "the static directory (/etc/passwd, the pool's modules, the config); no answer "
               "lists the static directory")
async def wb06(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    static_names = [b"app.js", b"app.css", b"i18n.js", b"favicon.svg"]
    for i, target in enumerate(TRAVERSALS):
        if i % 10 == 9:
            ctx.source = ctx.new_source()  # stay under the per-IP limit
        a = await ctx.web(target)
        leaked = [m.decode() for m in LEAK_MARKERS if m in a.body]
        obs.require(a.status in range(400, 500) and not leaked,
                    f"{target}: {a.status} {len(a.body)} bytes"
                    + (f", LEAKED {leaked}" if leaked else ""))  # fmt: skip
    for target in LISTINGS:
        a = await ctx.web(target)
        listed = sum(1 for n in static_names if n in a.body)
        obs.require(a.status != 200 or listed < 2, f"{target}: {a.status}, "
                    f"{listed} static file names in the body")  # fmt: skip
    control = await ctx.web("/static/app.css")
    obs.require(control.status == 200, f"control: /static/app.css is served ({control.status})")


# ---- parameters -----------------------------------------------------------------------------

LONG = "a" * 4000


def _fuzz(account: str) -> list[tuple[str, str, bool]]:
    """(target, the field the 4xx must name, needs the account's token)."""
    acc = f"{API}/accounts/{account}"
    return [
        (f"{API}/blocks?limit=-1", "limit", False),
        (f"{API}/blocks?limit=0", "limit", False),
        (f"{API}/blocks?limit=99999999999999999999999999", "limit", False),
        (f"{API}/blocks?limit=1e9", "limit", False),
        (f"{API}/blocks?limit=%EF%BC%91%EF%BC%92", "limit", False),  # fullwidth digits
        (f"{API}/blocks?limit=NaN", "limit", False),
        (f"{API}/blocks?cursor=abc", "cursor", False),
        (f"{API}/blocks?cursor=-5", "cursor", False),
        (f"{API}/blocks?cursor=9999999999999999999999999999", "cursor", False),
        (f"{API}/blocks?cursor=1%27%20OR%201%3D1--", "cursor", False),
        (f"{API}/blocks?cursor=%00", "cursor", False),
        (f"{API}/blocks?sort=height%3BDROP%20TABLE%20blocks", "sort", False),
        (f"{API}/pool/hashrate?hours=0", "hours", False),
        (f"{API}/pool/hashrate?hours=-24", "hours", False),
        (f"{API}/pool/hashrate?hours=%F0%9F%92%A5", "hours", False),
        (f"{API}/accounts/%27%20OR%20%271%27%3D%271/balance", "account", False),
        (f"{API}/accounts/%D0%B0%D0%B4%D0%BC%D0%B8%D0%BD/balance", "account", False),
        (f"{API}/accounts/{LONG}/balance", "account", False),
        (f"{API}/accounts/a%0d%0aSet-Cookie:x=1/balance", "account", False),
        (f"{acc}/payments?limit=-7", "limit", True),
        (f"{acc}/payments?cursor=%E2%80%AE1", "cursor", True),
        (f"{acc}/distributions?from=2026-13-45&to=2026-01-01", "from", True),
        (f"{acc}/distributions?from=2026-01-02&to=2025-01-01", "to", True),
        (f"{acc}/distributions?from=%27%3B--&to=x", "from", True),
        (f"{acc}/distributions?from=0001-01-01&to=9999-12-31", "to", True),
        (f"{acc}/workers?{LONG}=1", LONG, True),
    ]


@case("WB-07", "Parameter fuzzing: every bad value is a JSON 4xx naming the field",
      sends="huge, negative, zero, exponent, NaN, fullwidth-digit, emoji, RTL-override, NUL, "
            "SQL-like and CRLF values in limit, cursor, hours, from/to, the account path "
            "segment and unknown parameters, on public and token-protected endpoints "
            "(4000-byte path segments included)",
      expected="each answered 422 (a JSON body with the offending field named), never a 500, "
               "never a traceback; the server keeps answering")
async def wb07(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    acc = ctx.ids.attacker
    token = await ctx.web_token(acc)
    for i, (target, field, auth) in enumerate(_fuzz(acc)):
        if i % 12 == 11:
            ctx.source = ctx.new_source()  # stay under the per-IP limit
        a = await ctx.web(target, headers=_bearer(token) if auth else None)
        shown = target if len(target) < 90 else target[:60] + f"...({len(target)} bytes)"
        _json_error(obs, shown, a, (422,), field[:64] if field != LONG else None)
    ok = await ctx.web(f"{API}/pool", source=ctx.new_source())
    obs.require(ok.status == 200, f"the API still answers: GET /pool {ok.status}")


# ---- methods and headers -------------------------------------------------------------------

METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")


@case("WB-08", "Non-GET methods are refused with 405",
      sends=f"{', '.join(METHODS)} on /, /api/v1/pool, /api/v1/accounts/qzsec-victim/balance "
            "and /static/app.js",
      expected="405 with a JSON body and an Allow header naming GET; nothing changes; GET "
               "still answers")
async def wb08(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    targets = ("/", f"{API}/pool", f"{API}/accounts/{ctx.ids.victim}/balance",
               "/static/app.js")  # fmt: skip
    for i, target in enumerate(targets):
        ctx.source = ctx.new_source() if i else ctx.source
        for method in METHODS:
            a = await ctx.web(target, method=method, headers={"Content-Length": "0"})
            allow = a.header("allow") or ""
            _json_error(obs, f"{method} {target}", a, (405,))
            obs.require("GET" in allow and "POST" not in allow,
                        f"{method} {target}: Allow {allow!r}")  # fmt: skip
    ok = await ctx.web(f"{API}/pool", source=ctx.new_source())
    obs.require(ok.status == 200, f"GET /api/v1/pool still answers {ok.status}")


@case("WB-09", "Oversized request headers are refused cleanly",
      sends="one 16 KiB and one 1 MiB header value; 500 headers of 100 bytes; a 64 KiB "
            "request line",
      expected="each refused with a 4xx (400/413/414/431) or a clean close, never a 200 or "
               "a 5xx, no traceback; a fresh request is answered afterwards")
async def wb09(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    many = "".join(f"X-Pad-{i}: {'p' * 90}\r\n" for i in range(500)).encode()
    tries = {
        "16 KiB header": {"raw_headers": b"X-Big: " + b"A" * (16 << 10) + b"\r\n"},
        "1 MiB header": {"raw_headers": b"X-Big: " + b"A" * (1 << 20) + b"\r\n"},
        "500 headers": {"raw_headers": many},
    }
    for what, kw in tries.items():
        a = await ctx.web(f"{API}/pool", **kw)  # type: ignore[arg-type]
        closed = a.status == 0 and any(w in a.note.lower() for w in ("reset", "broken pipe"))
        clean = a.status in range(400, 500) or closed
        obs.require(clean, f"{what}: {a.describe()}")
        _no_traceback(obs, what, a)
    a = await ctx.web(f"{API}/pool?x={'b' * (64 << 10)}")
    closed = a.status == 0 and any(w in a.note.lower() for w in ("reset", "broken pipe"))
    obs.require(a.status in range(400, 500) or closed, f"64 KiB request line: {a.describe()}")
    ok = await ctx.web(f"{API}/pool", source=ctx.new_source())
    obs.require(ok.status == 200, f"a fresh GET /api/v1/pool afterwards: {ok.status}")


def _csp_script_sources(csp: str) -> list[str]:
    for part in csp.split(";"):
        words = part.split()
        if words and words[0] == "script-src":
            return words[1:]
    for part in csp.split(";"):
        words = part.split()
        if words and words[0] == "default-src":
            return words[1:]
    return ["*"]


def _headers_ok(obs: Observation, what: str, a: Answer) -> None:
    csp = a.header("content-security-policy") or ""
    frames = "frame-ancestors 'none'" in csp or (a.header("x-frame-options") or "").upper() \
        == "DENY"
    scripts = _csp_script_sources(csp)
    missing = [name for name, ok in (
        ("Content-Security-Policy", bool(csp)),
        ("script-src without 'unsafe-inline'/'unsafe-eval'/*", bool(csp) and not any(
            s in scripts for s in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:"))),
        ("X-Content-Type-Options: nosniff", a.header("x-content-type-options") == "nosniff"),
        ("frame refusal (frame-ancestors 'none' / X-Frame-Options DENY)", frames),
    ) if not ok]  # fmt: skip
    obs.require(a.status > 0 and not missing, f"{what} -> {a.status}: "
                + ("all present" if not missing else f"MISSING {missing}"))  # fmt: skip


@case("WB-10", "Security headers on every status code", quick=True,
      sends="requests answered 200 (page, API, static), 401, 404 (API, static), 405, 422 and "
            "429",
      expected="CSP (script-src without unsafe-inline), X-Content-Type-Options: nosniff and "
               "frame refusal on every one of them")
async def wb10(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    tries = [("page", "/", {}), ("API", f"{API}/pool", {}), ("static", "/static/app.css", {}),
             ("no token", f"{API}/accounts/{ctx.ids.victim}/balance", {}),
             ("unknown route", f"{API}/nope", {}), ("unknown static", "/static/nope.js", {}),
             ("bad parameter", f"{API}/blocks?limit=x", {}),
             ("method", f"{API}/pool", {"method": "POST"})]  # fmt: skip
    seen = set()
    for what, target, kw in tries:
        a = await ctx.web(target, **kw)  # type: ignore[arg-type]
        seen.add(a.status)
        _headers_ok(obs, what, a)
    answers = await _brute(ctx, ctx.ids.victim, ctx.config.web.rate_limit_burst + 20)
    seen.add(answers[-1].status)
    _headers_ok(obs, "rate limited", answers[-1])
    want = {200, 401, 404, 405, 422, 429}
    obs.require(want <= seen, f"statuses covered: {sorted(seen)}")


# ---- stored XSS ------------------------------------------------------------------------------

XSS_WORKER = "<script>alert(1)</script><img src=x onerror=alert(2)>"
_SCRIPT_TAG = re.compile(rb"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
_DOM_SINKS = (b".innerHTML", b".outerHTML", b"insertAdjacentHTML", b"document.write", b"eval(")


@case("WB-11", "Stored XSS through a Stratum worker name",
      sends=f"mining.authorize as qzsec-attacker.{XSS_WORKER} over Stratum (and, if the pool "
            "took it, one share), then the account's workers through the API; the page, its "
            "scripts and its CSP",
      expected="the name is refused at authorize, or served only as JSON data (application/"
               "json, nosniff); the page has no inline script, its scripts use no HTML sinks, "
               "and its CSP forbids inline script")
async def wb11(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    worker = ctx.worker(XSS_WORKER)
    c = await ctx.conn()
    try:
        reply = await c.login(worker)
        obs.fact(f"authorize {worker!r}: {reply.describe()}")
        if reply.ok and c.job is not None:
            share = await asyncio.to_thread(c.grind, c.job)
            sub = await c.submit(worker, c.job, share)
            obs.credited_allowed += 1 if sub.ok else 0
            obs.fact(f"a share under that name: {sub.describe()}")
    finally:
        await c.close()
    token = await ctx.web_token(ctx.ids.attacker)
    a = await ctx.web(f"{API}/accounts/{ctx.ids.attacker}/workers", headers=_bearer(token))
    ctype = a.header("content-type") or ""
    obs.require(a.status == 200 and ctype.startswith(JSON)
                and a.header("x-content-type-options") == "nosniff",
                f"workers: {a.status} {ctype!r}, nosniff {a.header('x-content-type-options')!r}")
    body = a.json() or {}
    names = [w.get("worker") or w.get("name") for w in body.get("items", []) if
             isinstance(w, dict)]  # fmt: skip
    if b"<script>" in a.body:
        obs.fact("the name is stored and served; it must stay JSON data behind the CSP")
    else:
        obs.fact(f"the name was not stored (workers: {names[:6]})")
    page = await ctx.web("/")
    inline = [m.group(2)[:40] for m in _SCRIPT_TAG.finditer(page.body)
              if b"src=" not in m.group(1) or m.group(2).strip()]  # fmt: skip
    obs.require(page.status == 200 and not inline, f"the page ({page.status}) has no inline "
                f"script" if not inline else f"inline script in the page: {inline}")
    srcs = re.findall(rb'<script[^>]*src="([^"]+)"', page.body)
    for src in srcs:
        js = await ctx.web(src.decode())
        sinks = [s.decode() for s in _DOM_SINKS if s in js.body]
        obs.require(js.status == 200 and not sinks, f"{src.decode()} ({js.status}): "
                    + (f"HTML sinks {sinks}" if sinks else "no HTML sinks"))  # fmt: skip
    scripts = _csp_script_sources(page.header("content-security-policy") or "")
    obs.require(bool(scripts) and not any(s in scripts for s in ("'unsafe-inline'",
                "'unsafe-eval'", "*", "data:")), f"the page's CSP script-src {scripts}")


# ---- bind address ----------------------------------------------------------------------------


@case("WB-12", "The web server binds a loopback address", quick=True,
      sends="reads [web].host of the operator's config and the pool process's listening "
            "sockets from /proc",
      expected="[web].host is a loopback address (a TLS reverse proxy faces the network) and "
               "the process listens on the web port only on loopback")
async def wb12(ctx: Context, obs: Observation) -> None:
    if not _applies(ctx, obs):
        return
    host = ctx.config.web.host
    obs.require(_loopback(host), f"[web].host = {host!r}")
    port = split_base(ctx.web_url or "")[1] if ctx.web_url else ctx.config.web.port
    listening = [(h, p) for h, p in observe.listening_of(ctx.pid) if p == port]
    obs.require(bool(listening), f"pid {ctx.pid} listens on port {port}: {listening}")
    wide = [f"{h}:{p}" for h, p in listening if not _loopback(h)]
    obs.require(not wide, f"bound to non-loopback {wide}" if wide else
                "only on loopback")  # fmt: skip


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

