"""Shared setup for the Stratum tests: jobs from the bitcoind fixtures and a server on loopback."""

from __future__ import annotations

import dataclasses
from typing import Any

from stratum.address import address_to_script
from stratum.difficulty import DIFF1
from stratum.extranonce import ExtranonceAllocator
from stratum.interfaces import Job
from stratum.jobs import JobBuilder
from stratum.memory_sink import MemoryBlockSink, MemoryShareSink
from stratum.server import StratumServer
from stratum.settings import PortSettings, ServerSettings
from stratum.template import parse_template
from tests.conftest import load_fixture

TAG = b"/qazpool-fixture/"
CASE = load_fixture("solved_block_case.json")
# The fixture's block time; the server's clock is pinned near it so ntime checks are stable.
FIXTURE_NOW = int(CASE["submit"]["ntime"], 16) + 60


def fixture_builder(case: dict[str, Any] = CASE, first_job_id: int = 1) -> JobBuilder:
    script = address_to_script(case["payout_address"], "regtest")
    return JobBuilder(
        script,
        tag=TAG,
        extranonce1_size=len(case["extranonce1"]) // 2,
        extranonce2_size=len(case["extranonce2"]) // 2,
        first_job_id=first_job_id,
    )


def fixture_job(case: dict[str, Any] = CASE, builder: JobBuilder | None = None) -> Job:
    template = parse_template(load_fixture(case["template_file"]), "regtest")
    return (builder or fixture_builder(case)).build(template, clean_jobs=True)


def hard(job: Job) -> Job:
    """The same job with a mainnet-like network target, so ground shares are not blocks."""
    return dataclasses.replace(job, nbits=0x1D00FFFF, network_target=DIFF1)


async def start_server(
    *,
    job: Job | None = None,
    sink: Any = None,
    start_difficulty: float = 1e-6,
    min_difficulty: float = 1e-8,
    max_difficulty: float = 1e12,
    extranonces: ExtranonceAllocator | None = None,
    policy: Any = None,
    security: Any = None,
    **settings: Any,
) -> tuple[StratumServer, int, Any, MemoryBlockSink]:
    port = PortSettings(
        "127.0.0.1",
        0,
        start_difficulty=start_difficulty,
        min_difficulty=min_difficulty,
        max_difficulty=max_difficulty,
    )
    settings.setdefault("sweep_interval_s", 0.05)
    cfg = ServerSettings(ports=(port,), **settings)
    sink = sink if sink is not None else MemoryShareSink()
    blocks = MemoryBlockSink()
    server = StratumServer(
        cfg,
        sink,
        block_sink=blocks,
        policy=policy,
        extranonces=extranonces,
        clock=lambda: FIXTURE_NOW,
        security=security,
    )
    bound = await server.start()
    server.new_job(job if job is not None else hard(fixture_job()))
    return server, bound[0][1], sink, blocks
