"""Issue 10 over real sockets: one share is credited once (duplicates per chain tip keyed by the
header hash), a block solve reaches the block sink whatever the share's reject (hash first), a
share the sink could not record is not a duplicate when resubmitted, and a share the storage
already holds is answered as a duplicate."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os

import pytest

from stratum import hashcore
from stratum.difficulty import target_from_nbits
from stratum.jobs import assemble_block
from stratum.memory_sink import MemoryShareSink
from stratum.validate import MAX_NTIME_ROLL_S
from tests.stratum_client import Found, NotifiedJob, StratumClient
from tests.stratum_support import fixture_builder, fixture_job, hard, start_server


async def _miner(port: int, worker: str = "acc.w1") -> StratumClient:
    c = await StratumClient.connect("127.0.0.1", port)
    await c.cgminer(worker)
    await c.wait_job()
    return c


def _solve(
    c: StratumClient,
    job: NotifiedJob,
    *,
    en2: bytes | None = None,
    ntime: int | None = None,
    version_bits: int = 0,
    mask: int | None = None,
) -> Found:
    """Grind a nonce whose header (hashed exactly as given) meets the job's network target."""
    en2 = os.urandom(c.extranonce2_size) if en2 is None else en2
    ntime = job.ntime if ntime is None else ntime
    mask = c.version_mask | version_bits if mask is None else mask
    net = hashcore.target_bytes(target_from_nbits(job.nbits))
    start = int.from_bytes(os.urandom(4), "little")
    for base in range(0, 1 << 16, 256):
        items = [
            (job.coinb1, c.extranonce1, en2, job.coinb2, job.branch, job.version, job.prevhash,
             ntime, job.nbits, (start + base + i) & 0xFFFFFFFF, net, net, version_bits, mask)
            for i in range(256)
        ]  # fmt: skip
        for i, (h, _, meets_network) in enumerate(hashcore.check_shares(items)):
            if meets_network:
                nonce = (start + base + i) & 0xFFFFFFFF
                return Found(
                    en2.hex(), f"{ntime:08x}", f"{nonce:08x}", f"{version_bits:08x}", h, True, True
                )
    raise AssertionError("no block solve found")


# ---- part 1: duplicates per chain tip, keyed by the header hash ------------------------------


async def test_same_header_under_two_job_ids_of_one_tip_is_credited_once():
    """Two jobs on one tip with identical coinbase parts, branch, version and bits (a template
    refresh that changed nothing): the same header is one share, whatever job id, worker name
    or hex case it is resubmitted under. Failed before: accepted once per job id."""
    builder = fixture_builder(first_job_id=1)
    server, port, sink, _ = await start_server(job=hard(fixture_job(builder=builder)))
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        await c.cgminer("acc.w1")
        assert (await c.request("mining.authorize", ["acc.w2", "x"]))["result"] is True
        first = await c.wait_job()
        server.new_job(dataclasses.replace(hard(fixture_job(builder=builder)), clean_jobs=False))
        second = await c.wait_job(newer_than=first.job_id)
        assert second.job_id != first.job_id
        assert (second.coinb1, second.coinb2, second.branch) == (
            first.coinb1, first.coinb2, first.branch)  # fmt: skip
        found = c.grind(first, version_bits=0x2000)
        assert (await c.submit(first, found))["result"] is True
        again = [
            found.params("acc.w1", second.job_id),
            found.params("acc.w2", second.job_id),
            [
                p.upper() if i >= 2 else p
                for i, p in enumerate(found.params("acc.w1", first.job_id))
            ],
        ]
        for params in again:
            reply = await c.request("mining.submit", params)
            assert reply["error"] == [22, "Duplicate share", None], params
        assert len(await sink.wait_for(1)) == 1
        assert server.stats.shares["accepted"] == 1 and server.stats.shares["duplicate"] == 3
    finally:
        await c.close()
        await server.shutdown()


async def test_duplicate_set_belongs_to_the_tip_and_goes_with_it():
    server, port, _sink, _ = await start_server()
    c = await _miner(port)
    try:
        job = c.last_job
        assert (await c.submit(job, c.grind(job, version_bits=0)))["result"] is True
        tip = server.tips.current.tip
        assert len(tip.seen) == 1
        newer = dataclasses.replace(hard(fixture_job(builder=fixture_builder(first_job_id=50))),
                                    prevhash=bytes(31) + b"\x05")  # fmt: skip
        server.new_job(newer)
        assert not tip.current and tip.seen == set()  # retired with the block
        assert server.tips.current.tip is not tip and server.tips.current.tip.seen == set()
    finally:
        await c.close()
        await server.shutdown()


