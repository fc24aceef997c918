"""A running pool with real data for the web tests: the composed ``PoolApp`` on the embedded
regtest chain (every share a block), a registered miner mining over real Stratum, its first
block matured, credited and paid by the payout service, a second block found and allocated but
not matured; a read token issued for the miner. Everything through the real code paths."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from poolserver.app import PoolApp
from poolserver.config import config_from_dict
from poolserver.storage.repository import Allocations
from poolserver.web.tokens import WebTokens, new_token
from tests.payout_support import OTHER_MINER, seed_register
from tests.stratum_client import StratumClient

REGULATOR_TOKEN = new_token("qzr_")


@dataclass
class PoolWithData:
    app: PoolApp
    engine: Any
    base: str  # http://host:port
    token: str  # alice's read token
    blocks: list[str]  # block hashes, oldest first (the first matured and paid)
    metrics: str


def web_config(tmp_path: Path, db_url: str, **web: Any) -> Any:
    return config_from_dict({
        "pool": {"data_dir": str(tmp_path / "data")},
        "storage": {"url": db_url},
        "chain": {"bits": "207fffff", "persist": False},
        "stratum": {"listeners": [{"host": "127.0.0.1", "port": 0,
                                   "start_difficulty": 1e-6, "min_difficulty": 1e-8}]},
        "metrics": {"enabled": True, "port": 0, "db_poll_interval_s": 0},
        "payouts": {"tick_interval_s": 0.2, "allocation_delay_s": 0.0,
                    "maturity_confirmations": 2, "min_payout_sats": 1000},
        "web": {"port": 0,
                "regulator_token_sha256": hashlib.sha256(REGULATOR_TOKEN.encode()).hexdigest(),
                **web},
    })  # fmt: skip


async def _mine_block(app: PoolApp, worker: str) -> str:
    host, port = app.stratum_addresses[0]
    c = await StratumClient.connect(host, port)
    try:
        await c.cgminer(worker)
        job = await c.wait_job()
        found = c.grind(job, version_bits=0x00002000)
        assert (await c.submit(job, found))["result"] is True
    finally:
        await c.close()
    return found.hash[::-1].hex()


async def _allocated(engine: Any, block_hash: str) -> None:
    async with asyncio.timeout(20):
        while await Allocations(engine).get(block_hash) is None:
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def pool_with_data(db_url: str, engine: Any, tmp_path: Path, **web: Any
                         ) -> AsyncIterator[PoolWithData]:  # fmt: skip
    await seed_register(engine)
    app = PoolApp(web_config(tmp_path, db_url, **web))
    await app.start()
    try:
        first = await _mine_block(app, "alice.rig1")
        await _allocated(engine, first)
        app.rpc.generatetoaddress(100, OTHER_MINER)  # matures (2 conf.) and makes it spendable
        wallet = app.payout_service.transport
        async with asyncio.timeout(20):
            while not wallet.recorded():
                await asyncio.sleep(0.05)
        second = await _mine_block(app, "alice.rig2")
        await _allocated(engine, second)
        token = await WebTokens(engine).issue("alice", "tests")
        assert app.web_address is not None and app.metrics_address is not None
        (wh, wp), (mh, mp) = app.web_address, app.metrics_address
        base, metrics = f"http://{wh}:{wp}", f"http://{mh}:{mp}/metrics"
        yield PoolWithData(app, engine, base, token, [first, second], metrics)
    finally:
        await app.stop()


async def fetch(base: str, path: str, token: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:  # fmt: skip
    """(status, parsed JSON or text, response headers) over real HTTP."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.get(base + path, headers=h) as r:
        text = await r.text()
        body: Any = text
        if r.content_type == "application/json":
            body = await r.json()
        return r.status, body, r.headers


def validate(schema: dict[str, Any], value: Any, where: str = "$") -> None:
    """A small JSON Schema check for the subset the hand-written OpenAPI schema uses (type,
    properties, required, additionalProperties false, items, enum, const): enough to catch a
    route answering something its schema does not say."""
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        py = {"object": dict, "array": list, "string": str, "null": type(None), "boolean": bool}
        ok = any(
            (t == "integer" and isinstance(value, int) and not isinstance(value, bool))
            or (t == "number" and isinstance(value, int | float) and not isinstance(value, bool))
            or (t in py and isinstance(value, py[t]))
            for t in allowed
        )
        assert ok, f"{where}: {value!r} is not {allowed}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if isinstance(value, dict) and "properties" in schema:
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(schema["properties"])
            assert not extra, f"{where}: undocumented {sorted(extra)}"
        for key, sub in schema["properties"].items():
            if key in value:
                validate(sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(schema["items"], item, f"{where}[{i}]")
