"""Tables of the miner and hardware registers and their hash-chained audit log (issue 7).

Times are aware UTC (``UTCDateTime`` via the ``datetime`` annotation); license dates are
Kazakhstan calendar dates. Histories (payout addresses, per-miner fee rates) and suspensions
are rows that are appended, never rewritten; every change is mirrored by a ``register_audit``
row written in the same transaction (poolserver.register.repository).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from poolserver.storage.models import Base, BigId


class Miner(Base):
    """A licensed digital miner: a legal entity (BIN) or individual entrepreneur (IIN)."""

    __tablename__ = "reg_miners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(64), unique=True)  # Stratum account name
    legal_name: Mapped[str] = mapped_column(String(200))
    iin_bin: Mapped[str] = mapped_column(String(12), unique=True)
    kind: Mapped[str] = mapped_column(String(3))  # IIN | BIN
    contact: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("kind IN ('IIN', 'BIN')", name="kind"),)


class MinerLicense(Base):
    """A mining license (Art. 9): in force on ``issued_on <= day < expires_on`` (UTC+5 days)."""

    __tablename__ = "reg_licenses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    miner_id: Mapped[int] = mapped_column(ForeignKey("reg_miners.id"), index=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    issued_on: Mapped[date] = mapped_column(Date)
    subtype: Mapped[str] = mapped_column(String(2))
    expires_on: Mapped[date] = mapped_column(Date)
    revoked_at: Mapped[datetime | None]
    revocation_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("subtype IN ('I', 'II')", name="subtype"),
        CheckConstraint("expires_on > issued_on", name="dates"),
    )


class LicenseSuspension(Base):
    """A suspension of 1 to 6 months; ``lifted_at`` ends it early (Art. 9(6))."""

    __tablename__ = "reg_suspensions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("reg_licenses.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    lifted_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class PayoutAddress(Base):
    """Dated history: the address in force at ``t`` is the latest ``effective_from <= t``."""

    __tablename__ = "reg_payout_addresses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    miner_id: Mapped[int] = mapped_column(ForeignKey("reg_miners.id"))
    address: Mapped[str] = mapped_column(String(100))
    network: Mapped[str] = mapped_column(String(16))
    effective_from: Mapped[datetime]
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_reg_payout_addresses_miner_from", "miner_id", "effective_from"),)


class MinerFeeRate(Base):
    """A miner's own pool fee (overrides the pool-wide ``fee_rates``), dated like addresses."""

    __tablename__ = "reg_miner_fee_rates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    miner_id: Mapped[int] = mapped_column(ForeignKey("reg_miners.id"))
    fee_bps: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime]
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_bps"),
        Index("ix_reg_miner_fee_rates_miner_from", "miner_id", "effective_from"),
    )


class RegisteredMachine(Base):
    """A hardware-software complex (ASIC) in the register; serials are unique across miners."""

    __tablename__ = "reg_machines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    manufacturer: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    rated_hashrate: Mapped[int] = mapped_column(BigInteger)  # H/s
    power_w: Mapped[int] = mapped_column(Integer)
    miner_id: Mapped[int] = mapped_column(ForeignKey("reg_miners.id"), index=True)
    data_centre: Mapped[str] = mapped_column(String(200))
    registry_number: Mapped[str] = mapped_column(String(64), default="")
    registry_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("rated_hashrate > 0 AND power_w > 0", name="positive"),)


class RegisterAudit(Base):
    """The append-only, hash-chained audit log (poolserver.register.chain). ``old``/``new``
    are canonical JSON text, kept as text so the database never reformats what was hashed."""

    __tablename__ = "reg_audit"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    who: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    old: Mapped[str] = mapped_column(Text)
    new: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
