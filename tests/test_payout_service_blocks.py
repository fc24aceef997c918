"""Found blocks in the database (SqlFoundBlockStore / DurableFoundBlockStore) on real SQLite and
PostgreSQL: submitted before the database is written (a stalled or broken database never holds
a submission back), verdicts and status recorded, pending blocks replayed, and a block the
database could not take kept in the fsync'd JSONL record and written to the database once it is
back (by the submitter's background retry, or by ``import_fallback``)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from poolserver.bitcoin.blocks import BlockStatus, BlockSubmitter, JsonlFoundBlockStore
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.found_blocks import DurableFoundBlockStore, SqlFoundBlockStore, header_bits
from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from stratum.hashcore import sha256d
from stratum.interfaces import BlockCandidate
from tests.conftest import wait_until
from tests.fake_bitcoind import FakeBitcoind
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


async def test_stored_after_submit_with_verdict(engine, tmp_path):
    # (before issue 10 part 3 this asserted the row existed at submitblock: the order changed,
    # submission comes first and the database follows the local record)
    chain = EmbeddedChain("regtest")
    store = SqlFoundBlockStore(engine)
    rpc = CheckingRpc(chain, store)
    submitter = BlockSubmitter(JsonlFoundBlockStore(tmp_path / "found-blocks.jsonl"), [rpc],
                               database=store)  # fmt: skip
    candidate = _candidate(chain)
    await submitter.block_found(candidate)
    (outcome,) = await submitter.drain()
    assert outcome.status is BlockStatus.ACCEPTED
    assert rpc.stored_at_submit == [False]  # the database is written after the submission
    assert submitter.stats.db_behind == 0 and submitter.stats.db_errors == 0
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
        # each payout tick imports: a file unchanged since a read that left nothing to import
        # is not read again (it holds every found block's hex and only grows)
        reads = 0
        read = fallback.read

        def counting_read() -> list:
            nonlocal reads
            reads += 1
            return read()

        fallback.read = counting_read  # type: ignore[method-assign]
        assert await store.import_fallback() == 0
        assert reads == 0
        await submitter.block_found(_candidate(chain))  # on the new tip
        (second,) = await submitter.drain()
        await store.import_fallback()
        assert reads == 1  # appended: read again
        assert (await store.sql.repo.get(second.block.block_hash)).status == "accepted"
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


async def _stall_found_blocks(engine: Any) -> Any:
    """Hold a write lock that blocks every write to found_blocks (SQLite: the database's write
    lock; PostgreSQL: the table's); returns the connection to roll back to release it."""
    conn = await engine.connect()
    if engine.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.begin()
        await conn.execute(text("LOCK TABLE found_blocks IN ACCESS EXCLUSIVE MODE"))
    return conn


async def test_stalled_database_does_not_hold_the_submission(engine, tmp_path):
    """The database is locked by another writer: the block still reaches a real node over HTTP
    and block_found returns once the local record is durable; the database gets the block and
    its verdict when the lock goes. (Before the fix: submitblock waited for the INSERT.)"""
    fake = await FakeBitcoind().start()
    from poolserver.bitcoin.node import NodeClient

    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=5)
    chain = EmbeddedChain("regtest")
    fallback = JsonlFoundBlockStore(tmp_path / "found-blocks.jsonl")
    store = DurableFoundBlockStore(SqlFoundBlockStore(engine), fallback)
    lock = await _stall_found_blocks(engine)
    try:
        found = asyncio.create_task(BlockSubmitter(store, [client]).block_found(
            _candidate(chain)))  # fmt: skip
        await wait_until(lambda: len(fake.submitted) == 1)
        await wait_until(lambda: len(fallback.read()) == 1)  # the file is not held up either
        assert [o.block.block_hex for o in fallback.read()] == fake.submitted
        assert not found.done()  # the old API's store still writes the database in line
    finally:
        await lock.rollback()
        await lock.close()
    await found
    chain.generatetoaddress(1, "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua")  # a new block
    # the app's wiring: record + database retried in the background; block_found does not wait
    lock = await _stall_found_blocks(engine)
    submitter = BlockSubmitter(fallback, [client], database=store.sql, db_retry_s=0.05)
    try:
        await asyncio.wait_for(submitter.block_found(_candidate(chain)), 5)
        await wait_until(lambda: len(fake.submitted) == 2)
        assert submitter.stats.db_behind == 1
    finally:
        await lock.rollback()
        await lock.close()
    await wait_until(lambda: submitter.stats.db_behind == 0, timeout=60)
    await submitter.drain()
    block_hash = sha256d(bytes.fromhex(fake.submitted[1][:160]))[::-1].hex()
    row = await store.sql.repo.get(block_hash)
    assert row is not None and row.status == "accepted"
    assert row.data["verdicts"] == {client.name: None}
    await client.close()
    await fake.stop()


async def test_broken_database_is_retried_in_the_background(empty_db_url, tmp_path, caplog):
    """No schema yet (every write fails): block_found returns (the local record has it), the
    failures are logged at ERROR and counted, and the block with its verdict lands in the
    database by the background retry once the schema is there, without any import call."""
    engine = create_engine(empty_db_url)
    try:
        chain = EmbeddedChain("regtest")
        record = JsonlFoundBlockStore(tmp_path / "found-blocks.jsonl")
        sql = SqlFoundBlockStore(engine)
        submitter = BlockSubmitter(record, [chain], database=sql, db_retry_s=0.02,
                                   db_retry_max_s=0.05)  # fmt: skip
        await submitter.block_found(_candidate(chain))
        assert chain.height == 1  # submitted and accepted
        await wait_until(lambda: submitter.stats.db_errors >= 2)
        assert submitter.stats.db_behind == 1
        assert "database write failed" in caplog.text
        await schema.upgrade(engine)
        await wait_until(lambda: submitter.stats.db_behind == 0, timeout=30)
        await submitter.drain()
        row = await sql.repo.get(chain.tip.hash[::-1].hex())
        assert row.status == "accepted" and row.data["verdicts"] == {"embedded": None}
    finally:
        await engine.dispose()
