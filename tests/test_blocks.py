"""Found blocks: submitted to every node before any storage I/O, recorded concurrently (a storage
failure never stops a submission), verdicts recorded once the record exists, transport errors
retried, ``duplicate`` is success, unsettled blocks replayed at startup."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from poolserver.bitcoin.blocks import (
    BlockNotRecorded,
    BlockStatus,
    BlockSubmitter,
    JsonlFoundBlockStore,
    submit_targets,
)
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.node import NodeClient, NodeGroup
from stratum.hashcore import sha256d
from stratum.interfaces import BlockCandidate
from tests.conftest import wait_until
from tests.fake_bitcoind import FakeBitcoind
from tests.test_embedded_chain import EN1, EN2, NOW, _grind, _job

ROOT = Path(__file__).resolve().parent.parent


def _chain() -> EmbeddedChain:
    return EmbeddedChain("regtest", clock=lambda: NOW)


def _candidate(chain: EmbeddedChain, *, want_block: bool = True) -> BlockCandidate:
    job = _job(chain)
    header = _grind(job, want_block=want_block)
    return BlockCandidate(job=job, extranonce1=EN1, extranonce2=EN2, header=header,
                          block_hash=sha256d(header), account="alice", worker="rig1")  # fmt: skip


class Recorder:
    """An Rpc that notes whether the block is already on disk when submitblock arrives."""

    def __init__(self, inner: Any, store_path: Path, name: str = "recorder") -> None:
        self.inner = inner
        self.path = store_path
        self.name = name
        self.seen_on_disk: list[bool] = []

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        if method == "submitblock":
            self.seen_on_disk.append(self.path.exists() and params[0] in self.path.read_text())
        return await self.inner.call(method, *params, timeout=timeout)


async def test_block_submitted_recorded_and_accepted(tmp_path):
    chain = _chain()
    path = tmp_path / "found-blocks.jsonl"
    store = JsonlFoundBlockStore(path)
    node = Recorder(chain, path)
    statuses = []
    refreshed = []
    sink = BlockSubmitter(store, [node], on_status=statuses.append, on_submitted=refreshed.append)
    cand = _candidate(chain)
    await sink.block_found(cand)
    (outcome,) = await sink.drain()
    assert len(node.seen_on_disk) == 1  # submitted once (before or while it was recorded)
    assert outcome.status is BlockStatus.ACCEPTED and outcome.verdicts == {"recorder": None}
    assert chain.height == 1 and chain.tip.hash == cand.block_hash
    (stored,) = store.read()
    assert stored.status is BlockStatus.ACCEPTED
    assert stored.block.block_hash == cand.block_hash[::-1].hex()
    assert stored.block.found_at.tzinfo is not None
    assert stored.block.account == "alice" and stored.block.height == 1
    assert statuses == [outcome] and len(refreshed) == 1
    assert await store.pending() == []
    # a second submission of the same block (e.g. after a restart) is "duplicate" = success
    sink2 = BlockSubmitter(JsonlFoundBlockStore(tmp_path / "other.jsonl"), [chain])
    await sink2.block_found(cand)
    (again,) = await sink2.drain()
    assert again.status is BlockStatus.ACCEPTED and again.verdicts == {"embedded": "duplicate"}


async def test_rejection_is_recorded_and_alerted(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="poolserver.bitcoin.blocks")
    chain = _chain()
    store = JsonlFoundBlockStore(tmp_path / "b.jsonl")
    sink = BlockSubmitter(store, [chain])
    await sink.block_found(_candidate(chain, want_block=False))
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.REJECTED and outcome.verdicts == {"embedded": "high-hash"}
    assert any("REJECTED: embedded: high-hash" in r.getMessage() for r in caplog.records)
    assert store.read()[0].verdicts == {"embedded": "high-hash"}
    assert sink.stats.rejected == 1


async def test_transport_errors_are_retried_on_every_node(tmp_path):
    fake = await FakeBitcoind().start()
    await fake.down()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=1)
    chain = _chain()
    group = NodeGroup([client, chain])
    assert submit_targets(group) == [client, chain]
    sink = BlockSubmitter(JsonlFoundBlockStore(tmp_path / "b.jsonl"), submit_targets(group),
                          retry_s=0.05, retry_max_s=0.1, retry_window_s=10)  # fmt: skip
    cand = _candidate(chain)
    await sink.block_found(cand)
    await wait_until(lambda: sink.stats.submit_errors >= 2)  # retried while the node is down
    await fake.up()
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.ACCEPTED
    assert outcome.verdicts == {client.name: None, "embedded": None}
    assert fake.submitted == [outcome.block.block_hex]
    await client.close()
    await fake.stop()


async def test_unsettled_block_is_replayed_at_startup(tmp_path):
    fake = await FakeBitcoind().start()
    await fake.down()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=1)
    path = tmp_path / "b.jsonl"
    chain = _chain()
    sink = BlockSubmitter(JsonlFoundBlockStore(path), [client], retry_s=0.01, retry_window_s=0.05)
    await sink.block_found(_candidate(chain))
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.PENDING and sink.stats.unsettled == 1
    # next start: the node is back
    await fake.up()
    store = JsonlFoundBlockStore(path)
    assert len(await store.pending()) == 1
    restarted = BlockSubmitter(store, [client])
    assert await restarted.replay_pending() == 1
    (replayed,) = await restarted.drain()
    assert replayed.status is BlockStatus.ACCEPTED
    assert await store.pending() == []
    await client.close()
    await fake.stop()


def test_store_skips_torn_last_line(tmp_path, caplog):
    path = tmp_path / "b.jsonl"
    path.write_text('{"type":"found","block_hash":"ab"')  # crash mid-write
    assert JsonlFoundBlockStore(path).read() == []
    assert "torn last write" in caplog.text


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from poolserver.bitcoin.blocks import BlockSubmitter, JsonlFoundBlockStore
    from tests.test_blocks import _candidate, _chain

    class Hang:
        name = "hanging-node"
        async def call(self, method, *params, timeout=None):
            print("SUBMITTING", flush=True)
            await asyncio.sleep(3600)

    async def main():
        chain = _chain()
        sink = BlockSubmitter(JsonlFoundBlockStore({path!r}), [Hang()])
        await sink.block_found(_candidate(chain))
        print("PERSISTED", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_block_survives_kill_9_between_persist_and_submit(tmp_path):
    path = tmp_path / "found-blocks.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]  # type: ignore[union-attr]
        assert "PERSISTED" in lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    chain = _chain()  # same deterministic chain: the block is still valid for it
    store = JsonlFoundBlockStore(path)
    sink = BlockSubmitter(store, [chain])
    assert await sink.replay_pending() == 1
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.ACCEPTED and chain.height == 1
    records = [json.loads(x)["type"] for x in path.read_text().splitlines()]
    assert records == ["found", "verdict", "settled"]


async def test_inconclusive_is_not_rejected(tmp_path):
    chain = _chain()
    cand = _candidate(chain)
    chain.generatetoaddress(1, "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua")  # lost the race
    sink = BlockSubmitter(JsonlFoundBlockStore(tmp_path / "b.jsonl"), [chain])
    await sink.block_found(cand)
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.INCONCLUSIVE
    assert outcome.verdicts == {"embedded": "inconclusive"}


class VerdictsLost(JsonlFoundBlockStore):
    """A store that keeps the block but cannot write what happened next (disk full)."""

    async def record_verdict(self, block_hash: str, node: str, verdict: str | None) -> None:
        raise OSError(28, "No space left on device")


async def test_store_failure_after_persist_leaves_the_block_pending(tmp_path, caplog):
    # drain() runs in PoolApp.stop() before the journal and the database are closed: it must
    # not raise, and the block (already durable) must stay pending for the next start.
    caplog.set_level(logging.ERROR, logger="poolserver.bitcoin.blocks")
    chain = _chain()
    store = VerdictsLost(tmp_path / "b.jsonl")
    sink = BlockSubmitter(store, [chain])
    await sink.block_found(_candidate(chain))
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.PENDING
    assert [b.block_hash for b in await store.pending()] == [outcome.block.block_hash]
    assert sink.stats.unsettled == 1
    assert any("No space left" in r.getMessage() for r in caplog.records)


class HeldStore(JsonlFoundBlockStore):
    """A local record whose writes wait until ``release`` is set (a stalled disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self.writes = 0

    async def _append(self, record: dict[str, Any]) -> None:
        self.writes += 1
        await self.release.wait()
        await super()._append(record)


async def test_submitted_before_the_record_is_written(tmp_path):
    """Submission is the fast path: submitblock reaches a real node over HTTP while the
    record's write is still stalled; block_found returns only once the record is durable, and
    the verdict is written after the block. (Before the fix: nothing was sent until the
    write finished.)"""
    fake = await FakeBitcoind().start()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=5)
    store = HeldStore(tmp_path / "b.jsonl")
    sink = BlockSubmitter(store, [client])
    found = asyncio.create_task(sink.block_found(_candidate(_chain())))
    await wait_until(lambda: len(fake.submitted) == 1)
    assert not found.done() and store.writes == 1 and not store.path.exists()
    store.release.set()
    await found
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.ACCEPTED
    records = [json.loads(x)["type"] for x in store.path.read_text().splitlines()]
    assert records == ["found", "verdict", "settled"]
    await client.close()
    await fake.stop()


