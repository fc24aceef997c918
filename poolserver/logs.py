"""Operator logs: one line per event, time in Kazakhstan time (UTC+5) with the zone written out,
so nobody has to guess which clock a log line used (times are stored in UTC everywhere else)."""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from poolserver.register.timeutil import KZ

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class KazakhstanTimeFormatter(logging.Formatter):
    """``2026-11-25 08:23:19.375 UTC+5`` as the record's time."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        at = datetime.fromtimestamp(record.created, KZ)
        return f"{at:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} UTC+5"


def configure_logging(level: str) -> None:
    """Root logging to stderr at ``level`` ([pool].log_level)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KazakhstanTimeFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
