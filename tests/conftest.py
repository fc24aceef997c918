from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Database fixtures (real PostgreSQL + SQLite): pg_server, db_backend, db_url, empty_db_url, engine.
from tests.storage_fixtures import (  # noqa: F401
    db_backend,
    db_url,
    empty_db_url,
    engine,
    pg_server,
    pg_template,
    sqlite_template,
)

VECTORS_DIR = Path(__file__).parent / "vectors"
FIXTURES_DIR = VECTORS_DIR / "bitcoind-regtest"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES_DIR / name).read_text())


def stratum_vectors() -> dict[str, dict[str, Any]]:
    data = json.loads((VECTORS_DIR / "stratum-vectors.json").read_text())
    return {v["name"]: v for v in data["vectors"]}


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` is true; TimeoutError after ``timeout`` seconds.
    For waiting on server state instead of sleeping a guessed time (which flakes when loaded)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def fixture() -> Any:
    return load_fixture


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests (load, kill) stay out of the default run, as the marker says; `-m slow`
    (or any -m expression naming slow) runs them."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        # the marker, not `"slow" in item.keywords`: keywords also hold node names and
        # parametrize ids, so a case with id "slow" was silently skipped
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
