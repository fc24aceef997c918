"""`poolserver web ...`: read tokens issued, listed and revoked on the database (only hashes
stored), the regulator token's config line, clear errors without a traceback."""

from __future__ import annotations

import asyncio
import hashlib
import re

from sqlalchemy import select

from poolserver.cli import main
from poolserver.storage.engine import create_engine
from poolserver.storage.web_models import WebToken
from poolserver.web.tokens import WebTokens, regulator_ok
from tests.payout_support import seed_register


def _db(db_url, coro_fn):
    async def run():
        engine = create_engine(db_url)
        try:
            return await coro_fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_issue_list_revoke(db_url, tmp_path, capsys):
    _db(db_url, seed_register)
    cfg = tmp_path / "pool.toml"
    cfg.write_text(f'[storage]\nurl = "{db_url}"\n')
    assert main(["--config", str(cfg), "web", "token", "issue", "alice", "--note", "ops"]) == 0
    out = capsys.readouterr().out
    (token,) = re.findall(r"^(qzp_[A-Za-z0-9_-]{43})$", out, re.M)

    async def stored(engine):
        async with engine.connect() as conn:
            rows = (await conn.execute(select(WebToken.token_sha256))).scalars().all()
        return list(rows), await WebTokens(engine).check("alice", token)

    hashes, ok = _db(db_url, stored)
    assert hashes == [hashlib.sha256(token.encode()).hexdigest()] and ok  # the hash, not it
    assert main(["--config", str(cfg), "web", "token", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"alice\t{token[:10]}…\tops\t" in listed and token not in listed
    assert main(["--config", str(cfg), "web", "token", "revoke", "alice"]) == 0
    assert "revoked 1 token(s) of alice" in capsys.readouterr().out
    assert _db(db_url, lambda e: WebTokens(e).check("alice", token)) is False
    assert main(["--config", str(cfg), "web", "token", "revoke", "alice"]) == 1
    # an account the register does not know, or not a Stratum account name: refused, named
    assert main(["--config", str(cfg), "web", "token", "issue", "mallory"]) == 2
    assert main(["--config", str(cfg), "web", "token", "issue", "a b"]) == 2
    err = capsys.readouterr().err
    assert "ACCOUNT 'mallory' is not in the miner register" in err and "ACCOUNT 'a b'" in err
    assert "Traceback" not in err


def test_regulator_token_prints_its_config_line(capsys):
    assert main(["web", "regulator-token"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"^(qzr_\S+)$", out, re.M).group(1)
    digest = re.search(r'^regulator_token_sha256 = "([0-9a-f]{64})"$', out, re.M).group(1)
    assert regulator_ok(token, digest) and not regulator_ok(token + "x", digest)
