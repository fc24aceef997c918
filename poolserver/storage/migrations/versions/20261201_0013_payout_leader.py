"""Scale-out: the payout/maturity leader lease and the fencing token on payments.

``payout_leader``: one row (``name = 'payouts'``) naming the instance that runs the payout
service, the lease's ``epoch`` (incremented at every change of holder: the fencing token) and
its expiry on the database's clock. ``payments.sending_epoch`` / ``sending_at``: the epoch of the
leader that marked the batch as about to be sent, written in the same transaction that checked
and extended that leader's lease (a successor reconciles such a batch by comment first).

Revision ID: 0013_payout_leader
Revises: 0012_web_tokens
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_payout_leader"
down_revision: str | Sequence[str] | None = "0012_web_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payout_leader",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_payout_leader")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sending_epoch", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("sending_at")
        batch_op.drop_column("sending_epoch")
    op.drop_table("payout_leader")