# ---- part 2: hash first, reject after ---------------------------------------------------------


REASONS = ["unauthorized_worker", "stale", "bad_extranonce2", "ntime_low", "ntime_high",
           "version_mask"]  # fmt: skip


@pytest.mark.parametrize("case", REASONS)
async def test_block_solve_under_each_reject_reaches_the_block_sink(case):
    """Spec §10.3: a share from an authorized connection whose job the pool still has is hashed
    and tested against the network target before any reject; the block is handed to the block
    sink and the reply keeps the reject. Failed before: refused unhashed, no block."""
    server, port, sink, blocks = await start_server(job=fixture_job())  # regtest: easy target
    c = await _miner(port)
    try:
        job = c.last_job
        worker = c.worker
        if case == "unauthorized_worker":
            found, worker, error = _solve(c, job), "acc.nobody", [24, "Unauthorized worker", None]
        elif case == "stale":
            newer = dataclasses.replace(fixture_job(builder=fixture_builder(first_job_id=9)),
                                        prevhash=bytes(31) + b"\x07")  # fmt: skip
            server.new_job(newer)
            await c.wait_job(newer_than=job.job_id)
            found = _solve(c, job)
            error = [21, "Stale share (job superseded by a new block)", None]
        elif case == "bad_extranonce2":
            found = _solve(c, job, en2=os.urandom(c.extranonce2_size - 3))
            error = [20, "Invalid extranonce2: wrong length or not hex", None]
        elif case == "ntime_low":
            found, error = _solve(c, job, ntime=job.ntime - 1), [20, "Ntime out of range", None]
        elif case == "ntime_high":
            found = _solve(c, job, ntime=job.ntime + MAX_NTIME_ROLL_S + 1)
            error = [20, "Ntime out of range", None]
        else:
            found = _solve(c, job, version_bits=0x40000000)
            error = [20, "Invalid version mask: version_bits outside the negotiated mask", None]
        reply = await c.request("mining.submit", found.params(worker, job.job_id))
        assert reply["error"] == error
        (candidate,) = await blocks.wait_for(1)
        assert candidate.block_hash == found.hash
        assert hashcore.sha256d(candidate.header) == found.hash  # the header as the miner hashed
        assemble_block(candidate.job, candidate.extranonce1, candidate.extranonce2,
                       candidate.header)  # fmt: skip
        assert (candidate.account, candidate.worker) == ("acc", "w1")
        assert sink.shares == [] and server.stats.shares["accepted"] == 0
        assert server.stats.blocks_found == 1 and server.stats.blocks_found_rejected == 1
    finally:
        await c.close()
        await server.shutdown()


async def test_unauthenticated_connection_gets_no_hashing():
    server, port, _, blocks = await start_server(job=fixture_job())
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        await c.request("mining.subscribe", ["x"])
        job = await _peek_job(server)
        reply = await c.request("mining.submit", ["acc.w1", job, "00" * 8, "00000000", "00000000"])
        assert reply["error"][0] == 24
        assert server.stats.checked_shares == 0 and blocks.candidates == []
    finally:
        await c.close()
        await server.shutdown()


async def _peek_job(server) -> str:
    return server.tips.current.job.job_id


# ---- part 3 (last line): not recorded is not seen ---------------------------------------------


