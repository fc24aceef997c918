"""Hot-wallet caps (issue 17): a payment batch above ``[payouts].max_payment_sat`` or
``max_daily_sat`` is stored in status ``awaiting_approval`` (its debits reserve the money) until
``poolserver payouts approve BATCH`` moves it to ``pending``. The status column grows to 32
characters for the new state's name.

Revision ID: 0011_payout_approval
Revises: 0010_security_events
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_payout_approval"
down_revision: str | Sequence[str] | None = "0010_security_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('pending', 'broadcast', 'confirmed', 'failed')"
NEW = "status IN ('awaiting_approval', 'pending', 'broadcast', 'confirmed', 'failed')"


def _set(condition: str, length: int) -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_status"), type_="check")
        batch_op.alter_column("status", type_=sa.String(length=length),
                              existing_nullable=False)
        batch_op.create_check_constraint(op.f("ck_payments_status"), condition)


def upgrade() -> None:
    _set(NEW, 32)


def downgrade() -> None:
    # a batch still awaiting approval has nothing sent: it goes back to the plain outbox as
    # pending only by an operator's decision, so refuse rather than guess
    conn = op.get_bind()
    held = conn.execute(sa.text("SELECT count(*) FROM payments "
                                "WHERE status = 'awaiting_approval'")).scalar_one()
    if held:
        raise RuntimeError(f"{held} payment batch(es) await approval: approve or fail them "
                           "before downgrading")
    _set(OLD, 16)
