"""The filing deadline of a period's reports: by default the 10th of the following month
(Kazakhstan time). Exposed as a small stats object for the metrics exporter and as a log line."""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from reporting.model import KZ, Period

DEFAULT_DAY = 10
WARN_DAYS = 3  # the reminder is a WARNING from this many days before the deadline


def due_date(period: Period, day: int = DEFAULT_DAY) -> date:
    """The ``day``-th of the month after the period's last day (clamped to the month's end)."""
    if not 1 <= day <= 31:
        raise ValueError(f"deadline day: must be 1..31, got {day}")
    first_next = (period.last.replace(day=1) + timedelta(days=32)).replace(day=1)
    last = calendar.monthrange(first_next.year, first_next.month)[1]
    return first_next.replace(day=min(day, last))


@dataclass(frozen=True, slots=True)
class ReportDeadlineStats:
    """For the exporter: ``qazpool_report_deadline_timestamp_seconds{period="2026-10"}``
    (gauge, the end of the due day in UTC+5 as a Unix time) and
    ``qazpool_report_deadline_remaining_seconds`` (gauge, ``days_left`` x 86400: promtool's lint
    refuses a "days" unit in a family name)."""

    period: str  # YYYY-MM of the month being reported
    due: date
    deadline_timestamp_seconds: float
    days_left: int


def deadline_stats(now: datetime, day: int = DEFAULT_DAY) -> ReportDeadlineStats:
    """The deadline of the previous month's reports, as seen at ``now`` (aware)."""
    today = now.astimezone(KZ).date()
    period = Period.previous_month(today)
    due = due_date(period, day)
    end_of_due = datetime.combine(due + timedelta(days=1), time(0), tzinfo=KZ).astimezone(UTC)
    return ReportDeadlineStats(period.first.strftime("%Y-%m"), due, end_of_due.timestamp(),
                               (due - today).days)


def reminder_line(stats: ReportDeadlineStats) -> str:
    when = "overdue by" if stats.days_left < 0 else "due in"
    return (f"income reports for {stats.period} {when} {abs(stats.days_left)} day(s): send them "
            f"to the authorized body and the tax office by {stats.due.isoformat()} (UTC+5)")


def reminder_level(stats: ReportDeadlineStats, generated: bool) -> int:
    """The log level of the running pool's reminder: INFO while more than 3 days are left (or
    once the period's miners' report exists), WARNING within 3 days of the deadline, ERROR
    once overdue while the period's report has not been generated."""
    if generated:
        return logging.INFO
    if stats.days_left < 0:
        return logging.ERROR
    if stats.days_left <= WARN_DAYS:
        return logging.WARNING
    return logging.INFO


def running_line(stats: ReportDeadlineStats, generated: bool) -> str:
    state = ("the miners' report is generated" if generated
             else "the miners' report is not generated yet")
    return f"{reminder_line(stats)}; {state}"
