"""Query and path parameters of the web API, checked before any database read: a bad value
raises ``ParamError`` naming the field and the reason (answered 422). Pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta

from poolserver.register.timeutil import kz_midnight

# Stratum account names as the register stores them (letters, digits, _ - @), at most 64.
_ACCOUNT = re.compile(r"^[A-Za-z0-9_\-@]{1,64}$")
MAX_LIMIT = 200
MAX_RANGE_DAYS = 366


class ParamError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def account(value: str) -> str:
    if not _ACCOUNT.match(value):
        raise ParamError("account", "letters, digits, '_', '-' or '@', 1 to 64 characters")
    return value


def integer(query: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    raw = query.get(field)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,12}", raw):
        raise ParamError(field, f"expected a whole number {low}..{high}, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ParamError(field, f"must be {low}..{high}, got {value}")
    return value


def limit(query: Mapping[str, str], default: int = 20) -> int:
    return integer(query, "limit", default, 1, MAX_LIMIT)


def cursor(query: Mapping[str, str]) -> int | None:
    """The opaque page cursor a previous page returned as ``next_cursor`` (an id)."""
    if query.get("cursor") in (None, ""):
        return None
    return integer(query, "cursor", 0, 1, 2**62)


def day(query: Mapping[str, str], field: str) -> date | None:
    raw = query.get(field)
    if raw in (None, ""):
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise ParamError(field, f"expected a date YYYY-MM-DD, got {raw[:40]!r}") from None


def day_range(
    query: Mapping[str, str], required: bool, max_days: int = MAX_RANGE_DAYS
) -> tuple[datetime, datetime] | None:
    """``from`` / ``to`` as Kazakhstan calendar days (inclusive): [from 00:00, to+1 00:00) UTC+5,
    returned as aware datetimes; None when both are absent and not ``required``."""
    first, last = day(query, "from"), day(query, "to")
    if first is None and last is None and not required:
        return None
    if first is None:
        raise ParamError("from", "required (a date YYYY-MM-DD, Kazakhstan calendar)")
    if last is None:
        raise ParamError("to", "required (a date YYYY-MM-DD, Kazakhstan calendar)")
    if last < first:
        raise ParamError("to", f"{last} is before from {first}")
    if (last - first).days + 1 > max_days:
        raise ParamError("to", f"the range is longer than {max_days} days")
    return kz_midnight(first), kz_midnight(last + timedelta(days=1))


def known_only(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Refuse parameters the endpoint does not take (a typo should not be silently ignored)."""
    for name in query:
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise ParamError(name, f"unknown parameter (this endpoint takes: {expected})")
