"""Scale-out, the instance id lease (issue 12): [pool].node_id leased in the shared database.
Refused at startup while another live instance holds it; not refused once a killed holder's
lease lapsed; renewals keep it; a clean stop releases it. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from poolserver.instance_lease import InstanceIdLease, LeaseHeld
from tests.pool_process import PoolProcess, free_port, write_config

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def lease(engine, holder: str, clock: Clock, instance_id: int = 7) -> InstanceIdLease:
    return InstanceIdLease(engine, instance_id, 10.0, holder=holder, clock=clock)


async def test_second_live_holder_refused_other_id_fine_release_frees(engine):
    clock = Clock()
    a, b = lease(engine, "host-a:1", clock), lease(engine, "host-b:2", clock)
    await a.acquire()
    with pytest.raises(LeaseHeld, match=r"pool\.node_id 7 is held by another live instance "
                                        r"\(host-a:1\)"):  # fmt: skip
        await b.acquire()
    await lease(engine, "host-b:2", clock, instance_id=8).acquire()  # its own id: fine
    await a.acquire()  # the holder itself may re-acquire (restart in place)
    await a.release()
    await b.acquire()
    assert b.stats.held and not a.stats.held


async def test_lapsed_lease_taken_over_and_renewal_keeps_it(engine):
    clock = Clock()
    a, b = lease(engine, "a", clock), lease(engine, "b", clock)
    await a.acquire()
    clock.now = T0 + timedelta(seconds=6)
    assert await a.renew()  # now valid until T0 + 16 s
    clock.now = T0 + timedelta(seconds=12)
    with pytest.raises(LeaseHeld):
        await b.acquire()  # without the renewal this would have lapsed at T0 + 10 s
    clock.now = T0 + timedelta(seconds=16, milliseconds=1)  # a stopped renewing (kill -9)
    await b.acquire()
    assert not await a.renew()  # a comes back: the id is b's now, a sees it lost
    assert a.stats.lost == 1 and not a.stats.held and a.stats.renewals == 1
    await a.release()  # does not delete b's lease
    with pytest.raises(LeaseHeld):
        await lease(engine, "c", clock).acquire()


@pytest.mark.slow
async def test_pool_process_refused_while_live_accepted_after_kill9_lapse(tmp_path):
    """Real processes on one SQLite file: the second `poolserver run` with the same node_id
    exits at startup naming the holder; after kill -9 of the first, a start succeeds once the
    lease (TTL 3 s) lapsed."""
    data = tmp_path / "data"

    def pool(name: str) -> PoolProcess:
        cfg = write_config(tmp_path / f"{name}.toml", data_dir=data, port=free_port(),
                           extra="")  # fmt: skip
        ttl = 'log_level = "INFO"\nlease_ttl_s = 3.0'
        cfg.write_text(cfg.read_text().replace('log_level = "INFO"', ttl))
        return PoolProcess(cfg, tmp_path / f"{name}.log")

    first, second = pool("first"), pool("second")
    try:
        first.start()
        await first.wait_ready()
        second.start()
        with pytest.raises(RuntimeError, match="held by another live instance"):
            await second.wait_ready()
        second.ensure_stopped()
        first.kill()
        # refused until the lease lapses (at most the TTL), then accepted: retry the start
        async with asyncio.timeout(60):
            while True:
                second.start()
                try:
                    await second.wait_ready()
                    break
                except RuntimeError as exc:
                    assert "held by another live instance" in str(exc), exc
                    second.ensure_stopped()
        assert await second.terminate() == 0
    finally:
        first.ensure_stopped()
        second.ensure_stopped()


async def test_live_lease_of_a_gone_process_on_this_host_taken_at_once(engine):
    """kill -9 and restart on the same machine: the holder's pid no longer runs, so the restart
    does not wait for the TTL; a holder on another host (or a live pid here) still refuses."""
    import os
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    clock = Clock()
    host = socket.gethostname()
    await lease(engine, f"{host}:{gone.pid}:dead", clock).acquire()
    await lease(engine, "b", clock).acquire()  # the dead holder's live lease: taken over
    await lease(engine, f"{host}:{os.getpid()}:live", clock, instance_id=9).acquire()
    with pytest.raises(LeaseHeld):
        await lease(engine, "c", clock, instance_id=9).acquire()
    await lease(engine, f"other-host:{gone.pid}:x", clock, instance_id=10).acquire()
    with pytest.raises(LeaseHeld):
        await lease(engine, "c", clock, instance_id=10).acquire()