class _FlakySink(MemoryShareSink):
    """Fails the first ``failures`` puts (disk full), then stores."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def put_many(self, shares):
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return await super().put_many(shares)


async def test_share_not_recorded_is_accepted_when_resubmitted():
    """Failed before: the resubmission was judged a duplicate (and counted toward the ban)."""
    sink = _FlakySink(failures=1)
    server, port, _, _ = await start_server(sink=sink)
    c = await _miner(port)
    try:
        job = c.last_job
        found = c.grind(job, version_bits=0)
        reply = await c.submit(job, found)
        assert reply["error"] == [20, "Share could not be recorded, please resubmit", None]
        assert (await c.submit(job, found))["result"] is True
        assert [s.share_hash for s in sink.shares] == [found.hash]
        (session,) = server.sessions
        assert session.invalid == 0
        # two identical shares in flight at once: one accepted, one duplicate
        other = c.grind(job, version_bits=0)
        msgs = [c.request_future("mining.submit", other.params(c.worker, job.job_id))
                for _ in range(2)]  # fmt: skip
        c.send_lines(*(json.dumps(m).encode() + b"\n" for m, _ in msgs))
        replies = await asyncio.wait_for(asyncio.gather(*(f for _, f in msgs)), 5)
        assert sorted(str(r["result"]) + str(r["error"]) for r in replies) == [
            "None[22, 'Duplicate share', None]", "TrueNone"]  # fmt: skip
        assert [s.share_hash for s in sink.shares] == [found.hash, other.hash]
    finally:
        await c.close()
        await server.shutdown()


async def test_block_the_block_sink_could_not_record_is_not_seen():
    server, port, sink, blocks = await start_server(job=fixture_job())
    calls = []

    async def flaky_block_found(candidate):
        calls.append(candidate)
        if len(calls) == 1:
            raise OSError("disk full")

    blocks.block_found = flaky_block_found  # type: ignore[method-assign]
    c = await _miner(port)
    try:
        job = c.last_job
        found = _solve(c, job)
        reply = await c.request("mining.submit", found.params(c.worker, job.job_id))
        assert reply["error"][1] == "Share could not be recorded, please resubmit"
        reply = await c.request("mining.submit", found.params(c.worker, job.job_id))
        assert reply["result"] is True and len(calls) == 2
        assert [s.share_hash for s in sink.shares] == [found.hash]
    finally:
        await c.close()
        await server.shutdown()


# ---- part 1, second line of defence: the storage refuses a share hash it holds ---------------


class _PutOnlySink(MemoryShareSink):
    put_many = None  # type: ignore[assignment]  # the server falls back to put()


@pytest.mark.parametrize("sink_cls", [MemoryShareSink, _PutOnlySink])
async def test_share_the_storage_already_holds_is_a_duplicate(sink_cls):
    sink = sink_cls(dedupe=True)
    server, port, _, _ = await start_server(sink=sink)
    c = await _miner(port)
    try:
        job = c.last_job
        found = c.grind(job, version_bits=0)
        sink.held.add(found.hash)  # stored before (a restart, another instance)
        reply = await c.submit(job, found)
        assert reply["error"] == [22, "Duplicate share", None]
        assert sink.shares == [] and server.stats.storage_duplicates == 1
        assert server.stats.shares["accepted"] == 0 and server.stats.shares["duplicate"] == 1
        fresh = c.grind(job, version_bits=0)
        assert (await c.submit(job, fresh))["result"] is True
        assert [s.share_hash for s in sink.shares] == [fresh.hash]
    finally:
        await c.close()
        await server.shutdown()


@pytest.mark.parametrize("size", [0, 1, 5, 8, 200, 5000])
def test_hash_core_hashes_extranonce2_of_any_length(size):
    """A wrong-size extranonce2 is hashed (then refused): the C core takes any length and
    agrees with the hashlib reference."""
    from stratum import _hashcore_py

    job = fixture_job()
    target = b"\xff" * 32
    item = (job.coinb1, b"\x01\x02\x03\x04", os.urandom(size), job.coinb2, job.branch,
            job.version, job.prevhash, job.ntime, job.nbits, 7, target, target, 0, 0)  # fmt: skip
    assert hashcore.check_shares([item]) == _hashcore_py.check_shares([item])


async def test_block_share_not_recorded_is_resubmitted_without_a_second_block():
    """The block reached the block sink but the share sink failed: the resubmitted share is
    accepted (credited once) and the block is not handed over a second time."""
    sink = _FlakySink(failures=1)
    server, port, _, blocks = await start_server(job=fixture_job(), sink=sink)
    c = await _miner(port)
    try:
        job = c.last_job
        found = _solve(c, job)
        reply = await c.request("mining.submit", found.params(c.worker, job.job_id))
        assert reply["error"][1] == "Share could not be recorded, please resubmit"
        assert (await c.request("mining.submit", found.params(c.worker, job.job_id)))["result"]
        assert [s.share_hash for s in sink.shares] == [found.hash] and sink.shares[0].is_block
        assert [b.block_hash for b in blocks.candidates] == [found.hash]
        assert server.stats.blocks_found == 1
    finally:
        await c.close()
        await server.shutdown()
