"""The open-files limit (found by the security suite's EX-01): a pool started with the usual soft
limit of 1024 raised it, so one address flooding up to its per-IP cap cannot take every file
descriptor. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
from pathlib import Path

from poolserver.fdlimit import check_open_files_limit
from poolserver.security_suite.observe import find_pid
from tests.pool_process import ROOT, PoolProcess, free_port, write_config


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


def test_pool_raises_a_low_soft_limit_to_the_hard_limit(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        import pytest

        pytest.skip(f"hard open-files limit {hard} leaves nothing to raise")
    port = free_port()
    cfg = write_config(tmp_path / "pool.toml", data_dir=tmp_path / "data", port=port)
    log = tmp_path / "pool.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "poolserver", "--config", str(cfg), "run"], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    pool = PoolProcess(cfg, log)
    pool.proc = proc
    try:
        asyncio.run(pool.wait_ready())
        assert find_pid("127.0.0.1", port) == proc.pid
        limit = _soft_limit(proc.pid)
        expected = 1 << 20 if hard == resource.RLIM_INFINITY else min(1 << 20, hard)
        assert limit == expected > 256
        assert f"open-files limit {limit}" in log.read_text()
        # the automatic global connection cap is taken from the raised limit
        assert f"stratum connection cap: {limit - 256} in total (automatic: open-files limit " \
            f"{limit} - 256" in log.read_text()
    finally:
        pool.ensure_stopped()


def test_a_limit_below_the_per_ip_cap_is_warned(caplog) -> None:  # type: ignore[no-untyped-def]
    limit = check_open_files_limit(0)
    assert "one address can exhaust" in caplog.text
    caplog.clear()
    check_open_files_limit(max(limit - 1000, 1))
    assert "one address can exhaust" not in caplog.text
