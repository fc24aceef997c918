"""Mining licenses (Law 193-VII Art. 9): subtypes, expiry, suspensions, revocation, and the one
``LicenseState`` enum that authorization messages, metrics and reports all use.

A license is in force on the Kazakhstan calendar days ``issued_on <= day < expires_on``
(``expires_on`` defaults to ``issued_on`` + 3 years). A suspension lasts 1 to 6 months
(Art. 9(4)) from ``starts_at`` to ``ends_at``; it can be lifted early (Art. 9(6)). Mining is
prohibited while suspended (Art. 9(5)), so shares from a suspended, revoked, expired or
unlicensed period earn nothing: ``credited_intervals`` gives the periods that do.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from poolserver.register.errors import Conflict, RegisterError
from poolserver.register.text import text_field
from poolserver.register.timeutil import add_months, add_months_at, kz_midnight, require_utc, show

LICENSE_YEARS = 3
SUSPENSION_MIN_MONTHS = 1
SUSPENSION_MAX_MONTHS = 6
NUMBER_MAX = 64
REASON_MAX = 500
DEFAULT_WARNING_DAYS = (60, 30, 7)


class LicenseState(enum.StrEnum):
    """The state of a miner's license at a given time. The values are metric labels."""

    ACTIVE = "active"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    NONE = "none"


class Subtype(enum.StrEnum):
    I = "I"  # noqa: E741  own mining data centre
    II = "II"  # own machines placed in someone else's data centre


@dataclass(frozen=True, slots=True)
class Suspension:
    starts_at: datetime
    ends_at: datetime
    reason: str
    lifted_at: datetime | None = None

    @property
    def effective_end(self) -> datetime:
        if self.lifted_at is not None and self.lifted_at < self.ends_at:
            return max(self.lifted_at, self.starts_at)
        return self.ends_at

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.effective_end


@dataclass(frozen=True, slots=True)
class License:
    number: str
    issued_on: date
    subtype: Subtype
    expires_on: date
    suspensions: tuple[Suspension, ...] = ()
    revoked_at: datetime | None = None
    revocation_reason: str = ""

    @property
    def starts_at(self) -> datetime:
        return kz_midnight(self.issued_on)

    @property
    def expires_at(self) -> datetime:
        return kz_midnight(self.expires_on)

    def state_at(self, at: datetime) -> LicenseState:
        at = require_utc(at, "at")
        if at < self.starts_at:
            return LicenseState.NONE
        if self.revoked_at is not None and at >= self.revoked_at:
            return LicenseState.REVOKED
        if at >= self.expires_at:
            return LicenseState.EXPIRED
        if any(s.covers(at) for s in self.suspensions):
            return LicenseState.SUSPENDED
        return LicenseState.ACTIVE

    def suspension_at(self, at: datetime) -> Suspension | None:
        return next((s for s in self.suspensions if s.covers(at)), None)


def default_expiry(issued_on: date) -> date:
    return add_months(issued_on, 12 * LICENSE_YEARS)


def parse_subtype(value: str, field: str = "subtype") -> Subtype:
    text = str(value).strip().upper()
    try:
        return Subtype(text)
    except ValueError:
        raise RegisterError(field, f"must be I or II, got {str(value)[:10]!r}") from None


def new_license(
    number: str, issued_on: date, subtype: Subtype | str, expires_on: date | None = None
) -> License:
    """A validated license; ``expires_on`` defaults to issue + 3 years."""
    number = text_field(number, "license.number", max_len=NUMBER_MAX)
    if not isinstance(issued_on, date) or isinstance(issued_on, datetime):
        raise RegisterError("license.issued_on", "must be a calendar date")
    sub = subtype if isinstance(subtype, Subtype) else parse_subtype(subtype, "license.subtype")
    expiry = default_expiry(issued_on) if expires_on is None else expires_on
    if expiry <= issued_on:
        raise RegisterError(
            "license.expires_on", f"{expiry} is not after the issue date {issued_on}"
        )
    return License(number=number, issued_on=issued_on, subtype=sub, expires_on=expiry)


