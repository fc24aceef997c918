"""A real pool for the security suite's tests (``python -m poolserver run``, or the weakened
launcher ``tests.weak_pool``), configured like a small production pool: the register enforced,
metrics on, a report signing key, short auth timeout and per-IP cap so the cases run quickly,
and the suite run against it as the tester would (``poolserver security-suite``)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.pool_process import ROOT, PoolProcess, free_port

SUITE_STRATUM = """max_connections_per_ip = 64
max_connections = 150
auth_timeout_s = 3.0
ban_min_submits = 20
auth_failures_allowed = 3
auth_backoff_max_s = 60.0
"""


# The regulator's token of the test pools ([web] regulator_token_sha256 is its SHA-256).
REGULATOR_TOKEN = "qzr_security-suite-test-regulator-token"


def write_suite_config(path: Path, data_dir: Path, port: int, metrics_port: int,
                       web_port: int) -> Path:  # fmt: skip
    path.write_text(f"""[pool]
data_dir = "{data_dir}"
log_level = "INFO"

[chain]
shares_per_block = 300

[stratum]
{SUITE_STRATUM}
[[stratum.listeners]]
host = "127.0.0.1"
port = {port}
start_difficulty = 1e-6
min_difficulty = 1e-6
max_difficulty = 1e-6

[storage]
retry_interval_s = 0.5

[metrics]
enabled = true
host = "127.0.0.1"
port = {metrics_port}
db_poll_interval_s = 0

[payouts]
enabled = false

[register]
enforce = "on"
poll_interval_s = 0.5

[web]
enabled = {"true" if web_port else "false"}
host = "127.0.0.1"
port = {web_port}
regulator_token_sha256 = "{hashlib.sha256(REGULATOR_TOKEN.encode()).hexdigest()}"
""")
    return path


class SuitePool(PoolProcess):
    """The pool as a child process, optionally weakened (``tests.weak_pool``)."""

    def __init__(self, tmp: Path, weakenings: tuple[str, ...] = (), web: bool = True) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.data_dir = tmp / "data"
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.port = free_port()
        self.metrics_port = free_port()
        self.web_port = free_port() if web else 0
        config = write_suite_config(tmp / "pool.toml", self.data_dir, self.port,
                                    self.metrics_port, self.web_port)  # fmt: skip
        super().__init__(config, tmp / "pool.log")
        self.weakenings = weakenings
        self.tmp = tmp

    def start(self) -> None:
        assert self.proc is None, "already running"
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        cmd = [sys.executable, "-m", "poolserver", "--config", str(self.config), "run"]
        if self.weakenings:
            cmd = [sys.executable, "-m", "tests.weak_pool", ",".join(self.weakenings),
                   "--config", str(self.config), "run"]  # fmt: skip
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        self.starts += 1

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "poolserver", "--config", str(self.config),
                              *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"poolserver {' '.join(args)}: {res.stdout}{res.stderr}")
        return res


def keygen(pool: SuitePool, path: Path) -> Path:
    pool.cli("report", "keygen", "--key", str(path))
    return path


def run_suite(pool: SuitePool, key: Path, out: Path, *args: str,
              timeout: float = 900) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``poolserver security-suite`` against ``pool``; its exit and the protocol document."""
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "poolserver", "--config", str(pool.config), "security-suite",
         "--target", f"127.0.0.1:{pool.port}", "--key", str(key), "--out", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    doc_path = out / "protocol.json"
    if not doc_path.exists():
        raise AssertionError(f"no protocol after {time.monotonic() - t0:.0f} s "
                             f"(exit {res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}")
    return res, json.loads(doc_path.read_text())
