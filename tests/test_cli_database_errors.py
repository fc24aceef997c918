"""Operator commands facing an unreachable database print one line naming it, never a traceback."""

from __future__ import annotations

import socket

import pytest

from poolserver.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.mark.parametrize(
    "argv",
    [
        ["miners", "list"],
        ["licenses", "list"],
        ["hardware", "list"],
        ["audit", "verify"],
        ["payouts", "balances"],
        ["db", "current"],
    ],
)
def test_unreachable_database_is_one_clear_line(tmp_path, capsys, argv):
    conf = tmp_path / "pool.toml"
    url = f"postgresql+asyncpg://pool@127.0.0.1:{_closed_port()}/qazpool"
    conf.write_text(f'[storage]\nurl = "{url}"\n')
    assert main(["--config", str(conf), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"poolserver {argv[0]}: cannot reach {url}: ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
