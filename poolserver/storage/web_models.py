"""Tables of the web API (issue 16): miners' read tokens for their account's page.

A token is shown once when issued; only its SHA-256 is stored (tokens are 256-bit random, so a
plain hash is enough: nothing to brute-force). Revocation sets ``revoked_at``; rows are kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from poolserver.storage.models import Base, BigId


class WebToken(Base):
    """One read token of one miner account (several may be live, e.g. one per person)."""

    __tablename__ = "web_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # hex
    # the first characters of the token, shown by `poolserver web token list` to tell them apart
    prefix: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
