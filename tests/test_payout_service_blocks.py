"""Found blocks in the database (SqlFoundBlockStore / DurableFoundBlockStore) on real SQLite and
PostgreSQL: durable before submitblock, verdicts and status recorded, pending blocks replayed,
and a block found while the database cannot take it kept in the fsync'd JSONL file and imported
once the database is back."""

from __future__ import annotations

from typing import Any

from poolserver.bitcoin.blocks import BlockStatus, BlockSubmitter, JsonlFoundBlockStore
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.found_blocks import DurableFoundBlockStore, SqlFoundBlockStore, header_bits
from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from stratum.hashcore import sha256d
from stratum.interfaces import BlockCandidate
from tests.test_embedded_chain import EN1, EN2, _grind, _job


def _candidate(chain: EmbeddedChain, *, want_block: bool = True) -> BlockCandidate:
    job = _job(chain)
    header = _grind(job, want_block=want_block)
    return BlockCandidate(job=job, extranonce1=EN1, extranonce2=EN2, header=header,
                          block_hash=sha256d(header), account="alice", worker="rig1")


class CheckingRpc:
    """Forwards to the chain; at submitblock, records whether the block is already stored."""

    name = "checking"

    def __init__(self, chain: EmbeddedChain, store: SqlFoundBlockStore) -> None:
        self.chain = chain
        self.store = store
        self.stored_at_submit: list[bool] = []

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        if method == "submitblock":
            block_hash = sha256d(bytes.fromhex(params[0][:160]))[::-1].hex()
            self.stored_at_submit.append(await self.store.repo.get(block_hash) is not None)
        return await self.chain.call(method, *params)


async def test_stored_before_submit_with_verdict(engine):
    chain = EmbeddedChain("regtest")
    store = SqlFoundBlockStore(engine)
    rpc = CheckingRpc(chain, store)
    submitter = BlockSubmitter(store, [rpc])
    candidate = _candidate(chain)
    await submitter.block_found(candidate)
    (outcome,) = await submitter.drain()
    assert outcome.status is BlockStatus.ACCEPTED
    assert rpc.stored_at_submit == [True]
    row = await store.repo.get(outcome.block.block_hash)
    assert row.status == "accepted" and row.verdict == "checking: null"
    assert row.data == {"verdicts": {"checking": None}, "submit": "accepted"}
    assert row.bits == 0x207FFFFF == header_bits(row.block_hex)
    assert row.coinbase_value == candidate.job.template.coinbase_value
    assert row.found_at.tzinfo is not None
    assert await store.pending() == []


async def test_rejected_and_inconclusive_recorded(engine):
    chain = EmbeddedChain("regtest")
    store = SqlFoundBlockStore(engine)
    submitter = BlockSubmitter(store, [chain])
    await submitter.block_found(_candidate(chain, want_block=False))
    (bad,) = await submitter.drain()
    row = await store.repo.get(bad.block.block_hash)
    assert (row.status, row.verdict) == ("rejected", "embedded: high-hash")
    # a valid block on a stale tip: inconclusive (undecided, not orphaned), submit=inconclusive
    stale = _candidate(chain)
    chain.generatetoaddress(1, "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua")
    await submitter.block_found(stale)
    (late,) = await submitter.drain()
    assert late.status is BlockStatus.INCONCLUSIVE
    row = await store.repo.get(late.block.block_hash)
    assert (row.status, row.data["submit"]) == ("inconclusive", "inconclusive")


async def test_pending_block_is_replayed(engine):
    chain = EmbeddedChain("regtest")
    store = SqlFoundBlockStore(engine)
    candidate = _candidate(chain)

    class Down:
        name = "down"

        async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
            from poolserver.bitcoin.node import NodeUnavailable

            raise NodeUnavailable("down", "connection refused")

    first = BlockSubmitter(store, [Down()], retry_s=0.01, retry_window_s=0.02)
    await first.block_found(candidate)
    (outcome,) = await first.drain()
    assert outcome.status is BlockStatus.PENDING
    (pending,) = await store.pending()
    assert pending == outcome.block
    # next start: replayed to a node that is up
    second = BlockSubmitter(store, [chain])
    assert await second.replay_pending() == 1
    (replayed,) = await second.drain()
    assert replayed.status is BlockStatus.ACCEPTED
    assert (await store.repo.get(pending.block_hash)).status == "accepted"
    assert await store.pending() == []


async def test_database_unusable_falls_back_to_jsonl_then_imports(empty_db_url, tmp_path):
    """The database has no schema yet (any write fails): the block goes to the JSONL file,
    is submitted all the same, and is imported with its verdict once the schema is there."""
    engine = create_engine(empty_db_url)
    try:
        chain = EmbeddedChain("regtest")
        fallback = JsonlFoundBlockStore(tmp_path / "found-blocks.jsonl")
        store = DurableFoundBlockStore(SqlFoundBlockStore(engine), fallback)
        submitter = BlockSubmitter(store, [chain])
        await submitter.block_found(_candidate(chain))
        (outcome,) = await submitter.drain()
        assert outcome.status is BlockStatus.ACCEPTED
        (kept,) = fallback.read()
        assert kept.block == outcome.block and kept.status is BlockStatus.ACCEPTED
        assert kept.verdicts == {"embedded": None}
        assert await store.import_fallback() == 0  # still no table: deferred, nothing lost

        await schema.upgrade(engine)
        assert await store.import_fallback() == 1
        row = await store.sql.repo.get(outcome.block.block_hash)
        assert row.status == "accepted" and row.data["verdicts"] == {"embedded": None}
        assert row.block_hex == outcome.block.block_hex
        assert await store.import_fallback() == 0  # idempotent
        # a status the database moved on from is never overwritten by a re-import
        await store.sql.repo.set_status(outcome.block.block_hash, "orphaned", "reorg")
        assert await store.import_fallback() == 0
        assert (await store.sql.repo.get(outcome.block.block_hash)).status == "orphaned"
    finally:
        await engine.dispose()


async def test_pending_in_fallback_is_replayed(empty_db_url, tmp_path):
    engine = create_engine(empty_db_url)
    try:
        chain = EmbeddedChain("regtest")
        fallback = JsonlFoundBlockStore(tmp_path / "found-blocks.jsonl")
        store = DurableFoundBlockStore(SqlFoundBlockStore(engine), fallback)
        block = None
        candidate = _candidate(chain)
        from poolserver.bitcoin.node import NodeUnavailable

        class Down:
            name = "down"

            async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
                raise NodeUnavailable("down", "connection refused")

        first = BlockSubmitter(store, [Down()], retry_s=0.01, retry_window_s=0.02)
        await first.block_found(candidate)
        (outcome,) = await first.drain()
        block = outcome.block
        # restart with the database still unusable: the block comes back from the file
        store2 = DurableFoundBlockStore(SqlFoundBlockStore(engine), fallback)
        assert await store2.pending() == [block]
        second = BlockSubmitter(store2, [chain])
        assert await second.replay_pending() == 1
        (done,) = await second.drain()
        assert done.status is BlockStatus.ACCEPTED
        assert [o.status for o in fallback.read()] == [BlockStatus.ACCEPTED]
    finally:
        await engine.dispose()
