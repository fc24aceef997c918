"""The typed config: defaults, TOML overrides, clear errors, and the example file in sync."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from poolserver.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def test_no_file_gives_embedded_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.stratum.listeners[0].port == 3333
    assert cfg.stratum.listeners[0].host == "0.0.0.0"
    assert (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9108)
    assert cfg.pool.data_dir == "./qazpool-data"
    assert cfg.node.nodes == []  # embedded chain


def test_example_file_documents_every_option_at_its_default():
    """config.example.toml must load to exactly the defaults and name every option."""
    assert load_config(EXAMPLE) == Config()
    raw = tomllib.loads(EXAMPLE.read_text())
    text = EXAMPLE.read_text()

    def walk(obj: object, prefix: str) -> None:
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            name = f"{prefix}.{f.name}" if prefix else f.name
            if dataclasses.is_dataclass(value):
                walk(value, name)
            elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
                walk(value[0], name)
            else:
                assert f"{f.name} =" in text or f"# {f.name} =" in text, f"{name} undocumented"

    walk(Config(), "")
    assert raw  # the file parses as TOML


def test_override_and_types(tmp_path):
    p = tmp_path / "pool.toml"
    p.write_text(
        '[pool]\ntag = "/kz/"\n[[stratum.listeners]]\nport = 4444\nmin_difficulty = 0.001\n'
    )
    cfg = load_config(p)
    assert cfg.pool.tag == "/kz/"
    assert cfg.stratum.listeners[0].port == 4444
    assert cfg.stratum.listeners[0].min_difficulty == 0.001
    assert cfg.metrics.port == 9108  # untouched sections keep defaults


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"pool": {"tagg": "x"}}, "pool.tagg: unknown option"),
        ({"nope": {}}, "nope: unknown option"),
        ({"metrics": {"port": "9108"}}, "metrics.port: expected int"),
        ({"stratum": {"listeners": {"port": 1}}}, "stratum.listeners: expected a list"),
        ({"stratum": {"listeners": [{"port": True}]}}, "stratum.listeners[0].port: expected int"),
        ({"metrics": {"enabled": 1}}, "metrics.enabled: expected bool"),
    ],
)
def test_bad_values_name_the_option(data, needle):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    assert needle in str(exc.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pool\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    from poolserver.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[pool]\nnode_id = 'x'\n")
    assert main(["--config", str(bad), "run"]) == 2
    err = capsys.readouterr().err
    assert "pool.node_id: expected int" in err
    assert "Traceback" not in err
