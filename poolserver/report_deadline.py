"""The income reports' filing deadline inside the running pool (issue 13): a log line at startup
and every ``[reports].reminder_interval_s`` (level from ``reporting.deadline.reminder_level``) and
the current ``ReportDeadlineStats`` for the metrics exporter.

"Generated" is known from the data: the previous month's miners' incomes report counts as
generated when ``<[reports].out_dir>/miners-income_<from>_<to>/manifest.json`` exists (the
directory ``poolserver report miners --month`` writes by default). Whether it was *sent* cannot
be known; the operator silences the alert after filing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from poolserver.aio import cancel_and_wait
from poolserver.config import Config, ConfigError, ReportsConfig
from reporting.deadline import ReportDeadlineStats, deadline_stats, reminder_level, running_line
from reporting.model import Period
from reporting.table import LANGS

log = logging.getLogger("poolserver.report")
KEY_NAME = "report-signing.key"


def check_reports_config(cfg: ReportsConfig) -> None:
    """ConfigError naming the ``[reports]`` option that is invalid."""
    if cfg.language not in LANGS:
        raise ConfigError(f"reports.language: {cfg.language!r} is not one of {', '.join(LANGS)}")
    if not 1 <= cfg.deadline_day <= 31:
        raise ConfigError(f"reports.deadline_day: must be 1..31, got {cfg.deadline_day}")
    if cfg.reminder_interval_s < 0:
        raise ConfigError(f"reports.reminder_interval_s: must be >= 0, got "
                          f"{cfg.reminder_interval_s}")


def reports_dir(config: Config) -> Path:
    return Path(config.reports.out_dir) if config.reports.out_dir else (
        Path(config.pool.data_dir) / "reports")


def key_path(config: Config) -> Path:
    return Path(config.reports.key_file) if config.reports.key_file else (
        Path(config.pool.data_dir) / KEY_NAME)


def miners_report_generated(out_dir: Path, stats: ReportDeadlineStats) -> bool:
    period = Period.month(stats.period)
    return (out_dir / f"miners-income_{period.label}" / "manifest.json").is_file()


class DeadlineReminder:
    """Logs the reminder at ``start()`` and every ``interval_s`` (0 = only at start);
    ``current()`` is what the exporter reads (pure arithmetic on the clock, any thread)."""

    def __init__(self, out_dir: Path, day: int, interval_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.out_dir = out_dir
        self.day = day
        self.interval_s = interval_s
        self.clock = clock
        self.lines_logged = 0
        self._task: asyncio.Task[None] | None = None

    def current(self) -> ReportDeadlineStats:
        return deadline_stats(self.clock(), self.day)

    def generated(self, stats: ReportDeadlineStats) -> bool:
        return miners_report_generated(self.out_dir, stats)

    def log_once(self) -> int:
        """Log the reminder now; returns the level used."""
        stats = self.current()
        generated = miners_report_generated(self.out_dir, stats)
        level = reminder_level(stats, generated)
        log.log(level, "%s", running_line(stats, generated))
        self.lines_logged += 1
        return level

    def start(self) -> None:
        self.log_once()
        if self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.log_once()
            except Exception:  # a reminder must never stop the pool
                log.exception("report deadline reminder failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
