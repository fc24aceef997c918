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


async def test_nothing_is_left_for_the_runner_after_the_metrics_tests_pool(tmp_path):
    """What pytest-asyncio's ``Runner.close()`` waits for after a test: the tasks it cancels
    (one ignoring cancellation hangs it) and the default executor's threads (it joins them),
    plus aiosqlite's non-daemon connection threads (they keep the process from exiting). After
    ``mined_pool`` (the fixture of tests/test_metrics.py, where a CI run hung) none is left."""
    import asyncio

    from tests.conftest import wait_until
    from tests.shutdown_support import (
        busy_executor_threads,
        connection_threads,
        wait_connection_threads_gone,
        wait_executor_idle,
    )
    from tests.telemetry_support import mined_pool

    me = asyncio.current_task()
    before = set(asyncio.all_tasks())
    threads = set(connection_threads())
    async with mined_pool(tmp_path) as (app, _fake, _mining):
        await wait_until(lambda: app.stats.shares["accepted"] >= 2, timeout=60)
        await wait_until(lambda: app.db_poller.snapshot.polls >= 1, timeout=60)
    await wait_until(lambda: not (asyncio.all_tasks() - before - {me}), timeout=5)
    await wait_executor_idle(5)
    await wait_connection_threads_gone(threads, 5)
    assert busy_executor_threads() == 0
