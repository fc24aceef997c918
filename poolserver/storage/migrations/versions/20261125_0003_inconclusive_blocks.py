"""found_blocks.status 'inconclusive': a block the node stored off its best chain (submitblock
answered ``inconclusive``) is undecided, not orphaned. Rows written before this revision as
``orphaned`` with ``data["submit"] == "inconclusive"`` become ``inconclusive``; the payout
service asks the node about them again on its next tick (and marks them ``orphaned`` if the
node says the block is not in the main chain).

Revision ID: 0003_inconclusive
Revises: 0002_register
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_inconclusive"
down_revision: str | Sequence[str] | None = "0002_register"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('pending', 'accepted', 'rejected', 'orphaned')"
NEW = "status IN ('pending', 'accepted', 'rejected', 'inconclusive', 'orphaned')"

_blocks = sa.table(
    "found_blocks",
    sa.column("id", sa.BigInteger()),
    sa.column("status", sa.String(16)),
    sa.column("data", sa.JSON()),
)


def _set_check(condition: str) -> None:
    with op.batch_alter_table("found_blocks", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_found_blocks_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_found_blocks_status"), condition)


def _move(old: str, new: str) -> None:
    """Move rows in status ``old`` whose submission answer was inconclusive to ``new`` (few
    rows: only blocks the nodes did not take)."""
    conn = op.get_bind()
    rows = conn.execute(sa.select(_blocks.c.id, _blocks.c.data).where(_blocks.c.status == old))
    ids = [bid for bid, data in rows if (data or {}).get("submit") == "inconclusive"]
    if ids:
        conn.execute(_blocks.update().where(_blocks.c.id.in_(ids)).values(status=new))


def upgrade() -> None:
    _set_check(NEW)
    _move("orphaned", "inconclusive")


def downgrade() -> None:
    _move("inconclusive", "orphaned")
    _set_check(OLD)
