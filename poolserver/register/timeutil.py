"""Times are stored in UTC (aware datetimes) and shown to people in Kazakhstan time (UTC+5).

Dates entered by operators (license issue dates, ``--from 2025-03-01``) are Kazakhstan calendar
dates: a date means its 00:00 in UTC+5.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, timezone

from poolserver.register.errors import RegisterError

KZ = timezone(timedelta(hours=5), "UTC+5")


def require_utc(value: datetime, field: str) -> datetime:
    """``value`` converted to UTC; naive datetimes are refused (their zone is unknown)."""
    if not isinstance(value, datetime):
        raise RegisterError(field, f"must be a date and time, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise RegisterError(field, "time without a time zone; give it in UTC or with an offset")
    return value.astimezone(UTC)


def kz_midnight(day: date) -> datetime:
    """The UTC instant at which the Kazakhstan calendar day ``day`` begins."""
    return datetime.combine(day, time(0), tzinfo=KZ).astimezone(UTC)


def kz_date(at: datetime) -> date:
    return require_utc(at, "time").astimezone(KZ).date()


def show(at: datetime | None) -> str:
    """``2025-03-01 10:00 UTC+5`` for people; ``-`` for no time."""
    if at is None:
        return "-"
    return require_utc(at, "time").astimezone(KZ).strftime("%Y-%m-%d %H:%M:%S UTC+5")


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic, clamping to the month's last day (Jan 31 + 1 = Feb 28/29)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def add_months_at(at: datetime, months: int) -> datetime:
    """Month arithmetic on the Kazakhstan calendar, keeping the local time of day."""
    local = require_utc(at, "time").astimezone(KZ)
    moved = add_months(local.date(), months)
    return datetime.combine(moved, local.timetz()).astimezone(UTC)


def parse_date(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise RegisterError(field, f"not a date (want YYYY-MM-DD): {text[:40]!r}") from None


def parse_time(text: str, field: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 Kazakhstan time) or an ISO date-time with an offset or ``Z``."""
    text = text.strip()
    if len(text) == 10:
        return kz_midnight(parse_date(text, field))
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RegisterError(
            field, f"not a time (want YYYY-MM-DD or ISO 8601 with offset): {text[:40]!r}"
        ) from None
    return require_utc(value, field)
