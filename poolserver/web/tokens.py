"""Read tokens: a miner's token for its account's data, the regulator's for the regulator view.

Tokens are 256-bit random (``secrets.token_urlsafe(32)``) with a readable prefix; only their
SHA-256 is stored (``web_tokens.token_sha256``; the regulator's in ``[web]
regulator_token_sha256``). A check hashes the presented token first, looks the hash up, and
compares with ``hmac.compare_digest``; an unknown account and a wrong token take the same path
and give the same answer (no enumeration of accounts).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.storage.web_models import WebToken

MINER_PREFIX = "qzp_"
REGULATOR_PREFIX = "qzr_"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def new_token(prefix: str = MINER_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_hash_setting(value: str, field: str) -> str:
    """A configured SHA-256 hex (lower case) or ""; ValueError naming ``field`` otherwise."""
    v = value.strip().lower()
    if v and not _HEX64.match(v):
        raise ValueError(f"{field}: expected the 64 hex digits of a SHA-256, got {value!r}")
    return v


def regulator_ok(presented: str | None, configured_sha256: str) -> bool:
    """Constant-time check of the regulator's token against its configured hash."""
    if not configured_sha256 or not presented:
        return False
    return hmac.compare_digest(token_hash(presented), configured_sha256)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    account: str
    prefix: str
    note: str
    created_at: datetime
    revoked_at: datetime | None


class WebTokens:
    """The ``web_tokens`` table: issue, revoke, list, check."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def issue(self, account: str, note: str = "") -> str:
        """A new token for ``account`` (returned once; only its hash is stored)."""
        token = new_token()
        async with self.engine.begin() as conn:
            await conn.execute(
                WebToken.__table__.insert().values(
                    account=account, token_sha256=token_hash(token),
                    prefix=token[: len(MINER_PREFIX) + 6], note=note,
                    created_at=datetime.now(UTC), revoked_at=None,
                )
            )  # fmt: skip
        return token

    async def revoke(self, account: str, token_id: int | None = None) -> int:
        """Revoke the account's live tokens (or only ``token_id``); returns how many."""
        q = WebToken.__table__.update().where(
            WebToken.account == account, WebToken.revoked_at.is_(None)
        )
        if token_id is not None:
            q = q.where(WebToken.id == token_id)
        async with self.engine.begin() as conn:
            result = await conn.execute(q.values(revoked_at=datetime.now(UTC)))
        return int(result.rowcount or 0)

    async def list(self, account: str | None = None) -> list[TokenInfo]:
        q = select(WebToken.id, WebToken.account, WebToken.prefix, WebToken.note,
                   WebToken.created_at, WebToken.revoked_at).order_by(WebToken.id)  # fmt: skip
        if account is not None:
            q = q.where(WebToken.account == account)
        async with self.engine.connect() as conn:
            return [TokenInfo(*r) for r in (await conn.execute(q)).all()]

    async def check(self, account: str, presented: str | None) -> bool:
        """True only for a live token of ``account``. Hash first, one indexed lookup by hash,
        then a constant-time comparison of the account: the same work whether the account
        exists, the token exists for another account, or neither."""
        digest = token_hash(presented or "")
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(WebToken.account).where(
                        WebToken.token_sha256 == digest, WebToken.revoked_at.is_(None)
                    )
                )
            ).first()
        owner = row[0] if row is not None else "\x00"
        same = hmac.compare_digest(owner.encode(), account.encode())
        return bool(presented) and same
