"""Storage takes its own settings (DESIGN.md: storage does not reach up into poolserver.config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from poolserver.cli import main
from poolserver.config import ConfigError, config_from_dict
from poolserver.storage import StorageSettings, StorageSettingsError, spool_dir
from poolserver.storage.engine import create_engine
from poolserver.storage_config import create_engine_from_config, database_url, storage_settings

ROOT = Path(__file__).resolve().parent.parent


def test_storage_package_does_not_import_the_pool_config():
    code = (
        "import sys, pkgutil, importlib, poolserver.storage as s\n"
        "for m in pkgutil.iter_modules(s.__path__):\n"
        "    if m.name != 'migrations': importlib.import_module('poolserver.storage.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.startswith('poolserver.')"
        " and not n.startswith('poolserver.storage'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"poolserver.storage pulled in: {out.stdout.strip()}"


def test_settings_from_config_carry_every_storage_field(tmp_path):
    cfg = config_from_dict(
        {
            "pool": {"data_dir": str(tmp_path / "data")},
            "storage": {
                "flush_interval_ms": 7.5,
                "batch_size": 17,
                "spool_dir": str(tmp_path / "sp"),
                "retry_interval_s": 0.5,
                "retention_days": 9,
                "sqlite_synchronous": "normal",
                "pool_size": 3,
            },
        }
    )
    s = storage_settings(cfg)
    assert (s.flush_interval_ms, s.batch_size, s.retry_interval_s) == (7.5, 17, 0.5)
    assert (s.retention_days, s.sqlite_synchronous, s.pool_size) == (9, "normal", 3)
    assert spool_dir(s) == tmp_path / "sp"
    expected = (tmp_path / "data" / "qazpool.sqlite3").resolve()
    assert database_url(cfg) == f"sqlite+aiosqlite:///{expected}"
    assert StorageSettings(data_dir=tmp_path).spool_path() == tmp_path / "spool"


@pytest.mark.parametrize(
    ("storage", "field", "reason"),
    [
        ({"url": "mysql://x@y/z"}, "storage.url", "not supported"),
        ({"url": "sqlite+aiosqlite://"}, "storage.url", "needs a file"),
        ({"url": "::::"}, "storage.url", "not a database URL"),
        ({"sqlite_synchronous": "SOMETIMES"}, "storage.sqlite_synchronous", "is not one of"),
        ({"batch_size": 0}, "storage.batch_size", "at least 1"),
        ({"flush_interval_ms": -1.0}, "storage.flush_interval_ms", "negative"),
        ({"retry_interval_s": 0.0}, "storage.retry_interval_s", "positive"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_field(tmp_path, storage, field, reason):
    cfg = config_from_dict({"pool": {"data_dir": str(tmp_path)}, "storage": storage})
    with pytest.raises(ConfigError) as info:
        create_engine_from_config(cfg)
    assert str(info.value).startswith(f"{field}:") and reason in str(info.value)
    # The storage layer itself raises its own error with the same message.
    with pytest.raises(StorageSettingsError) as direct:
        StorageSettings(data_dir=tmp_path, **storage).validate()
    assert str(direct.value) == str(info.value)


def test_engine_accepts_storage_settings_directly(tmp_path):
    with pytest.raises(StorageSettingsError, match=r"storage\.sqlite_synchronous"):
        create_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}",
            StorageSettings(sqlite_synchronous="bogus"),
        )


def test_cli_reports_a_bad_sync_mode_as_a_configuration_error(tmp_path, capsys):
    conf = tmp_path / "pool.toml"
    conf.write_text(
        f'[pool]\ndata_dir = "{tmp_path}"\n[storage]\nsqlite_synchronous = "maybe"\n'
    )
    assert main(["--config", str(conf), "db", "current"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "storage.sqlite_synchronous" in err
