"""ledger_entries.block_id filled and indexed: the payout service reads the credits and
reversals of the blocks it is checking, not the whole ledger. Existing credit / reversal rows
get their block id from ``data["block_hash"]``.

Revision ID: 0004_ledger_block
Revises: 0003_inconclusive
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_ledger_block"
down_revision: str | Sequence[str] | None = "0003_inconclusive"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_entries = sa.table("ledger_entries", sa.column("id", sa.BigInteger()),
                    sa.column("kind", sa.String(32)), sa.column("block_id", sa.BigInteger()),
                    sa.column("data", sa.JSON()))
_blocks = sa.table("found_blocks", sa.column("id", sa.BigInteger()),
                   sa.column("block_hash", sa.String(64)))


def upgrade() -> None:
    conn = op.get_bind()
    ids = dict(conn.execute(sa.select(_blocks.c.block_hash, _blocks.c.id)).all())
    rows = conn.execute(sa.select(_entries.c.id, _entries.c.data).where(
        _entries.c.block_id.is_(None), _entries.c.kind.in_(["credit", "reversal"]))).all()
    for entry_id, data in rows:
        block_id = ids.get((data or {}).get("block_hash"))
        if block_id is not None:
            conn.execute(_entries.update().where(_entries.c.id == entry_id)
                         .values(block_id=block_id))
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_block_id"), ["block_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_block_id"))
