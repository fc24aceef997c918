"""The web API over real HTTP, on SQLite and PostgreSQL.

The main case runs the composed pool (``tests/web_support.py``): a miner mined over Stratum, a
block matured and was paid, a second is allocated and immature; every figure the API gives is
checked against the database read independently, every answer against the OpenAPI schema.
The other cases serve the same application on a fresh database: 422 naming the field, the same
404 for an unknown account and a wrong token, 429 with Retry-After, a bare JSON 500 (the
traceback only in the log), 503 while the database is down, the regulator token.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import func, select

from poolserver.config import config_from_dict
from poolserver.register.timeutil import kz_date
from poolserver.storage.models import Distribution, PaymentOutput, Share
from poolserver.storage.repository import Allocations
from poolserver.web import web_context
from poolserver.web.app import WebServer, routes
from poolserver.web.handlers import NOT_FOUND_OR_DENIED
from poolserver.web.openapi import openapi_schema
from poolserver.web.queries import PoolFigures
from poolserver.web.ratelimit import RateLimiter
from poolserver.web.stats import WebStats
from poolserver.web.tokens import WebTokens
from tests.payout_support import seed_register
from tests.web_support import REGULATOR_TOKEN, fetch, pool_with_data, validate

SCHEMA = openapi_schema()


def response_schema(path_template: str) -> dict[str, Any]:
    op = SCHEMA["paths"][path_template]["get"]
    return op["responses"]["200"]["content"]["application/json"]["schema"]


async def get_ok(base: str, path: str, template: str, token: str | None = None) -> Any:
    status, body, headers = await fetch(base, path, token)
    assert status == 200, (path, status, body)
    validate(response_schema(template), body, path)
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    return body


def today_range() -> str:
    today = kz_date(datetime.now(UTC))
    return f"from={today - timedelta(days=1)}&to={today}"


async def test_api_on_a_pool_with_real_data(db_url, engine, tmp_path):
    async with pool_with_data(db_url, engine, tmp_path) as pool:
        base, tok = pool.base, pool.token
        first, second = pool.blocks
        async with engine.connect() as conn:
            diff_sum = (await conn.execute(select(func.sum(Share.difficulty)))).scalar_one()
            workers_db = sorted((await conn.execute(select(Share.worker).distinct())).scalars())
            nets = dict((await conn.execute(
                select(Distribution.allocation_id, Distribution.net)
                .where(Distribution.account == "alice"))).all())  # fmt: skip
            (paid_db,) = (await conn.execute(select(PaymentOutput.amount))).scalars()
        a1 = await Allocations(engine).get(first)
        a2 = await Allocations(engine).get(second)
        assert a1 is not None and a2 is not None and len(nets) == 2

        # pool overview: figures from the database and the current job
        p = await get_ok(base, "/api/v1/pool", "/api/v1/pool")
        assert p["blocks_found"] == 2 and p["workers"] == 2 and p["miners"] == 1
        assert p["hashrate_hs"] == pytest.approx(diff_sum * 2**32 / 600)
        assert p["fee_bps"] == 250  # the register's dated pool fee (seed_register)
        assert p["network_difficulty"] == pytest.approx(4.6565423739e-10)
        assert p["height"] == pool.app.feed.current_job.height
        assert [b["hash"] for b in p["last_blocks"]] == [second, first]
        assert p["pplns"]["k"] == "2" and p["pplns"]["window_fill"] == 1.0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["time"])

        # blocks: newest first, one per page with a cursor, statuses and allocation
        page1 = await get_ok(base, "/api/v1/blocks?limit=1", "/api/v1/blocks")
        (b2,) = page1["items"]
        assert b2["hash"] == second and b2["status"] == "pending"
        assert b2["allocation"]["reward_sats"] == a2.block.reward_sats
        assert b2["allocation"]["pool_fee_sats"] == a2.pool_fee_sats
        page2 = await get_ok(base, f"/api/v1/blocks?limit=1&cursor={page1['next_cursor']}",
                             "/api/v1/blocks")  # fmt: skip
        (b1,) = page2["items"]
        assert b1["hash"] == first and b1["status"] == "matured" and b1["confirmations"] >= 2
        assert page2["next_cursor"] is None
        everything = await get_ok(base, "/api/v1/blocks", "/api/v1/blocks")
        assert [b["hash"] for b in everything["items"]] == [second, first]

        # the account's own data with its token
        acc = "/api/v1/accounts/alice"
        bal = await get_ok(base, f"{acc}/balance", "/api/v1/accounts/{account}/balance", tok)
        assert bal == {"account": "alice", "immature_sats": a2.lines[0].net_sats,
                       "mature_sats": 0, "pending_payout_sats": 0,
                       "paid_sats": a1.lines[0].net_sats}  # fmt: skip
        assert paid_db == a1.lines[0].net_sats and sorted(nets.values()) == sorted(
            [a1.lines[0].net_sats, a2.lines[0].net_sats])  # fmt: skip
        w = await get_ok(base, f"{acc}/workers", "/api/v1/accounts/{account}/workers", tok)
        assert [x["worker"] for x in w["items"]] == workers_db == ["rig1", "rig2"]
        assert all(x["shares"] == 1 and x["hashrate_hs"] > 0 for x in w["items"])
        pays = await get_ok(base, f"{acc}/payments", "/api/v1/accounts/{account}/payments", tok)
        (pay,) = pays["items"]
        assert pay["amount_sats"] == paid_db and re.fullmatch(r"[0-9a-f]{64}", pay["txid"])
        assert pay["status"] in ("broadcast", "confirmed")
        dist = await get_ok(base, f"{acc}/distributions",
                            "/api/v1/accounts/{account}/distributions", tok)  # fmt: skip
        d2, d1 = dist["items"]
        assert (d2["block_hash"], d2["status"], d2["txids"]) == (second, "immature", [])
        assert d1["block_hash"] == first and d1["txids"] == [pay["txid"]]
        assert d1["net_sats"] + d1["fee_sats"] == d1["gross_sats"] == a1.lines[0].gross_sats
        one = await get_ok(base, f"{acc}/distributions?limit=1&cursor=1",
                           "/api/v1/accounts/{account}/distributions", tok)  # fmt: skip
        assert one["items"] == [d1] and one["next_cursor"] is None
        far = await get_ok(base, f"{acc}/distributions?from=2020-01-01&to=2020-01-31",
                           "/api/v1/accounts/{account}/distributions", tok)  # fmt: skip
        assert far["items"] == []

        # no enumeration: unknown account and wrong token answer the same; no token: 401
        answers = [await fetch(base, path, token) for path, token in (
            (f"{acc}/balance", "qzp_wrong"), ("/api/v1/accounts/nobody/balance", tok),
            ("/api/v1/accounts/nobody/balance", "qzp_wrong"), ("/api/v1/accounts/bob/payments",
                                                               tok))]  # fmt: skip
        assert {(s, str(b)) for s, b, _ in answers} == {(404, str(NOT_FOUND_OR_DENIED))}
        status, body, headers = await fetch(base, f"{acc}/balance")
        assert status == 401 and body["error"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert headers["Cache-Control"] == "no-store"
        assert await WebTokens(engine).revoke("alice") == 1
        status, body, _ = await fetch(base, f"{acc}/balance", tok)
        assert (status, body) == (404, NOT_FOUND_OR_DENIED)

        # the regulator view
        reg = await get_ok(base, f"/api/v1/regulator/miners?{today_range()}",
                           "/api/v1/regulator/miners", REGULATOR_TOKEN)  # fmt: skip
        by = {m["account"]: m for m in reg["items"]}
        assert sorted(by) == ["alice", "bob", "carol"]
        assert by["alice"]["license"]["state"] == "active" and by["alice"]["workers"] == 2
        assert by["alice"]["distributions"] == 2
        assert by["alice"]["net_sats"] == a1.lines[0].net_sats + a2.lines[0].net_sats
        assert by["carol"]["license"]["state"] == "none" and len(by["carol"]["iin_bin"]) == 12
        one_miner = await get_ok(
            base,
            f"/api/v1/regulator/miners/alice?{today_range()}",
            "/api/v1/regulator/miners/{account}",
            REGULATOR_TOKEN,
        )
        hist = one_miner["hashrate_history"]
        assert len(hist) == 48 and sum(h["shares"] for h in hist) == 2  # 2 days, hourly
        assert sum(Fraction(h["hashrate_hs"]) * 3600 for h in hist) / 2**32 == pytest.approx(
            diff_sum)  # fmt: skip
        assert [d["block_hash"] for d in one_miner["distributions"]] == [first, second]
        for token in (None, "qzr_wrong", tok):
            status, body, _ = await fetch(base, f"/api/v1/regulator/miners?{today_range()}",
                                          token)  # fmt: skip
            assert status == 401 and body["error"] == "unauthorized"

        # the page and its files are served; request metrics with bounded labels
        status, html, headers = await fetch(base, "/")
        assert status == 200 and "/static/app.js" in html
        for name in ("app.js", "app.css", "i18n.js", "favicon.svg"):
            assert (await fetch(base, f"/static/{name}"))[0] == 200
        _, text, _ = await fetch(pool.metrics, "")
        assert 'qazpool_web_requests_total{route="/api/v1/blocks",status_class="2xx"} 3.0' in text
        assert ('qazpool_web_requests_total{route="/api/v1/accounts/{account}/balance",'
                'status_class="4xx"}') in text  # fmt: skip
        assert "qazpool_web_request_duration_seconds_bucket{" in text


@pytest.fixture
async def served(engine: Any) -> AsyncIterator[Any]:
    """The web application on a fresh database, with a handle to swap its settings."""
    servers: list[WebServer] = []

    async def serve(figures: Any = None, **web: Any) -> str:
        cfg = config_from_dict({"web": {"port": 0, **web}})
        ctx = web_context(cfg, engine, figures or (lambda: PoolFigures(1e12, 900_000)))
        server = WebServer(ctx, WebStats())
        servers.append(server)
        host, port = await server.start()
        return f"http://{host}:{port}"

    try:
        yield serve
    finally:
        for s in servers:
            await s.stop()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/blocks?limit=0", "limit"),
        ("/api/v1/blocks?limit=abc", "limit"),
        ("/api/v1/blocks?limit=201", "limit"),
        ("/api/v1/blocks?cursor=-5", "cursor"),
        ("/api/v1/blocks?page=2", "page"),
        ("/api/v1/pool/hashrate?hours=1000", "hours"),
        ("/api/v1/accounts/bad%20name/balance", "account"),
        ("/api/v1/accounts/" + "a" * 65 + "/workers", "account"),
        ("/api/v1/regulator/miners", "from"),
        ("/api/v1/regulator/miners?from=2026-13-01&to=2026-12-01", "from"),
        ("/api/v1/regulator/miners?from=2026-12-01", "to"),
        ("/api/v1/regulator/miners?from=2026-12-02&to=2026-12-01", "to"),
        ("/api/v1/regulator/miners?from=2024-01-01&to=2026-01-01", "to"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(served, path, field):
    base = await served(regulator_token_sha256=hashlib.sha256(b"qzr_x").hexdigest())
    status, body, headers = await fetch(base, path, "qzr_x")
    assert status == 422, body
    assert headers["X-Content-Type-Options"] == "nosniff"  # errors carry the headers too
    assert body["error"] == "invalid_parameter" and body["field"] == field
    assert body["detail"].startswith(f"{field}: ")


async def test_unknown_account_and_wrong_token_are_the_same_404(served, engine):
    await seed_register(engine)
    token = await WebTokens(engine).issue("alice")
    base = await served()
    assert (await fetch(base, "/api/v1/accounts/alice/balance", token))[0] == 200
    answers = set()
    for account, tok in (("alice", token[:-1] + "x"), ("nobody", token), ("nobody", "x"),
                         ("bob", token), ("alice", "Bearer")):  # fmt: skip
        status, body, headers = await fetch(base, f"/api/v1/accounts/{account}/balance", tok)
        answers.add((status, str(body), headers["Content-Length"]))
    (answer,) = answers  # byte for byte the same answer each time
    assert answer[:2] == (404, str(NOT_FOUND_OR_DENIED))
    status, body, _ = await fetch(base, "/api/v1/no/such/route")
    assert (status, body["error"]) == (404, "not_found")


async def test_rate_limit_per_ip_answers_429_with_retry_after(served):
    base = await served(rate_limit_per_minute=1, rate_limit_burst=3)
    statuses = [(await fetch(base, "/api/v1/blocks"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body, headers = await fetch(base, "/api/v1/blocks")
    assert status == 429 and body["error"] == "rate_limited"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert 1 <= int(headers["Retry-After"]) <= 60
    # X-Forwarded-For from a peer that is not a trusted proxy changes nothing
    spoofed = await fetch(base, "/api/v1/blocks", headers={"X-Forwarded-For": "203.0.113.9"})
    assert spoofed[0] == 429


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(served):
    base = await served(rate_limit_per_minute=1, rate_limit_burst=1,
                        trusted_proxies=["127.0.0.1"])  # fmt: skip
    a = {"X-Forwarded-For": "198.51.100.7"}
    b = {"X-Forwarded-For": "10.0.0.1, 198.51.100.8"}  # the proxy saw .8; .1 is client-made
    assert (await fetch(base, "/api/v1/blocks", headers=a))[0] == 200
    assert (await fetch(base, "/api/v1/blocks", headers=a))[0] == 429
    assert (await fetch(base, "/api/v1/blocks", headers=b))[0] == 200
    assert (
        await fetch(base, "/api/v1/blocks", headers={"X-Forwarded-For": "10.0.0.1, 198.51.100.8"})
    )[0] == 429


async def test_an_unexpected_error_is_a_bare_json_500_logged_server_side(served, caplog):
    def broken() -> PoolFigures:
        raise RuntimeError("secret internal detail /etc/qazpool")

    base = await served(figures=broken)
    with caplog.at_level(logging.ERROR, logger="poolserver.web.app"):
        status, body, headers = await fetch(base, "/api/v1/pool")
    assert status == 500 and headers["Content-Type"].startswith("application/json")
    assert body == {"error": "internal", "detail": "internal error (logged by the pool)"}
    assert "Traceback" in caplog.text and "secret internal detail" in caplog.text


async def test_database_down_is_503_without_details(tmp_path):
    from poolserver.storage.engine import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/none.sqlite3")
    ctx = web_context(config_from_dict({"web": {"port": 0}}), engine,
                      lambda: PoolFigures(1.0, 1))  # fmt: skip
    server = WebServer(ctx, WebStats())
    host, port = await server.start()
    try:
        status, body, headers = await fetch(f"http://{host}:{port}", "/api/v1/blocks")
    finally:
        await server.stop()
        await engine.dispose()
    assert status == 503 and body["error"] == "unavailable" and headers["Retry-After"] == "5"
    assert "missing-dir" not in str(body)


def test_openapi_schema_lists_exactly_the_routes():
    documented = set(SCHEMA["paths"])
    served_paths = {path for path, _ in routes()}
    assert documented == served_paths
    for path, item in SCHEMA["paths"].items():
        params = {p["name"] for p in item["get"].get("parameters", [])}
        assert set(re.findall(r"{(\w+)}", path)) <= params, path
    assert SCHEMA["openapi"].startswith("3.")


async def test_openapi_is_served(served):
    base = await served()
    body = await get_ok(base, "/api/v1/openapi.json", "/api/v1/openapi.json")
    assert body == openapi_schema()
    # the regulator's range is required, the account's distributions range is not
    reg = body["paths"]["/api/v1/regulator/miners"]["get"]["parameters"]
    acc = body["paths"]["/api/v1/accounts/{account}/distributions"]["get"]["parameters"]
    assert all(p.get("required") for p in reg if p["name"] in ("from", "to"))
    assert not any(p.get("required") for p in acc if p["name"] in ("from", "to"))


async def test_regulator_view_is_off_without_a_configured_hash(served):
    base = await served()
    status, body, _ = await fetch(base, f"/api/v1/regulator/miners?{today_range()}", "qzr_x")
    assert (status, body["error"]) == (404, "not_found")


def test_rate_limiter_refills_and_stays_bounded():
    rl = RateLimiter(per_minute=60, burst=2, max_keys=3)
    assert rl.take("a", 0.0) is None and rl.take("a", 0.0) is None
    wait = rl.take("a", 0.0)
    assert wait == pytest.approx(1.0) and rl.retry_after(wait) == 1
    assert rl.take("a", 1.0) is None  # one token back after a second
    for key in "bcde":
        rl.take(key, 1.0)
    assert len(rl) == 3  # the oldest client was evicted
    rl.prune(100.0)
    assert len(rl) == 0


def test_web_settings_are_checked():
    for web, needle in (({"languages": ["de"]}, "web.languages"),
                        ({"regulator_token_sha256": "abc"}, "web.regulator_token_sha256"),
                        ({"hashrate_window_s": 1}, "web.hashrate_window_s")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            web_context(config_from_dict({"web": web}), None, None)
    with pytest.raises(ValueError, match="rate_limit"):
        RateLimiter(0, 1)


async def test_hashrate_buckets_are_grouped_in_the_database(engine, tmp_path):
    """Shares a second apart: one row per 5-minute bucket from the database (not one per
    share), and the history's figures are the exact sums."""
    from poolserver.web.queries import hashrate_history, share_buckets
    from tests.payout_support import journal_shares

    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    plan = [("alice", 0.5, start + timedelta(seconds=i)) for i in range(20)]
    plan += [("bob", 0.25, start + timedelta(seconds=300 + i)) for i in range(8)]
    await journal_shares(engine, tmp_path / "spool", plan)
    async with engine.connect() as conn:
        rows = (await conn.execute(share_buckets(engine, start, start + timedelta(hours=1),
                                                 300))).all()  # fmt: skip
    assert sorted((int(b), float(d), n) for b, d, n in rows) == [
        (int(start.timestamp()) // 300, 10.0, 20),
        (int(start.timestamp()) // 300 + 1, 2.0, 8),
    ]
    history = await hashrate_history(engine, start, start + timedelta(minutes=15), 300)
    assert [(p["start"], p["shares"]) for p in history] == [
        ("2026-11-30T10:00:00Z", 20),
        ("2026-11-30T10:05:00Z", 8),
        ("2026-11-30T10:10:00Z", 0),
    ]
    assert history[0]["hashrate_hs"] == 10.0 * 2**32 / 300
    only_bob = await hashrate_history(engine, start, start + timedelta(minutes=10), 300, "bob")
    assert [p["shares"] for p in only_bob] == [0, 8]


async def test_public_answers_are_reused_for_a_few_seconds(engine):
    """A crowd on the public page costs one database read per URL per ``cache_s``; a new
    block shows once that passed (a miner's own data is never cached: the revocation in the
    first test is effective at once)."""
    from poolserver.storage.repository import FoundBlocks

    ctx = web_context(config_from_dict({"web": {"port": 0}}), engine,
                      lambda: PoolFigures(1.0, 1))  # fmt: skip
    server = WebServer(ctx, WebStats())
    host, port = await server.start()
    base = f"http://{host}:{port}"
    try:
        first = await get_ok(base, "/api/v1/pool", "/api/v1/pool")
        await FoundBlocks(engine).add(
            block_hash="ab" * 32, height=7, prevhash="00" * 32, account="alice", worker="rig",
            job_id="1", block_hex="00", coinbase_value=5_000_000_000, bits=0x207FFFFF,
            found_at=datetime.now(UTC))  # fmt: skip
        cached = await get_ok(base, "/api/v1/pool", "/api/v1/pool")
        ctx.cache_s = 0.0
        fresh = await get_ok(base, "/api/v1/pool", "/api/v1/pool")
    finally:
        await server.stop()
    assert first["blocks_found"] == cached["blocks_found"] == 0
    assert fresh["blocks_found"] == 1 and fresh["last_blocks"][0]["height"] == 7


def test_rate_limit_key_groups_an_ipv6_subscriber_network():
    from poolserver.web.app import bucket_key

    assert bucket_key("2001:db8:1:2:aaaa::1") == bucket_key("2001:db8:1:2:bbbb::9")
    assert bucket_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert bucket_key("2001:db8:1:3::1") != bucket_key("2001:db8:1:2::1")
    assert bucket_key("::ffff:203.0.113.5") == "203.0.113.5" == bucket_key("203.0.113.5")
    assert bucket_key("unknown") == "unknown"


async def test_a_taken_port_is_refused_naming_the_option(engine):
    ctx = web_context(config_from_dict({"web": {"port": 0}}), engine,
                      lambda: PoolFigures(1.0, 1))  # fmt: skip
    first = WebServer(ctx, WebStats())
    _, port = await first.start()
    try:
        ctx.config.port = port
        taken = rf"web: cannot listen on 127\.0\.0\.1:{port} .*\[web\]"
        with pytest.raises(ValueError, match=taken):
            await WebServer(ctx, WebStats()).start()
    finally:
        await first.stop()