def new_suspension(
    starts_at: datetime,
    reason: str,
    *,
    months: int | None = None,
    ends_at: datetime | None = None,
) -> Suspension:
    """A validated suspension of 1 to 6 months (Art. 9(4)); give ``months`` or ``ends_at``."""
    start = require_utc(starts_at, "suspension.starts_at")
    reason = text_field(reason, "suspension.reason", max_len=REASON_MAX)
    if (months is None) == (ends_at is None):
        raise RegisterError("suspension", "give either the length in months or the end time")
    if months is not None:
        if isinstance(months, bool) or not isinstance(months, int):
            raise RegisterError("suspension.months", "must be a whole number of months")
        if not SUSPENSION_MIN_MONTHS <= months <= SUSPENSION_MAX_MONTHS:
            raise RegisterError(
                "suspension.months",
                f"{months} months given; the law allows 1 to 6 months (Art. 9(4))",
            )
        end = add_months_at(start, months)
    else:
        assert ends_at is not None
        end = require_utc(ends_at, "suspension.ends_at")
        shortest = add_months_at(start, SUSPENSION_MIN_MONTHS)
        longest = add_months_at(start, SUSPENSION_MAX_MONTHS)
        if not shortest <= end <= longest:
            days = (end - start) / timedelta(days=1)
            raise RegisterError(
                "suspension.ends_at",
                f"a suspension of {days:.1f} days from {show(start)} to {show(end)}; the law "
                f"allows 1 to 6 months (end between {show(shortest)} and {show(longest)})",
            )
    return Suspension(starts_at=start, ends_at=end, reason=reason)


def check_new_suspension(lic: License, susp: Suspension) -> None:
    """Refuse a suspension that cannot apply to ``lic``: revoked, expired or overlapping."""
    if lic.revoked_at is not None and susp.starts_at >= lic.revoked_at:
        raise Conflict("suspension.starts_at", f"license {lic.number} is already revoked")
    if susp.starts_at >= lic.expires_at:
        raise Conflict(
            "suspension.starts_at", f"license {lic.number} has expired by {show(susp.starts_at)}"
        )
    if susp.starts_at < lic.starts_at:
        raise Conflict(
            "suspension.starts_at",
            f"{show(susp.starts_at)} is before license {lic.number} was issued",
        )
    for other in lic.suspensions:
        if susp.starts_at < other.effective_end and other.starts_at < susp.ends_at:
            raise Conflict(
                "suspension",
                f"overlaps the suspension from {show(other.starts_at)} to "
                f"{show(other.effective_end)}",
            )


@dataclass(frozen=True, slots=True)
class LicenseStatus:
    """A miner's standing at a time: the state, the license it concerns, and why."""

    state: LicenseState
    license: License | None = None
    suspension: Suspension | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.state is LicenseState.ACTIVE


def status_at(licenses: Iterable[License], at: datetime) -> LicenseStatus:
    """The miner's standing at ``at``: active if any license is in force; otherwise the state of
    the most recently issued license that has started (NONE if none has)."""
    at = require_utc(at, "at")
    started = [lic for lic in licenses if lic.starts_at <= at]
    active = [lic for lic in started if lic.state_at(at) is LicenseState.ACTIVE]
    if active:
        best = max(active, key=lambda lic: lic.expires_at)
        return LicenseStatus(LicenseState.ACTIVE, best, detail=f"license {best.number}")
    if not started:
        return LicenseStatus(LicenseState.NONE, detail="no mining license in force")
    lic = max(started, key=lambda lic: (lic.starts_at, lic.expires_at))
    state = lic.state_at(at)
    susp = lic.suspension_at(at) if state is LicenseState.SUSPENDED else None
    return LicenseStatus(state, lic, susp, detail=f"license {lic.number}")


