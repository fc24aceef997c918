"""Firmware probe (issue 15): ``probe_results``, one appended row per probe of a machine with
its outcome, normalised identity (each field's source), register findings and raw evidence.

Revision ID: 0009_probe_results
Revises: 0008_instance_leases
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_probe_results"
down_revision: str | Sequence[str] | None = "0008_instance_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = (
    "identified",
    "partial",
    "unreachable",
    "timeout",
    "refused",
    "api_disabled",
    "unknown_firmware",
    "error",
)


def upgrade() -> None:
    op.create_table(
        "probe_results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("probed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("user_agent", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("machine_key", sa.String(length=80), nullable=False),
        sa.Column("vendor", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("firmware_family", sa.String(length=32), nullable=True),
        sa.Column("firmware_version", sa.String(length=64), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("rated_hashrate", sa.BigInteger(), nullable=True),
        sa.Column("hashrate", sa.BigInteger(), nullable=True),
        sa.Column("power_w", sa.Integer(), nullable=True),
        sa.Column("uptime_s", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.Column("verdict", sa.String(length=200), nullable=False),
        sa.Column("identity", sa.JSON(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "outcome IN (" + ", ".join(f"'{o}'" for o in OUTCOMES) + ")",
            name=op.f("ck_probe_results_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_results")),
    )
    op.create_index(
        "ix_probe_results_machine_key_id", "probe_results", ["machine_key", "id"], unique=False
    )
    op.create_index("ix_probe_results_host_id", "probe_results", ["host", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_probe_results_host_id", table_name="probe_results")
    op.drop_index("ix_probe_results_machine_key_id", table_name="probe_results")
    op.drop_table("probe_results")
