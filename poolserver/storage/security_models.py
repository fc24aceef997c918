"""The security event log (issue 17): append-only and hash-chained exactly like the register's
audit log (``poolserver.register.chain``), in its own table so the two chains never interleave.

``kind`` is the event kind (``auth.refused``, ``ban``, ``connection.flood``, ``cli.action``,
``config.start``, ``payout.approve``...), ``who`` the operator or ``pool`` for events the running
pool raises, ``subject`` what it concerns (``peer:IP account:A``), ``fields`` the event's data
as the canonical JSON text that was hashed (kept as text so the database never reformats it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from poolserver.storage.models import Base


class SecurityEvent(Base):
    __tablename__ = "security_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    who: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    fields: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_security_events_at", "at"),)
