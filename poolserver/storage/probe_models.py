"""Firmware probe results (issue 15): one row per probe, appended, never rewritten.

``machine_key`` is what identifies the machine across probes: its serial when exposed, else its
MAC, else its address (``serial:...``, ``mac:...``, ``ip:...``); ``probe list`` shows the latest
row per key. ``outcome`` is one of firmware_probe's ``Outcome`` values (kept literal here: storage
imports nothing above it; a test asserts the two lists agree). ``identity`` holds every
normalised field with its source, ``findings`` the register comparison at probe time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from poolserver.storage.models import Base, BigId

OUTCOMES = (
    "identified",
    "partial",
    "unreachable",
    "timeout",
    "refused",
    "api_disabled",
    "unknown_firmware",
    "error",
)
_OUTCOME_SQL = ", ".join(f"'{o}'" for o in OUTCOMES)


class ProbeResultRow(Base):
    __tablename__ = "probe_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    probed_at: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(64), default="")
    worker: Mapped[str] = mapped_column(String(128), default="")
    user_agent: Mapped[str] = mapped_column(String(128), default="")
    trigger: Mapped[str] = mapped_column(String(16))  # authorize | cli
    outcome: Mapped[str] = mapped_column(String(20))
    machine_key: Mapped[str] = mapped_column(String(80))
    vendor: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    firmware_family: Mapped[str | None] = mapped_column(String(32))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(17))
    rated_hashrate: Mapped[int | None] = mapped_column(BigInteger)  # H/s
    hashrate: Mapped[int | None] = mapped_column(BigInteger)  # H/s
    power_w: Mapped[int | None] = mapped_column(Integer)
    uptime_s: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(1000), default="")
    verdict: Mapped[str] = mapped_column(String(200), default="")  # findings, comma-separated
    identity: Mapped[dict[str, Any]] = mapped_column(JSON)
    findings: Mapped[list[Any]] = mapped_column(JSON)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        CheckConstraint(f"outcome IN ({_OUTCOME_SQL})", name="outcome"),
        Index("ix_probe_results_machine_key_id", "machine_key", "id"),
        Index("ix_probe_results_host_id", "host", "id"),
    )
