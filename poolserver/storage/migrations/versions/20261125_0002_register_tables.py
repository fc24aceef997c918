"""register tables: miners, licenses, suspensions, payout addresses, miner fee rates,
machines, and the hash-chained audit log (append-only, enforced by triggers)

Revision ID: 0002_register
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_register"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reg_audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("who", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("old", sa.Text(), nullable=False),
        sa.Column("new", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_reg_audit")),
        sa.UniqueConstraint("hash", name=op.f("uq_reg_audit_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_reg_audit_prev_hash")),
    )
    op.create_table(
        "reg_miners",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=False),
        sa.Column("iin_bin", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=3), nullable=False),
        sa.Column("contact", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('IIN', 'BIN')", name=op.f("ck_reg_miners_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reg_miners")),
        sa.UniqueConstraint("account", name=op.f("uq_reg_miners_account")),
        sa.UniqueConstraint("iin_bin", name=op.f("uq_reg_miners_iin_bin")),
    )
    op.create_table(
        "reg_licenses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("miner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("subtype", sa.String(length=2), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("subtype IN ('I', 'II')", name=op.f("ck_reg_licenses_subtype")),
        sa.CheckConstraint("expires_on > issued_on", name=op.f("ck_reg_licenses_dates")),
        sa.ForeignKeyConstraint(
            ["miner_id"], ["reg_miners.id"], name=op.f("fk_reg_licenses_miner_id_reg_miners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reg_licenses")),
        sa.UniqueConstraint("number", name=op.f("uq_reg_licenses_number")),
    )
    with op.batch_alter_table("reg_licenses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reg_licenses_miner_id"), ["miner_id"], unique=False)

    op.create_table(
        "reg_machines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("manufacturer", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("rated_hashrate", sa.BigInteger(), nullable=False),
        sa.Column("power_w", sa.Integer(), nullable=False),
        sa.Column("miner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("data_centre", sa.String(length=200), nullable=False),
        sa.Column("registry_number", sa.String(length=64), nullable=False),
        sa.Column("registry_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "rated_hashrate > 0 AND power_w > 0", name=op.f("ck_reg_machines_positive")
        ),
        sa.ForeignKeyConstraint(
            ["miner_id"], ["reg_miners.id"], name=op.f("fk_reg_machines_miner_id_reg_miners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reg_machines")),
        sa.UniqueConstraint("serial", name=op.f("uq_reg_machines_serial")),
    )
    with op.batch_alter_table("reg_machines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reg_machines_miner_id"), ["miner_id"], unique=False)

    op.create_table(
        "reg_miner_fee_rates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("miner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "fee_bps >= 0 AND fee_bps <= 10000", name=op.f("ck_reg_miner_fee_rates_fee_bps")
        ),
        sa.ForeignKeyConstraint(
            ["miner_id"], ["reg_miners.id"], name=op.f("fk_reg_miner_fee_rates_miner_id_reg_miners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reg_miner_fee_rates")),
    )
    with op.batch_alter_table("reg_miner_fee_rates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reg_miner_fee_rates_miner_from", ["miner_id", "effective_from"], unique=False
        )

    op.create_table(
        "reg_payout_addresses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("miner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("network", sa.String(length=16), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["miner_id"],
            ["reg_miners.id"],
            name=op.f("fk_reg_payout_addresses_miner_id_reg_miners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reg_payout_addresses")),
    )
    with op.batch_alter_table("reg_payout_addresses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reg_payout_addresses_miner_from", ["miner_id", "effective_from"], unique=False
        )

    op.create_table(
        "reg_suspensions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "license_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["reg_licenses.id"],
            name=op.f("fk_reg_suspensions_license_id_reg_licenses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reg_suspensions")),
    )
    with op.batch_alter_table("reg_suspensions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reg_suspensions_license_id"), ["license_id"], unique=False
        )

    _append_only_audit()


_SQLITE_TRIGGERS = (
    "CREATE TRIGGER reg_audit_no_update BEFORE UPDATE ON reg_audit "
    "BEGIN SELECT RAISE(ABORT, 'reg_audit is append-only'); END",
    "CREATE TRIGGER reg_audit_no_delete BEFORE DELETE ON reg_audit "
    "BEGIN SELECT RAISE(ABORT, 'reg_audit is append-only'); END",
)
_PG_TRIGGER = (
    "CREATE FUNCTION reg_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'reg_audit is append-only'; END $$",
    "CREATE TRIGGER reg_audit_no_change BEFORE UPDATE OR DELETE ON reg_audit "
    "FOR EACH ROW EXECUTE FUNCTION reg_audit_append_only()",
)


def _append_only_audit() -> None:
    """Refuse UPDATE/DELETE on the audit log in the database itself (a guard against mistakes;
    tampering by someone who can drop the trigger is what `poolserver audit verify` finds)."""
    dialect = op.get_bind().dialect.name
    for sql in _SQLITE_TRIGGERS if dialect == "sqlite" else _PG_TRIGGER:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER reg_audit_no_update")
        op.execute("DROP TRIGGER reg_audit_no_delete")
    else:
        op.execute("DROP TRIGGER reg_audit_no_change ON reg_audit")
        op.execute("DROP FUNCTION reg_audit_append_only()")
    with op.batch_alter_table("reg_suspensions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reg_suspensions_license_id"))

    op.drop_table("reg_suspensions")
    with op.batch_alter_table("reg_payout_addresses", schema=None) as batch_op:
        batch_op.drop_index("ix_reg_payout_addresses_miner_from")

    op.drop_table("reg_payout_addresses")
    with op.batch_alter_table("reg_miner_fee_rates", schema=None) as batch_op:
        batch_op.drop_index("ix_reg_miner_fee_rates_miner_from")

    op.drop_table("reg_miner_fee_rates")
    with op.batch_alter_table("reg_machines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reg_machines_miner_id"))

    op.drop_table("reg_machines")
    with op.batch_alter_table("reg_licenses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reg_licenses_miner_id"))

    op.drop_table("reg_licenses")
    op.drop_table("reg_miners")
    op.drop_table("reg_audit")
