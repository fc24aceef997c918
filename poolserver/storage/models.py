"""SQLAlchemy 2 typed declarative models: the pool's durable state.

Money is integer satoshis (BIGINT), difficulty sums are exact rationals, every timestamp is aware
UTC. Shares, ledger entries and allocations are append-only: rows are inserted, never updated
(repositories enforce it; reversals are new rows). Other ``*_models.py`` modules in this package
add their tables to the same ``Base`` (the Alembic environment imports them all).
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from poolserver.storage.types import ExactFraction, UTCDateTime

# A 64-bit auto-increment key that is SQLite's rowid (INTEGER PRIMARY KEY) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 (SQLAlchemy's documented idiom)
        datetime: UTCDateTime(),
        Fraction: ExactFraction(),
    }


class Share(Base):
    """One accepted share: the audit trail (miner, worker, session, source IP, job, difficulty,
    UTC time). ``uid`` is assigned by the journal before the share is acknowledged, so a replay
    from the spool inserts it at most once. ``share_hash`` (the header hash, which commits to the
    prevhash) is the share's identity: a unique index stores it at most once among the raw rows
    (a second row with the same hash goes to ``share_conflicts``, never here)."""

    __tablename__ = "shares"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    uid: Mapped[bytes] = mapped_column(LargeBinary(16), unique=True)
    account: Mapped[str] = mapped_column(String(128))
    worker: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    peer: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(64))
    height: Mapped[int] = mapped_column(Integer)
    # The exact IEEE double the share was judged at (PPLNS converts with Fraction(float)).
    difficulty: Mapped[float] = mapped_column(Float(53))
    share_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True, unique=True)
    is_block: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(index=True)
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    extra: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    # one miner's recent shares (the web page's workers, the regulator's history; issue 16)
    __table_args__ = (Index("ix_shares_account_created_at", "account", "created_at"),)


class ShareConflict(Base):
    """A share that was not stored because a share with the same ``share_hash`` already was: the
    operator's record of every conflict, never credited. ``source`` says where it was caught:
    ``live`` (a group commit; the miner was answered "Duplicate share"), ``replay`` (a spooled
    share, already acknowledged to the miner while the database was down) or ``migration``
    (a duplicate row moved out of ``shares`` by revision 0005). ``existing_uid`` is the uid of
    the stored share it collided with (None if that row was gone when the conflict was seen)."""

    __tablename__ = "share_conflicts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    uid: Mapped[bytes] = mapped_column(LargeBinary(16), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    existing_uid: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    detected_at: Mapped[datetime] = mapped_column(index=True)
    account: Mapped[str] = mapped_column(String(128))
    worker: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    peer: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(64))
    height: Mapped[int] = mapped_column(Integer)
    difficulty: Mapped[float] = mapped_column(Float(53))
    share_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    is_block: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    extra: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    __table_args__ = (CheckConstraint("source IN ('live', 'replay', 'migration')", name="source"),)


class ShareRollup(Base):
    """Exact per-miner sums of raw shares older than the retention, one row per miner per UTC
    hour. ``difficulty_sum`` is the exact rational sum of the shares' difficulties and
    ``first_share_id``/``last_share_id`` bound the rolled-up raw ids."""

    __tablename__ = "share_rollups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128))
    bucket_start: Mapped[datetime]
    share_count: Mapped[int] = mapped_column(BigInteger)
    difficulty_sum: Mapped[Fraction]
    first_share_id: Mapped[int] = mapped_column(BigInteger)
    last_share_id: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("account", "bucket_start"),)


class FoundBlock(Base):
    """A block found by the pool, persisted before it is submitted."""

    __tablename__ = "found_blocks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    block_hash: Mapped[str] = mapped_column(String(64), unique=True)  # display (RPC) order hex
    height: Mapped[int] = mapped_column(Integer, index=True)
    prevhash: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(128))
    worker: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str] = mapped_column(String(64))
    block_hex: Mapped[str] = mapped_column(Text)
    coinbase_value: Mapped[int] = mapped_column(BigInteger)  # satoshis
    # bits of the block's target; the network difficulty is derived exactly from it.
    bits: Mapped[int] = mapped_column(BigInteger)
    found_at: Mapped[datetime]
    # pending (persisted, not yet accepted by a node) -> accepted | rejected | inconclusive
    # (valid, stored off the node's best chain: undecided); the chain later moves accepted and
    # inconclusive blocks to accepted | orphaned
    status: Mapped[str] = mapped_column(String(16), default="pending")
    verdict: Mapped[str] = mapped_column(Text, default="")
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'accepted', 'rejected', 'inconclusive', 'orphaned')",
            name="status",
        ),
    )


class FeeRate(Base):
    """The pool fee in basis points, effective from a UTC time (dated history, never edited)."""

    __tablename__ = "fee_rates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    effective_from: Mapped[datetime] = mapped_column(unique=True)
    fee_bps: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_bps"),)


class BlockAllocation(Base):
    """The PPLNS allocation of one block: computed once, frozen with its inputs' hash."""

    __tablename__ = "block_allocations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    block_id: Mapped[int] = mapped_column(ForeignKey("found_blocks.id"), unique=True)
    inputs_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the canonical inputs
    canonical: Mapped[bytes] = mapped_column(LargeBinary)  # the allocation's canonical bytes
    policy: Mapped[str] = mapped_column(String(32))  # underfill policy that applied
    reward: Mapped[int] = mapped_column(BigInteger)
    pool_fee: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class Distribution(Base):
    """One miner's line of a block allocation (a distribution of mined reward, not an issuance)."""

    __tablename__ = "distributions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("block_allocations.id"), index=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    gross: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("allocation_id", "account"),
        CheckConstraint("gross = fee + net AND fee >= 0 AND net >= 0", name="amounts"),
    )


