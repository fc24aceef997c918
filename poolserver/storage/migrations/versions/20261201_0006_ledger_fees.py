"""Payout fees and holds: payments.fee_sats / fee_policy (the network fee read from the wallet
and who paid it), payment_outputs.fee_sats (a miner's share under fee_policy "miners"), and
payout_holds (miners whose output the wallet refused on its own). New ledger kinds (tx_fee,
deposit, withdrawal) need no schema change (ledger_entries.kind is free text).

Revision ID: 0006_ledger_fees
Revises: 0005_share_hash
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_ledger_fees"
down_revision: str | Sequence[str] | None = "0005_share_hash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee_sats", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("fee_policy", sa.String(length=16), nullable=False,
                                      server_default="pool"))
    with op.batch_alter_table("payment_outputs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee_sats", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    op.create_table(
        "payout_holds",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_holds")),
    )
    with op.batch_alter_table("payout_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payout_holds_account"), ["account"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payout_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payout_holds_account"))
    op.drop_table("payout_holds")
    with op.batch_alter_table("payment_outputs", schema=None) as batch_op:
        batch_op.drop_column("fee_sats")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("fee_policy")
        batch_op.drop_column("fee_sats")
