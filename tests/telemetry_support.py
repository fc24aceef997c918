"""Real parts for the telemetry tests: a running pool (PoolApp on SQLite with the fake bitcoind)
that test miners mine on, and Debian's Prometheus / Alertmanager started on loopback temp ports
with temp data dirs (never their default ports, never as services).

Installed by scripts/system-deps.d/prometheus.sh (scripts/test.sh runs it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from poolserver.app import PoolApp
from poolserver.config import config_from_dict
from tests.fake_bitcoind import FakeBitcoind
from tests.pool_process import free_port
from tests.stratum_client import StratumClient

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "prometheus"
GRAFANA_DIR = ROOT / "grafana"


def tool(*names: str) -> str:
    """Path of the first installed binary of ``names``; skips with the install hint if none."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"{names[0]} not installed: run scripts/system-deps.d/prometheus.sh")


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def pool_config(tmp_path: Path, fake: FakeBitcoind) -> dict[str, Any]:
    return {
        "pool": {"data_dir": str(tmp_path / "data")},
        "node": {"nodes": [{"url": fake.url, "user": fake.user, "password": fake.password}]},
        "stratum": {
            "listeners": [
                {"host": "127.0.0.1", "port": 0, "start_difficulty": 1e-6, "min_difficulty": 1e-8}
            ]
        },
        "metrics": {"host": "127.0.0.1", "port": 0, "db_poll_interval_s": 0.5},
        "web": {"port": 0},
        "register": {"enforce": "off"},
    }


@dataclass
class Mining:
    """Test miners grinding real shares on the pool, plus one bad share now and then."""

    host: str
    port: int
    clients: list[StratumClient] = field(default_factory=list)
    submitted: int = 0
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        a = await StratumClient.connect(self.host, self.port)
        await a.cgminer("aigerim.s19")
        b = await StratumClient.connect(self.host, self.port)
        await b.bitaxe("bolat.gamma", suggest=None)
        self.clients = [a, b]
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for c in self.clients:
                job = await c.wait_job(timeout=10)
                await c.submit(job, c.grind(job))
                self.submitted += 1
                if self.submitted % 5 == 0:  # a share that misses its target: a reject reason
                    await c.submit(job, c.grind(job, want_share=False))
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for c in self.clients:
            await c.close()


@contextlib.asynccontextmanager
async def mined_pool(tmp_path: Path) -> AsyncIterator[tuple[PoolApp, FakeBitcoind, Mining]]:
    fake = await FakeBitcoind().start()
    app = PoolApp(config_from_dict(pool_config(tmp_path, fake)))
    await app.start()
    host, port = app.stratum_addresses[0]
    mining = Mining(host, port)
    try:
        await mining.start()
        yield app, fake, mining
    finally:
        await mining.stop()
        await app.stop()
        await fake.stop()


@dataclass
class PayingPool:
    """A pool on the embedded chain (with its coin-tracking wallet) whose payout service has
    paid a block found over Stratum: a payment with its network fee, ledger and reconcile."""

    app: PoolApp
    block_hash: str = ""
    fee_sats: int = 0


@contextlib.asynccontextmanager
async def paying_pool(tmp_path: Path) -> AsyncIterator[PayingPool]:
    """Started and registered; ``pay()`` (below) finds a block and waits for its payment."""
    from tests.payout_support import seed_register

    cfg = config_from_dict(
        {
            "pool": {"data_dir": str(tmp_path / "paying")},
            "chain": {"bits": "207fffff", "persist": False},
            "stratum": {"listeners": [{"host": "127.0.0.1", "port": 0,
                                       "start_difficulty": 1e-6, "min_difficulty": 1e-8}]},
            "metrics": {"host": "127.0.0.1", "port": 0, "db_poll_interval_s": 0.5},
            "web": {"port": 0},
            "register": {"enforce": "off"},
            "payouts": {"tick_interval_s": 0.2, "allocation_delay_s": 0.0,
                        "maturity_confirmations": 2, "min_payout_sats": 1000},
        }
    )  # fmt: skip
    app = PoolApp(cfg)
    await app.start()
    try:
        await seed_register(app.storage.engine)
        yield PayingPool(app)
    finally:
        await app.stop()


