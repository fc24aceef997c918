"""What an operator reads on a first start: a few INFO lines, no library chatter, no per-job
lines; and the JSON format (one object per line) parses for a log shipper."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

import pytest

from poolserver.config import ConfigError
from poolserver.logs import JsonFormatter, configure_logging
from tests.pool_process import PoolProcess, free_port, write_config
from tests.stratum_client import StratumClient


async def _first_start(tmp_path, extra: str = "") -> str:
    port = free_port()
    cfg = write_config(tmp_path / "pool.toml", data_dir=tmp_path / "data", port=port,
                       extra=extra)  # fmt: skip
    pool = PoolProcess(cfg, tmp_path / "pool.log")
    pool.start()
    try:
        await pool.wait_ready()
        # a miner and a few refreshes: job lines must not appear at INFO
        client = await StratumClient.connect("127.0.0.1", port)
        await client.cpuminer("acct.w1")
        await client.wait_job()
        await asyncio.sleep(0.6)  # a few template refreshes
        await client.close()
        assert await pool.terminate() == 0
    finally:
        pool.ensure_stopped()
    return (tmp_path / "pool.log").read_text()


async def test_first_start_info_log_is_short_and_says_what_started_where(tmp_path):
    text = await _first_start(tmp_path, "[node]\ntemplate_refresh_s = 0.2\n")
    lines = [ln for ln in text.splitlines() if not ln.startswith("====")]
    assert not [ln for ln in lines if "alembic" in ln], "Alembic chatter at INFO"
    assert not [ln for ln in lines if " INFO " in ln and "sent to" in ln], "per-job lines"
    assert not [ln for ln in lines if "Running upgrade" in ln or "Context impl" in ln]
    assert any("schema created at revision" in ln for ln in lines)
    assert any("stratum listening on 127.0.0.1" in ln for ln in lines)
    assert any("qazpool started: stratum on stratum+tcp://127.0.0.1" in ln for ln in lines)
    assert any("qazpool stopped" in ln for ln in lines)
    # every line is one event: no continuation lines of multi-line messages
    assert all(" UTC+5 " in ln for ln in lines), [ln for ln in lines if " UTC+5 " not in ln]
    assert len(lines) <= 20, "\n".join(lines)


async def test_json_log_lines_parse_one_object_per_line(tmp_path):
    cfg = tmp_path
    port = free_port()
    path = write_config(cfg / "pool.toml", data_dir=cfg / "data", port=port)
    text = path.read_text().replace('log_level = "INFO"', 'log_level = "INFO"\nlog_format = "json"')
    path.write_text(text)
    pool = PoolProcess(path, cfg / "pool.log")
    pool.start()
    try:
        await pool.wait_ready()
        assert await pool.terminate() == 0
    finally:
        pool.ensure_stopped()
    lines = [ln for ln in (cfg / "pool.log").read_text().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("====")]
    objs = [json.loads(ln) for ln in lines]
    assert objs and all({"ts", "level", "logger", "msg"} <= o.keys() for o in objs)
    for o in objs:
        at = datetime.fromisoformat(o["ts"])
        assert at.utcoffset() is not None and at.utcoffset().total_seconds() == 0
    assert any(o["msg"].startswith("qazpool started") for o in objs)
    assert not any(o["logger"].startswith("alembic") for o in objs)


def test_json_formatter_carries_extra_fields_and_exceptions():
    record = logging.LogRecord("poolserver.x", logging.WARNING, __file__, 1, "skew %d s", (42,),
                               None)  # fmt: skip
    record.skew_s = 42
    obj = json.loads(JsonFormatter().format(record))
    assert obj["msg"] == "skew 42 s" and obj["skew_s"] == 42 and obj["level"] == "WARNING"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert "RuntimeError: boom" in json.loads(JsonFormatter().format(record))["exc"]


def test_bad_log_settings_name_the_option():
    with pytest.raises(ConfigError, match=r"pool\.log_format"):
        configure_logging("INFO", "xml")
    with pytest.raises(ConfigError, match=r"pool\.log_level"):
        configure_logging("LOUD", "text")
