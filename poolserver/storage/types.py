"""Column types shared by the models: aware-UTC timestamps and exact rationals."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; accepts only timezone-aware datetimes; returns aware UTC datetimes.

    PostgreSQL keeps a ``timestamptz``; SQLite keeps the UTC wall time (ISO text) and the
    timezone is re-attached on the way out, so both give the same value back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactFraction(TypeDecorator[Fraction]):
    """An exact rational as canonical text ``p/q`` (or ``p``): sums of difficulties stay exact
    on every database (SQLite has no arbitrary-precision numeric)."""

    impl = String(400)
    cache_ok = True

    def process_bind_param(self, value: Fraction | int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(Fraction(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Fraction | None:
        if value is None:
            return None
        return Fraction(value)