async def pay(pool: PayingPool) -> None:
    """alice finds a block over Stratum; 100 blocks on top make it spendable; the payout
    service pays her (a real transaction of the embedded wallet, with its fee)."""
    from poolserver.storage.repository import Allocations
    from tests.payout_support import OTHER_MINER

    app = pool.app
    chain = app.rpc
    host, port = app.stratum_addresses[0]
    c = await StratumClient.connect(host, port)
    try:
        await c.cgminer("alice.rig1")
        job = await c.wait_job()
        found = c.grind(job, version_bits=0x00002000)
        assert found.meets_network and (await c.submit(job, found))["result"] is True
    finally:
        await c.close()
    pool.block_hash = found.hash[::-1].hex()
    allocations = Allocations(app.storage.engine)
    async with asyncio.timeout(30):
        while await allocations.get(pool.block_hash) is None:
            await asyncio.sleep(0.05)
    chain.generatetoaddress(100, OTHER_MINER)
    wallet = app.payout_service.transport
    async with asyncio.timeout(30):
        while not wallet.recorded():
            await asyncio.sleep(0.05)


class Daemon:
    """A child process on a loopback port, stopped with SIGTERM (then SIGKILL) at exit."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_http(url: str, daemon: Daemon, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_tail()
            try:
                await asyncio.to_thread(http_get, url, 2.0)
                return
            except OSError:
                await asyncio.sleep(0.1)


@dataclass
class Prometheus:
    url: str
    daemon: Daemon

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = json.loads(http_get(f"{self.url}/api/v1/{path}?{query}", 10.0))
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await asyncio.to_thread(self.api, "query", query=expr)
        return list(data["result"])

    async def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns at least one series (bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                result = await self.query(expr)
                if result:
                    return result
                await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def prometheus(
    tmp_path: Path,
    target: tuple[str, int] | list[tuple[str, int]],
    *,
    rule_files: list[Path] = (),  # type: ignore[assignment]
    alertmanager: str = "",
) -> AsyncIterator[Prometheus]:
    binary = tool("prometheus")
    targets = target if isinstance(target, list) else [target]
    port = free_port()
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "qazpool",
                "static_configs": [{"targets": [f"{h}:{p}" for h, p in targets]}],
            }
        ],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    daemon = Daemon(
        [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        tmp_path / "prometheus.log",
    )
    daemon.start()
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/-/ready", daemon)
        prom = Prometheus(url, daemon)
        await prom.wait_for(f'count(up{{job="qazpool"}} == 1) == {len(targets)}')
        yield prom
    finally:
        daemon.stop()


def example_alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """prometheus/alertmanager.example.yml with its routes and inhibitions kept, every receiver
    pointed at ``webhook_url`` and the waits shortened (nothing leaves the machine)."""
    import yaml

    cfg = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.example.yml").read_text())
    cfg["global"] = {"resolve_timeout": "5m"}
    cfg["route"].update(group_wait="0s", group_interval="1s")
    cfg["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        for r in cfg["receivers"]
    ]
    return cfg


@contextlib.asynccontextmanager
async def alertmanager(tmp_path: Path, webhook_url: str) -> AsyncIterator[str]:
    """Alertmanager on loopback with the example config's routes, sending to ``webhook_url``;
    yields its host:port."""
    binary = tool("prometheus-alertmanager", "alertmanager")
    port = free_port()
    path = tmp_path / "alertmanager.yml"
    path.write_text(json.dumps(example_alertmanager_config(webhook_url)))
    daemon = Daemon(
        [
            binary,
            f"--config.file={path}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        tmp_path / "alertmanager.log",
    )
    daemon.start()
    try:
        await wait_http(f"http://127.0.0.1:{port}/-/ready", daemon)
        yield f"127.0.0.1:{port}"
    finally:
        daemon.stop()


@dataclass
class Webhook:
    """An HTTP receiver for Alertmanager's webhook payloads (run by the test, on loopback)."""

    url: str = ""
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def alerts(self, status: str = "firing") -> list[dict[str, Any]]:
        return [a for p in self.payloads for a in p["alerts"] if a["status"] == status]


@contextlib.asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    from aiohttp import web

    hook = Webhook()

    async def receive(request: web.Request) -> web.Response:
        hook.payloads.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://127.0.0.1:{port}/alerts"
    try:
        yield hook
    finally:
        await runner.cleanup()