def refusal_message(status: LicenseStatus, account: str) -> str:
    """What the miner is told (``client.show_message``) when its login is refused."""
    lic = status.license
    if status.state is LicenseState.ACTIVE:
        return ""
    if status.state is LicenseState.NONE or lic is None:
        return (
            f"Account {account} has no mining license in force registered with this pool; "
            "mining is allowed only to licensed miners (Law 193-VII Art. 8)."
        )
    if status.state is LicenseState.REVOKED:
        assert lic.revoked_at is not None
        return f"Mining license {lic.number} of {account} was revoked on {show(lic.revoked_at)}."
    if status.state is LicenseState.EXPIRED:
        return (
            f"Mining license {lic.number} of {account} expired on {lic.expires_on} "
            "(Kazakhstan time); ask the pool operator to register the renewed license."
        )
    susp = status.suspension
    until = show(susp.effective_end) if susp else "-"
    why = f" ({susp.reason})" if susp else ""
    return (
        f"Mining license {lic.number} of {account} is suspended until {until}{why}; "
        "mining is prohibited during a suspension (Law 193-VII Art. 9(5))."
    )


Interval = tuple[datetime, datetime]


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def credited_intervals(licenses: Iterable[License]) -> list[Interval]:
    """Sorted, disjoint half-open periods ``[start, end)`` in which the miner's shares earn.

    A share at ``t`` is credited iff ``t`` lies in one of them, which is exactly when
    ``status_at(licenses, t).state is ACTIVE``."""
    pieces: list[Interval] = []
    for lic in licenses:
        end = lic.expires_at if lic.revoked_at is None else min(lic.expires_at, lic.revoked_at)
        cuts = _merge((s.starts_at, s.effective_end) for s in lic.suspensions)
        cursor = lic.starts_at
        for c_start, c_end in cuts:
            if c_start > cursor:
                pieces.append((cursor, min(c_start, end)))
            cursor = max(cursor, c_end)
        pieces.append((cursor, end))
    return _merge(pieces)


def is_credited(intervals: Sequence[Interval], at: datetime) -> bool:
    """Whether ``at`` lies in one of ``credited_intervals``' periods (binary search)."""
    i = bisect_right(intervals, (at, at)) - 1
    for j in (i, i + 1):
        if 0 <= j < len(intervals) and intervals[j][0] <= at < intervals[j][1]:
            return True
    return False


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    license: License
    days_left: int
    threshold: int  # the smallest configured threshold (60/30/7) the license is within


def expiry_warning(
    licenses: Sequence[License],
    at: datetime,
    thresholds: Sequence[int] = DEFAULT_WARNING_DAYS,
) -> ExpiryWarning | None:
    """A warning if the license in force ends within a threshold and no license follows it."""
    status = status_at(licenses, at)
    lic = status.license
    if status.state is not LicenseState.ACTIVE or lic is None:
        return None
    if status_at(licenses, lic.expires_at).state is LicenseState.ACTIVE:
        return None  # a renewal is registered
    left = lic.expires_at - require_utc(at, "at")
    days = left.days
    within = [t for t in thresholds if left <= timedelta(days=t)]
    if not within:
        return None
    return ExpiryWarning(license=lic, days_left=days, threshold=min(within))


# Bitcoin's genesis: no share can be older, so "uncredited since forever" starts here.
EPOCH = datetime(2009, 1, 3, 18, 15, 5, tzinfo=UTC)


def uncredited_periods(credited: Sequence[Interval]) -> list[tuple[datetime, datetime | None]]:
    """The complement of ``credited_intervals`` from EPOCH on (``None``: open-ended): the
    periods in which the miner's shares earn nothing (no license yet, suspended, revoked,
    expired)."""
    out: list[tuple[datetime, datetime | None]] = []
    cursor = EPOCH
    for start, end in credited:
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    out.append((cursor, None))
    return out
