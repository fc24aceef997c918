"""Control surfaces: nothing but Stratum and the metrics endpoint listens; the metrics expose
no secret; operator operations are not reachable over Stratum; the report signing key and the
database are protected by their file permissions."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import stat
from pathlib import Path

from poolserver.report_deadline import key_path
from poolserver.security_suite import http, observe
from poolserver.security_suite.checks import request_refused
from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation, family
from poolserver.storage_config import database_url

case = family("control")
CASES = case.cases


def _secrets(ctx: Context) -> dict[str, str]:
    """Strings that must never appear on the metrics endpoint."""
    found: dict[str, str] = {}
    cfg = ctx.config
    url = database_url(cfg)
    m = re.match(r"[^:]+://[^:/@]*:([^@]+)@", url)
    if m:
        found["[storage].url password"] = m.group(1)
    for i, node in enumerate(cfg.node.nodes):
        if node.password:
            found[f"[[node.nodes]][{i}].password"] = node.password
        if node.cookie_file and Path(node.cookie_file).is_file():
            cookie = Path(node.cookie_file).read_text().strip()
            if ":" in cookie:
                found[f"node {i} cookie"] = cookie.split(":", 1)[1]
    key = key_path(cfg)
    if key.is_file():
        body = "".join(line for line in key.read_text().splitlines() if "-----" not in line)
        if body:
            found["report signing key"] = body[:24]
            raw = base64.b64decode(body + "==")
            found["report signing key (hex)"] = raw[-32:].hex()[:24]
    for tls in cfg.stratum.listeners:
        if tls.tls_key and Path(tls.tls_key).is_file():
            text = Path(tls.tls_key).read_text()
            lines = [ln for ln in text.splitlines() if "-----" not in ln]
            if lines:
                found[f"TLS key of port {tls.port}"] = lines[0][:24]
    found["any PEM private key"] = "PRIVATE KEY-----"
    return found


@case("CT-01", "The metrics endpoint exposes no secret", quick=True,
      sends="GET on the metrics endpoint ([metrics] or --metrics)",
      expected="no password, cookie, signing or TLS key material, no private key in the text")
async def ct01(ctx: Context, obs: Observation) -> None:
    if not ctx.metrics_url:
        obs.require(False, "no metrics endpoint configured or given (--metrics URL): nothing "
                    "to scrape")  # fmt: skip
        return
    text = await asyncio.to_thread(observe.metrics_text, ctx.metrics_url, 10)
    obs.fact(f"scraped {len(text)} bytes from {ctx.metrics_url}")
    secrets = _secrets(ctx)
    obs.fact(f"looked for: {', '.join(secrets)}")
    for name, value in secrets.items():
        obs.require(value not in text, f"{name} {'absent' if value not in text else 'FOUND'}")


@case("CT-02", "Only the configured ports listen", quick=True,
      sends="reads the pool process's listening sockets from /proc",
      expected="every listening socket is a [[stratum.listeners]] port, the [metrics] port or "
               "the [web] port")
async def ct02(ctx: Context, obs: Observation) -> None:
    allowed = {lst.port for lst in ctx.config.stratum.listeners}
    if ctx.config.metrics.enabled:
        allowed.add(ctx.config.metrics.port)
    if ctx.config.web.enabled and ctx.config.web.port:
        allowed.add(ctx.config.web.port)
    if ctx.web_url:  # --web, or [web] as configured
        allowed.add(http.split_base(ctx.web_url)[1])
    listening = observe.listening_of(ctx.pid)
    obs.fact(f"pid {ctx.pid} listens on {', '.join(f'{h}:{p}' for h, p in listening)}")
    extra = [f"{h}:{p}" for h, p in listening if p not in allowed]
    obs.require(not extra, f"unexpected listening sockets: {', '.join(extra)}" if extra
                else f"all on configured ports {sorted(allowed)}")  # fmt: skip


_ADMIN = [
    ("admin.shutdown", []),
    ("client.reconnect", ["127.0.0.1", 1, 0]),
    ("mining.set_difficulty", [1e-30]),
    ("mining.notify", ["1", "00" * 32, "", "", [], "20000000", "207fffff", "00000000", True]),
    ("payouts.run_once", []),
    ("licenses.lift", ["QZSEC-SUSPEND"]),
    ("miners.add", ["qzsec-evil"]),
    ("db.upgrade", []),
]


@case("CT-03", "Operator operations over Stratum",
      sends="; ".join(m for m, _ in _ADMIN) + " as JSON-RPC requests",
      expected="each answered 'Unsupported method' (error 20); nothing changes; the pool still "
               "answers")
async def ct03(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn()
    try:
        for method, params in _ADMIN:
            await request_refused(obs, c, method, params, method, (20,))
    finally:
        await c.close()


def _mode_ok(path: Path, mask: int) -> tuple[bool, str]:
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    return mode & mask == 0, f"{path} mode {mode:04o} owner uid {st.st_uid}"


@case("CT-04", "Report signing key permissions", quick=True,
      sends="stat() of the [reports] signing key, its .pub and its directory",
      expected="the private key is 0600 (no group/other bits), owned by the pool's user; the "
               "directory is not writable by group or others")
async def ct04(ctx: Context, obs: Observation) -> None:
    key = key_path(ctx.config)
    if not obs.require(key.is_file(), f"signing key at {key}" if key.is_file() else
                       f"no signing key at {key} (create it with `poolserver report keygen`)"):
        return
    ok, text = _mode_ok(key, 0o077)
    obs.require(ok, f"private key: {text}")
    pool_uid = os.stat(f"/proc/{ctx.pid}").st_uid
    obs.require(key.stat().st_uid == pool_uid, f"owned by the pool's uid {pool_uid}")
    ok, text = _mode_ok(key.parent, 0o022)
    obs.require(ok, f"its directory: {text}")
    pub = key.with_name(key.name + ".pub")
    if pub.is_file():
        ok, text = _mode_ok(pub, 0o022)
        obs.require(ok, f"public key not writable by others: {text}")


@case("CT-05", "Database and data directory permissions",
      sends="stat() of the data dir and the SQLite file (PostgreSQL: its URL host)",
      expected="no group/other write on the data dir or the database file; PostgreSQL on a "
               "loopback address or a unix socket unless the operator says otherwise")
async def ct05(ctx: Context, obs: Observation) -> None:
    data = Path(ctx.config.pool.data_dir)
    ok, text = _mode_ok(data, 0o002)
    obs.require(ok, f"data dir: {text}")
    url = database_url(ctx.config)
    if url.startswith("sqlite"):
        db = Path(url.split("///", 1)[1])
        if db.exists():
            ok, text = _mode_ok(db, 0o022)
            obs.require(ok, f"database file: {text}")
    else:
        m = re.search(r"@([^/:?]*)", url)
        host = m.group(1) if m else ""
        obs.fact(f"PostgreSQL host {host or '(unix socket)'}")
        obs.require(host in ("", "localhost", "127.0.0.1", "::1") or "host=/" in url,
                    "the database is on this host")  # fmt: skip
