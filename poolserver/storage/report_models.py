"""Tables for the income reports (issue 13): the operator's BTC→KZT daily rate table."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from poolserver.storage.models import Base


class KztRate(Base):
    """One day's BTC→KZT rate (KZT per 1 BTC) as the operator imported it. ``rate`` is the exact
    decimal text (never a float); ``day`` is a Kazakhstan calendar date."""

    __tablename__ = "kzt_rates"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rate: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime]