class LedgerEntry(Base):
    """Append-only balance changes in satoshis (credit on maturity, reversal on orphan, payment
    debit). ``entry_key`` makes appending the same entry twice a no-op; balances are sums."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_key: Mapped[str] = mapped_column(String(200), unique=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed satoshis
    # the stored block of a credit / reversal (its hash is also in data["block_hash"])
    block_id: Mapped[int | None] = mapped_column(ForeignKey("found_blocks.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    created_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Payment(Base):
    """Outbox: [awaiting_approval ->] pending -> broadcast (txid recorded) -> confirmed | failed.
    ``comment`` is the unique wallet comment used to reconcile by txid before any retry."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    comment: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    txid: Mapped[str | None] = mapped_column(String(64))
    # the transaction's network fee (satoshis) read from the wallet once sent; "pool" | "miners"
    fee_sats: Mapped[int | None] = mapped_column(BigInteger)
    fee_policy: Mapped[str] = mapped_column(String(16), default="pool", server_default="pool")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        CheckConstraint(
            "status IN ('awaiting_approval', 'pending', 'broadcast', 'confirmed', 'failed')",
            name="status",
        ),
    )


class PaymentOutput(Base):
    """One output of a payment (miner, address, satoshis)."""

    __tablename__ = "payment_outputs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    account: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)  # debited from the miner
    # the miner's share of the network fee (fee_policy "miners"); it received amount - fee_sats
    fee_sats: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("payment_id", "account"),
        CheckConstraint("amount > 0", name="amount"),
    )


class PayoutHold(Base):
    """A miner whose payout the wallet refused on its own (e.g. dust, bad address): not planned
    again while its payout address is ``address``; ``released_at`` set by the operator."""

    __tablename__ = "payout_holds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    address: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class InstanceLease(Base):
    """Scale-out (issue 12): one row per pool instance id (``[pool].node_id``, the extranonce1
    prefix). The instance holding it renews ``expires_at`` every third of the TTL; another
    process may take the id only once the lease lapsed (a kill -9 frees it after the TTL)."""

    __tablename__ = "instance_leases"

    instance_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
