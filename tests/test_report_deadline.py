"""Issue 13: the income reports' filing deadline in the running pool (log line at startup and
daily, level by days left and by whether the month's miners' report exists) and the
``[reports]`` configuration section."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from poolserver.config import ConfigError, ReportsConfig, config_from_dict
from poolserver.report_deadline import (
    DeadlineReminder,
    check_reports_config,
    key_path,
    reports_dir,
)
from reporting.deadline import deadline_stats, reminder_level
from tests.conftest import wait_until

OCT_DIR = "miners-income_2026-10-01_2026-10-31"


@pytest.mark.parametrize(("now", "generated", "level"), [
    (datetime(2026, 11, 3, 12, tzinfo=UTC), False, logging.INFO),  # 7 days left
    (datetime(2026, 11, 6, 19, tzinfo=UTC), False, logging.WARNING),  # Nov 7 in Astana: 3 left
    (datetime(2026, 11, 10, 12, tzinfo=UTC), False, logging.WARNING),  # the due day
    (datetime(2026, 11, 10, 19, tzinfo=UTC), False, logging.ERROR),  # Nov 11 in Astana: overdue
    (datetime(2026, 11, 10, 19, tzinfo=UTC), True, logging.INFO),  # overdue but generated
    (datetime(2026, 11, 8, 12, tzinfo=UTC), True, logging.INFO),
])
def test_reminder_level_by_days_left_and_generation(now, generated, level):
    assert reminder_level(deadline_stats(now), generated) == level


def test_reminder_logs_by_the_data_dir_and_the_configured_day(tmp_path: Path, caplog):
    now = [datetime(2026, 11, 3, 12, tzinfo=UTC)]
    r = DeadlineReminder(tmp_path, 10, 0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="poolserver.report")
    assert r.log_once() == logging.INFO
    now[0] = datetime(2026, 11, 8, 12, tzinfo=UTC)
    assert r.log_once() == logging.WARNING
    now[0] = datetime(2026, 11, 12, 12, tzinfo=UTC)
    assert r.log_once() == logging.ERROR
    assert "overdue by 2 day(s)" in caplog.records[-1].getMessage()
    assert "not generated yet" in caplog.records[-1].getMessage()
    (tmp_path / OCT_DIR).mkdir()
    (tmp_path / OCT_DIR / "manifest.json").write_text("{}")
    assert r.log_once() == logging.INFO
    assert "the miners' report is generated" in caplog.records[-1].getMessage()
    # a deadline on the 15th: the 12th is 3 days before it, not overdue
    assert DeadlineReminder(tmp_path / "none", 15, 0, clock=lambda: now[0]).log_once() == (
        logging.WARNING)
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING, logging.ERROR,
                                                   logging.INFO, logging.WARNING]


async def test_reminder_logs_at_start_and_then_every_interval(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="poolserver.report")
    r = DeadlineReminder(tmp_path, 10, 0.01)
    r.start()
    try:
        assert r.lines_logged == 1  # at once, at start
        await wait_until(lambda: r.lines_logged >= 3)
    finally:
        await r.stop()
    assert all("income reports for" in rec.getMessage() for rec in caplog.records)


def test_reports_config_defaults_paths_and_errors(tmp_path: Path):
    cfg = config_from_dict({"pool": {"data_dir": str(tmp_path)}})
    assert cfg.reports == ReportsConfig("ru", 10, "", "", 86400.0)
    assert reports_dir(cfg) == tmp_path / "reports"
    assert key_path(cfg) == tmp_path / "report-signing.key"
    cfg = config_from_dict({"reports": {"language": "kk", "deadline_day": 15,
                                        "key_file": "/k/key", "out_dir": "/r"}})
    assert (reports_dir(cfg), key_path(cfg)) == (Path("/r"), Path("/k/key"))
    check_reports_config(cfg.reports)
    with pytest.raises(ConfigError, match=re.escape("reports.language: 'de'")):
        check_reports_config(ReportsConfig(language="de"))
    with pytest.raises(ConfigError, match=re.escape("reports.deadline_day: must be 1..31, got 0")):
        check_reports_config(ReportsConfig(deadline_day=0))
    with pytest.raises(ConfigError, match=re.escape("reports.deadline_day: expected int")):
        config_from_dict({"reports": {"deadline_day": "10"}})
