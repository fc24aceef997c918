"""The real pool as a child process, for kill tests: ``python -m poolserver --config FILE run``.

``write_config`` writes a TOML file for the embedded chain with one Stratum listener at a fixed
tiny difficulty (shares are cheap to grind, a block takes about ``shares_per_block`` shares) and
metrics off. ``PoolProcess`` starts the pool, waits until it logs ``qazpool started``, and stops it
with SIGKILL (no chance to flush anything) or SIGTERM (graceful: drain, flush the journal).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = b"qazpool started"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    path: Path,
    *,
    data_dir: Path,
    port: int,
    url: str = "",
    difficulty: float = 1e-6,
    shares_per_block: int = 300,
    extra: str = "",
) -> Path:
    """A pool config: embedded chain, one listener on 127.0.0.1:``port`` at exactly
    ``difficulty`` (min = start = max, so vardiff never moves it), metrics disabled."""
    path.write_text(
        f"""[pool]
data_dir = "{data_dir}"
log_level = "INFO"

[chain]
shares_per_block = {shares_per_block}

[[stratum.listeners]]
host = "127.0.0.1"
port = {port}
start_difficulty = {difficulty!r}
min_difficulty = {difficulty!r}
max_difficulty = {difficulty!r}

[storage]
url = "{url}"
retry_interval_s = 0.5

[metrics]
enabled = false

[web]
port = 0
{extra}"""
    )
    return path


class PoolProcess:
    """One pool configuration, started and stopped many times; every run logs to ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None, "already running"
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as err:
            err.write(f"==== start {self.starts + 1}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "poolserver", "--config", str(self.config), "run"],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.starts += 1

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until this run has logged that the listeners are open; fails if the pool exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("rb") as f:
                f.seek(self._log_start)
                if READY in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pool exited with {self.proc.returncode} during startup:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"pool not ready after {timeout} s:\n{self.log_tail()}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: nothing in the pool gets to run after this."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful shutdown) and the exit code."""
        assert self.proc is not None
        proc = self.proc
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"pool did not stop within {timeout} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self.proc = None
        return int(proc.returncode)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        self.proc = None
