"""Operator log lines carry Kazakhstan time (UTC+5) with the zone written out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from poolserver.logs import FORMAT, KazakhstanTimeFormatter


def test_log_time_is_utc_plus_5_and_says_so():
    record = logging.LogRecord("poolserver", logging.INFO, __file__, 1, "started", None, None)
    record.created = datetime(2026, 11, 25, 3, 23, 19, 375000, tzinfo=UTC).timestamp()
    record.msecs = 375.0
    line = KazakhstanTimeFormatter(FORMAT).format(record)
    assert line == "2026-11-25 08:23:19.375 UTC+5 INFO poolserver: started"


def test_date_rolls_over_at_kazakhstan_midnight():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = datetime(2026, 12, 31, 19, 0, 0, tzinfo=UTC).timestamp()
    record.msecs = 0.0
    assert KazakhstanTimeFormatter(FORMAT).format(record).startswith("2027-01-01 00:00:00.000")
