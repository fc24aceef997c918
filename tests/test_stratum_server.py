"""The Stratum server over real TCP on loopback, driven by firmware-faithful test clients."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from stratum.difficulty import target_from_difficulty
from stratum.extranonce import ExtranonceAllocator
from stratum.jobs import assemble_block
from tests.stratum_client import StratumClient
from tests.stratum_support import fixture_builder, fixture_job, hard, start_server


async def test_cgminer_sequence_gets_work_and_accepted_share():
    server, port, sink, _ = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        await c.cgminer("alice.rig1")
        assert c.version_mask == 0x1FFFE000
        job = await c.wait_job()
        assert c.notifications[0]["method"] == "mining.set_difficulty"
        assert job.difficulty == pytest.approx(1e-6)
        found = c.grind(job, version_bits=0x00002000)
        reply = await c.submit(job, found)
        assert reply == {"id": reply["id"], "result": True, "error": None}
        shares = await sink.wait_for(1)
        s = shares[0]
        assert (s.account, s.worker, s.is_block) == ("alice", "rig1", False)
        assert s.share_hash == found.hash
        assert s.session_id == c.extranonce1.hex()
        assert s.created_at.tzinfo is not None
        assert s.user_agent == "cgminer/4.11.1"
        assert server.stats.shares["accepted"] == 1
    finally:
        await c.close()
        await server.shutdown()


async def test_bitaxe_pipelined_mask_ffffffff_and_suggest_difficulty():
    server, port, sink, _ = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        configure = await c.bitaxe("bob.bitaxe", suggest=2e-6)
        assert configure["result"] == {"version-rolling": True, "version-rolling.mask": "1fffe000"}
        assert configure["id"] == 1
        await c.wait_notification("mining.set_difficulty")
        # the suggestion is answered with a new difficulty and a job carrying it
        async with asyncio.timeout(5):
            while c.difficulty != 2e-6 or c.last_job is None or c.last_job.difficulty != 2e-6:
                await c.wait_notification("mining.notify")
        job = c.last_job
        found = c.grind(job, version_bits=0x0A5B6000)
        assert (await c.submit(job, found))["result"] is True
        (s,) = await sink.wait_for(1)
        # the job id was first sent at 1e-6: shares on it are judged at the lower difficulty
        assert s.difficulty == 1e-6
        # the next job belongs to the new difficulty
        builder = fixture_builder(first_job_id=2)
        server.new_job(dataclasses.replace(hard(fixture_job(builder=builder)), clean_jobs=False))
        job2 = await c.wait_job(newer_than=job.job_id)
        assert job2.job_id == "2" and job2.difficulty == 2e-6
        found = c.grind(job2, version_bits=0x00002000)
        assert (await c.submit(job2, found))["result"] is True
        s = (await sink.wait_for(2))[1]
        assert s.difficulty == 2e-6 and s.job_id == "2"
        # a share that meets only the old difficulty is low on the new job
        weak = c.grind(job2, difficulty=1e-6, version_bits=0)
        while int.from_bytes(weak.hash, "little") <= target_from_difficulty(2e-6):
            weak = c.grind(job2, difficulty=1e-6, version_bits=0)
        reply = await c.submit(job2, weak)
        assert reply["error"] == [23, "Low difficulty share", None]
    finally:
        await c.close()
        await server.shutdown()


async def test_cpuminer_without_configure_and_version_bits_rules():
    server, port, sink, _ = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        await c.cpuminer("carol")
        job = await c.wait_job()
        found = c.grind(job)
        assert (await c.submit(job, found))["result"] is True
        # ESP-Miner style 6th param "00000000" without negotiation is fine
        found = c.grind(job, version_bits=0)
        assert (await c.submit(job, found))["result"] is True
        # rolled bits without a negotiated mask are refused
        found = c.grind(job)
        reply = await c.request("mining.submit", [*found.params("carol", job.job_id), "00002000"])
        assert reply["result"] is None and reply["error"][0] == 20
        assert "version mask" in reply["error"][1]
        shares = await sink.wait_for(2)
        assert {s.account for s in shares} == {"carol"} and shares[0].worker == ""
    finally:
        await c.close()
        await server.shutdown()


@pytest.mark.parametrize(
    "case_name", ["solved_block_case.json", "solved_block_case_empty_mempool.json"]
)
async def test_fixture_submit_is_flagged_as_block(case_name):
    from tests.conftest import load_fixture

    case = load_fixture(case_name)
    en1 = bytes.fromhex(case["extranonce1"])
    en2_size = len(case["extranonce2"]) // 2
    alloc = ExtranonceAllocator(
        size=4, node_id=en1[0], first_counter=int.from_bytes(en1[1:], "big")
    )
    job = fixture_job(case)
    assert job.job_id == case["mining_notify_params"][0]
    server, port, sink, blocks = await start_server(
        job=job, extranonces=alloc, extranonce2_size=en2_size
    )
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        if case["submit"]["version_bits"] is None:
            await c.cpuminer("pool.fixture")
        else:
            await c.cgminer("pool.fixture")
        assert c.extranonce1 == en1
        notified = await c.wait_job()
        params = c.notifications[-1]["params"]
        assert params == case["mining_notify_params"]
        sub = case["submit"]
        submit = ["pool.fixture", notified.job_id, case["extranonce2"], sub["ntime"], sub["nonce"]]
        if sub["version_bits"] is not None:
            submit.append(sub["version_bits"])
        reply = await c.request("mining.submit", submit)
        assert reply["result"] is True
        (candidate,) = await blocks.wait_for(1)
        assert candidate.block_hash[::-1].hex() == case["block_hash"]
        assert candidate.header.hex() == case["header"]
        block = assemble_block(
            candidate.job, candidate.extranonce1, candidate.extranonce2, candidate.header
        )
        assert block.hex() == case["block"]
        (share,) = await sink.wait_for(1)
        assert share.is_block
        assert server.stats.blocks_found == 1
        # the same submit again is not a second block: spec §10.3 puts the duplicate check
        # (22) before the difficulty check (23)
        reply = await c.request("mining.submit", submit)
        assert reply["error"][0] == 22
        assert len(blocks.candidates) == 1
    finally:
        await c.close()
        await server.shutdown()


async def test_block_that_cannot_be_recorded_is_not_acknowledged():
    """A block candidate the block sink fails to persist is answered with an error, never true."""
    from tests.conftest import load_fixture

    class FailingBlockSink:
        calls = 0

        async def block_found(self, candidate):
            FailingBlockSink.calls += 1
            raise OSError("disk full")

    case = load_fixture("solved_block_case_empty_mempool.json")
    en1 = bytes.fromhex(case["extranonce1"])
    alloc = ExtranonceAllocator(
        size=4, node_id=en1[0], first_counter=int.from_bytes(en1[1:], "big")
    )
    server, port, sink, _ = await start_server(
        job=fixture_job(case), extranonces=alloc, extranonce2_size=len(case["extranonce2"]) // 2
    )
    server.block_sink = FailingBlockSink()
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        await c.cpuminer("pool.fixture")
        notified = await c.wait_job()
        sub = case["submit"]
        reply = await c.request(
            "mining.submit",
            ["pool.fixture", notified.job_id, case["extranonce2"], sub["ntime"], sub["nonce"]],
        )
        assert reply["result"] is not True
        assert reply["error"][0] == 20 and "could not be recorded" in reply["error"][1]
        assert FailingBlockSink.calls == 1
        assert sink.shares == []  # not journaled either: the miner was told to resubmit
        assert server.stats.sink_errors == 1
    finally:
        await c.close()
        await server.shutdown()
