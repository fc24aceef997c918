"""Web API (issue 16): ``web_tokens``, the miners' read tokens (SHA-256 only, never the token),
and an index on ``shares (account, created_at)`` for one miner's recent shares (the page's
workers, the regulator's hashrate history).

Revision ID: 0012_web_tokens
Revises: 0011_payout_approval
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_web_tokens"
down_revision: str | Sequence[str] | None = "0011_payout_approval"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_web_tokens_token_sha256")),
    )
    op.create_index(op.f("ix_web_tokens_account"), "web_tokens", ["account"], unique=False)
    op.create_index(
        "ix_shares_account_created_at", "shares", ["account", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_shares_account_created_at", table_name="shares")
    op.drop_index(op.f("ix_web_tokens_account"), table_name="web_tokens")
    op.drop_table("web_tokens")
