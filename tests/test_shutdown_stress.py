"""Many start/stop cycles of the real pool under mining: every ``stop()`` ends in bounded time,
leaves no task pending and no executor thread busy, and loses no acknowledged share
(``tests/shutdown_support.py`` has the cycle and its checks). The seed is printed; set
``QAZPOOL_STRESS_SEED`` / ``QAZPOOL_STRESS_CYCLES`` to replay or lengthen a run."""

from __future__ import annotations

import os
import random

import pytest

from tests.shutdown_support import run_cycles


def _seed() -> int:
    return int(os.environ.get("QAZPOOL_STRESS_SEED") or random.SystemRandom().randrange(1 << 32))


def _cycles(default: int) -> int:
    return int(os.environ.get("QAZPOOL_STRESS_CYCLES") or default)


async def test_a_few_start_stop_cycles_under_mining_end_cleanly(tmp_path):
    results = await run_cycles(tmp_path / "data", 3, _seed(), max_delay=0.5)
    assert sum(r.answered for r in results) > 0  # the miners did reach the pool


@pytest.mark.slow
async def test_many_start_stop_cycles_under_mining_on_sqlite(tmp_path):
    results = await run_cycles(tmp_path / "data", _cycles(40), _seed())
    assert sum(r.acked for r in results) > 0


@pytest.mark.slow
@pytest.mark.postgres
async def test_start_stop_cycles_under_mining_on_postgresql(tmp_path, pg_server, pg_template):
    url = pg_server.url(pg_server.new_database(template=pg_template))
    results = await run_cycles(tmp_path / "data", _cycles(12), _seed(), db_url=url)
    assert sum(r.acked for r in results) > 0
