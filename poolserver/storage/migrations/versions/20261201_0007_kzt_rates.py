"""BTC→KZT daily rates for the income reports (issue 13).

Revision ID: 0007_kzt_rates
Revises: 0006_ledger_fees
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_kzt_rates"
down_revision: str | Sequence[str] | None = "0006_ledger_fees"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kzt_rates",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rate", sa.String(length=40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_kzt_rates")),
    )


def downgrade() -> None:
    op.drop_table("kzt_rates")
