"""Scale-out: ``instance_leases``, one row per pool instance id ([pool].node_id, the extranonce1
prefix) with its holder and a lease expiry renewed by the running instance. A second process
with the same id is refused at startup while the lease is live, not after it lapsed.

Revision ID: 0008_instance_leases
Revises: 0007_kzt_rates
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_instance_leases"
down_revision: str | Sequence[str] | None = "0007_kzt_rates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_leases",
        sa.Column("instance_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_instance_leases")),
    )


def downgrade() -> None:
    op.drop_table("instance_leases")
