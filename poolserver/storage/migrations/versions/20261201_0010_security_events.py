"""The security event log (issue 17): ``security_events``, append-only and hash-chained like
``reg_audit`` (authorization refusals, bans, connection floods, operator CLI actions, config
changes at startup). Indexed by time for ``poolserver security-log export --from --to``.

Revision ID: 0010_security_events
Revises: 0009_probe_results
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_security_events"
down_revision: str | Sequence[str] | None = "0009_probe_results"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "security_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("who", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_security_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_security_events_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_security_events_prev_hash")),
    )
    op.create_index("ix_security_events_at", "security_events", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_security_events_at", table_name="security_events")
    op.drop_table("security_events")