class DiskFull(JsonlFoundBlockStore):
    def _append_sync(self, record: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")


async def test_record_failure_never_stops_the_submission(tmp_path, caplog):
    """Disk full: the block still reaches every node; block_found raises (the Stratum server
    then answers the share "not recorded") and the failure is counted for an alert. (Before
    the fix: the OSError came back and nothing was ever sent.)"""
    caplog.set_level(logging.ERROR, logger="poolserver.bitcoin.blocks")
    fake = await FakeBitcoind().start()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=5)
    chain = _chain()
    sink = BlockSubmitter(DiskFull(tmp_path / "b.jsonl"), [client, chain])
    cand = _candidate(chain)
    try:
        await sink.block_found(cand)
    except BlockNotRecorded:
        pass
    else:
        raise AssertionError("block_found must raise when the block could not be recorded")
    (outcome,) = await sink.drain()
    assert outcome.status is BlockStatus.ACCEPTED
    assert fake.submitted == [outcome.block.block_hex] and chain.tip.hash == cand.block_hash
    assert sink.stats.record_errors == 1
    assert any("local record FAILED" in r.getMessage() and "No space left" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)
    await client.close()
    await fake.stop()


async def test_cancelled_block_found_does_not_hang_the_submission(tmp_path):
    """The Stratum server's task is cancelled (shutdown) while the record is being written:
    the submission still settles and drain() returns."""
    chain = _chain()
    sink = BlockSubmitter(HeldStore(tmp_path / "b.jsonl"), [chain])
    found = asyncio.create_task(sink.block_found(_candidate(chain)))
    await wait_until(lambda: chain.height == 1)
    found.cancel()
    (outcome,) = await asyncio.wait_for(sink.drain(), 10)
    assert outcome.status is BlockStatus.ACCEPTED
