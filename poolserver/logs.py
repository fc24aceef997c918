"""Operator logs: one line per event on stderr (journald captures it under systemd).

Text lines carry Kazakhstan time (UTC+5) with the zone written out, so nobody has to guess which
clock a log line used (times are stored in UTC everywhere else). ``[pool].log_format = "json"``
writes one JSON object per line instead, for log shippers: ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``msg`` and any ``extra={...}`` fields the call passed.

At INFO the log says what started where, what changed and what went wrong. Library chatter
(Alembic's per-revision migration messages, aiohttp, asyncio) is held back to WARNING unless
``log_level = "DEBUG"``; SQLAlchemy (which logs every statement at INFO) always.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from poolserver.config import ConfigError
from poolserver.register.timeutil import KZ

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
# Libraries whose INFO lines are not operator news (Alembic prints every revision's docstring).
QUIET_LIBRARIES = ("alembic", "aiohttp", "sqlalchemy", "asyncio")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class KazakhstanTimeFormatter(logging.Formatter):
    """``2026-11-25 08:23:19.375 UTC+5`` as the record's time."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        at = datetime.fromtimestamp(record.created, KZ)
        return f"{at:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} UTC+5"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, msg, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def check_log_settings(level: str, fmt: str) -> None:
    """Refuse an unknown level or format with a ConfigError naming the option."""
    if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"pool.log_level: expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"pool.log_format: expected text or json, got {fmt!r}")


def configure_logging(level: str, fmt: str = "text") -> None:
    """Root logging to stderr at ``level`` ([pool].log_level) in ``fmt`` ([pool].log_format)."""
    check_log_settings(level, fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KazakhstanTimeFormatter(FORMAT))
    root_level = logging.getLevelName(level.upper())
    logging.basicConfig(level=root_level, handlers=[handler])  # no-op if already configured
    quiet = logging.INFO if root_level <= logging.DEBUG else logging.WARNING
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(quiet, root_level))
    # SQLAlchemy logs every statement at INFO: never below WARNING, whatever the level.
    logging.getLogger("sqlalchemy").setLevel(max(logging.WARNING, root_level))
