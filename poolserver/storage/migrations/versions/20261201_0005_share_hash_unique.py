"""shares.share_hash unique (the header hash is a share's identity) and ``share_conflicts``.

A share hash is stored at most once among the raw shares; a second share with the same hash is
recorded in ``share_conflicts`` (never credited). A database written before this revision may
already hold duplicates (the same work accepted under two job ids): for each duplicated hash the
first row (lowest id) stays in ``shares`` and every later row is moved to ``share_conflicts``
with ``source = 'migration'`` and ``existing_uid`` = the kept row's uid, then the unique index is
built. Nothing is dropped: the moved rows stay visible to the operator, and they no longer weigh
in PPLNS windows computed after the upgrade (frozen allocations are not touched).

Revision ID: 0005_share_hash
Revises: 0004_ledger_block
Create Date: 2026-12-01
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005_share_hash"
down_revision: str | Sequence[str] | None = "0004_ledger_block"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = (
    "uid", "account", "worker", "session_id", "peer", "job_id", "height", "difficulty",
    "share_hash", "is_block", "created_at", "user_agent", "extra",
)  # fmt: skip
CHUNK = 500
log = logging.getLogger(__name__)


def _shares() -> sa.TableClause:
    return sa.table(
        "shares",
        sa.column("id", sa.BigInteger()),
        *(sa.column(c) for c in COLUMNS if c not in ("created_at", "extra")),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("extra", sa.JSON()),
    )


def _create_conflicts() -> sa.Table:
    table = op.create_table(
        "share_conflicts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("uid", sa.LargeBinary(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("existing_uid", sa.LargeBinary(length=16), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.CheckConstraint(
            "source IN ('live', 'replay', 'migration')", name=op.f("ck_share_conflicts_source")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_conflicts")),
        sa.UniqueConstraint("uid", name=op.f("uq_share_conflicts_uid")),
    )
    op.create_index(op.f("ix_share_conflicts_detected_at"), "share_conflicts", ["detected_at"])
    op.create_index(op.f("ix_share_conflicts_share_hash"), "share_conflicts", ["share_hash"])
    assert table is not None
    return table


def _move_duplicates(conflicts: sa.Table) -> int:
    """Move every row whose share hash an earlier row (lower id) holds; returns how many."""
    conn = op.get_bind()
    shares = _shares()
    firsts = conn.execute(
        sa.select(shares.c.share_hash, sa.func.min(shares.c.id))
        .group_by(shares.c.share_hash)
        .having(sa.func.count() > 1)
    ).all()
    keep = {bytes(h): first for h, first in firsts}
    hashes = list(keep)
    now = datetime.now(UTC)
    moved = 0
    for i in range(0, len(hashes), CHUNK):
        chunk = hashes[i : i + CHUNK]
        rows = conn.execute(
            sa.select(shares).where(shares.c.share_hash.in_(chunk)).order_by(shares.c.id)
        ).all()
        kept_uid = {bytes(r.share_hash): r.uid for r in rows if r.id == keep[bytes(r.share_hash)]}
        later = [r for r in rows if r.id != keep[bytes(r.share_hash)]]
        conn.execute(
            conflicts.insert(),
            [
                {
                    **{c: getattr(r, c) for c in COLUMNS},
                    "source": "migration",
                    "existing_uid": kept_uid[bytes(r.share_hash)],
                    "detected_at": now,
                }
                for r in later
            ],
        )
        conn.execute(shares.delete().where(shares.c.id.in_([r.id for r in later])))
        moved += len(later)
    return moved


def upgrade() -> None:
    conflicts = _create_conflicts()
    moved = _move_duplicates(conflicts)
    if moved:
        log.warning("0005_share_hash: moved %d duplicate share rows to share_conflicts", moved)
    op.create_index(op.f("ix_shares_share_hash"), "shares", ["share_hash"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_shares_share_hash"), table_name="shares")
    op.drop_index(op.f("ix_share_conflicts_share_hash"), table_name="share_conflicts")
    op.drop_index(op.f("ix_share_conflicts_detected_at"), table_name="share_conflicts")
    op.drop_table("share_conflicts")
