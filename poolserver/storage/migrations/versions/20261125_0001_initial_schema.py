"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "fee_rates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name=op.f("ck_fee_rates_fee_bps")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_rates")),
        sa.UniqueConstraint("effective_from", name=op.f("uq_fee_rates_effective_from")),
    )
    op.create_table(
        "found_blocks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("block_hash", sa.String(length=64), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("prevhash", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("block_hex", sa.Text(), nullable=False),
        sa.Column("coinbase_value", sa.BigInteger(), nullable=False),
        sa.Column("bits", sa.BigInteger(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'rejected', 'orphaned')",
            name=op.f("ck_found_blocks_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_found_blocks")),
        sa.UniqueConstraint("block_hash", name=op.f("uq_found_blocks_block_hash")),
    )
    with op.batch_alter_table("found_blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_found_blocks_height"), ["height"], unique=False)

    op.create_table(
        "payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("comment", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("txid", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'broadcast', 'confirmed', 'failed')",
            name=op.f("ck_payments_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("comment", name=op.f("uq_payments_comment")),
    )
    op.create_table(
        "share_rollups",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("share_count", sa.BigInteger(), nullable=False),
        sa.Column("difficulty_sum", sa.String(length=400), nullable=False),
        sa.Column("first_share_id", sa.BigInteger(), nullable=False),
        sa.Column("last_share_id", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_rollups")),
        sa.UniqueConstraint(
            "account", "bucket_start", name=op.f("uq_share_rollups_account_bucket_start")
        ),
    )
    op.create_table(
        "shares",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uid", sa.LargeBinary(length=16), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("difficulty", sa.Float(precision=53), nullable=False),
        sa.Column("share_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("is_block", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sa.String(length=256), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("uid", name=op.f("uq_shares_uid")),
    )
    with op.batch_alter_table("shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shares_created_at"), ["created_at"], unique=False)

    op.create_table(
        "block_allocations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("block_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("inputs_hash", sa.String(length=64), nullable=False),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("reward", sa.BigInteger(), nullable=False),
        sa.Column("pool_fee", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["block_id"],
            ["found_blocks.id"],
            name=op.f("fk_block_allocations_block_id_found_blocks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_allocations")),
        sa.UniqueConstraint("block_id", name=op.f("uq_block_allocations_block_id")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entry_key", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("block_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["block_id"], ["found_blocks.id"], name=op.f("fk_ledger_entries_block_id_found_blocks")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_ledger_entries_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("entry_key", name=op.f("uq_ledger_entries_entry_key")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_account"), ["account"], unique=False)

    op.create_table(
        "payment_outputs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_outputs_amount")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_outputs_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_outputs")),
        sa.UniqueConstraint(
            "payment_id", "account", name=op.f("uq_payment_outputs_payment_id_account")
        ),
    )
    with op.batch_alter_table("payment_outputs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_outputs_payment_id"), ["payment_id"], unique=False
        )

    op.create_table(
        "distributions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "allocation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "gross = fee + net AND fee >= 0 AND net >= 0", name=op.f("ck_distributions_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["block_allocations.id"],
            name=op.f("fk_distributions_allocation_id_block_allocations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributions")),
        sa.UniqueConstraint(
            "allocation_id", "account", name=op.f("uq_distributions_allocation_id_account")
        ),
    )
    with op.batch_alter_table("distributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_distributions_account"), ["account"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_distributions_allocation_id"), ["allocation_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("distributions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_distributions_allocation_id"))
        batch_op.drop_index(batch_op.f("ix_distributions_account"))

    op.drop_table("distributions")
    with op.batch_alter_table("payment_outputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_outputs_payment_id"))

    op.drop_table("payment_outputs")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_account"))

    op.drop_table("ledger_entries")
    op.drop_table("block_allocations")
    with op.batch_alter_table("shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shares_created_at"))

    op.drop_table("shares")
    op.drop_table("share_rollups")
    op.drop_table("payments")
    with op.batch_alter_table("found_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_found_blocks_height"))

    op.drop_table("found_blocks")
    op.drop_table("fee_rates")
