"""A found block that reached the chain is never lost, even when the pool dies between
``submitblock`` and the block's record: the chain scan (``poolserver.bitcoin.block_recovery``)
finds coinbases paying the pool and imports the blocks the database lacks, and the payout
service allocates them. Real parts: the recorded bitcoind ``getblock`` shape, the fake node over
HTTP, real SQLite and PostgreSQL, and a real pool process SIGKILLed between send and record."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest

from poolserver.bitcoin.block_recovery import (
    RECOVERED,
    BlockRecovery,
    pool_reward,
    sats_from_btc,
)
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.found_blocks import SqlFoundBlockStore
from poolserver.bitcoin.node import NodeClient
from poolserver.storage.engine import create_engine
from poolserver.storage.repository import Allocations, FoundBlocks
from stratum.difficulty import DIFF1, target_from_nbits
from tests.conftest import load_fixture, wait_until
from tests.fake_bitcoind import FakeBitcoind
from tests.pool_process import PoolProcess, free_port, write_config
from tests.stratum_client import StratumClient

CASE = load_fixture("solved_block_case.json")
POOL_SCRIPT = bytes.fromhex(CASE["payout_scriptPubKey"])
REWARD = 5_000_007_370  # 50.0000737 BTC: the recorded coinbase output to the pool


def test_pool_reward_from_the_recorded_getblock():
    block = CASE["getblock_verbose"]
    assert pool_reward(block, POOL_SCRIPT) == REWARD
    assert pool_reward(block, bytes.fromhex("0014" + "00" * 20)) == 0
    # without the raw coinbase: from vout, BTC numbers converted exactly (never via float math)
    no_hex = copy.deepcopy(block)
    del no_hex["tx"][0]["hex"]
    assert pool_reward(no_hex, POOL_SCRIPT) == REWARD
    assert sats_from_btc(0.1) == 10_000_000 and sats_from_btc(50.0000737) == REWARD
    with pytest.raises(ValueError, match="amount"):
        sats_from_btc(0.000000001)
    verbose1 = dict(block, tx=[t["txid"] for t in block["tx"]])
    with pytest.raises(ValueError, match="verbosity 2"):
        pool_reward(verbose1, POOL_SCRIPT)


async def test_fake_node_and_embedded_chain_serve_the_recorded_getblock_shape():
    fake = await FakeBitcoind().start()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=5)
    try:
        assert await client.call("submitblock", CASE["block"]) is None
        assert await client.call("getblockcount") == CASE["height"]
        block_hash = await client.call("getblockhash", CASE["height"])
        assert block_hash == CASE["block_hash"]
        got = await client.call("getblock", block_hash, 2)
        want = CASE["getblock_verbose"]
        for key in ("hash", "height", "previousblockhash", "merkleroot", "nTx", "bits",
                    "target", "time", "nonce", "size", "version"):  # fmt: skip
            assert got[key] == want[key], key
        for got_tx, want_tx in zip(got["tx"], want["tx"], strict=True):
            for key in ("txid", "hash", "hex", "size", "vsize", "weight", "locktime", "version"):
                assert got_tx[key] == want_tx[key], key
            assert [(o["value"], o["scriptPubKey"]["hex"], o["scriptPubKey"]["type"])
                    for o in got_tx["vout"]] == [
                (o["value"], o["scriptPubKey"]["hex"], o["scriptPubKey"]["type"])
                for o in want_tx["vout"]]  # fmt: skip
        assert await client.call("getblock", block_hash, 0) == CASE["block"]
    finally:
        await client.close()
        await fake.stop()
    chain = EmbeddedChain("regtest")
    (mined,) = chain.generatetoaddress(1, CASE["payout_address"])
    view = await chain.call("getblock", mined, 2)
    assert set(want) - set(view) <= {"chainwork", "mediantime", "strippedsize", "weight"}
    assert set(want["tx"][0]) - set(view["tx"][0]) == set()
    assert pool_reward(view, POOL_SCRIPT) == chain.tip.coinbase_value


async def test_scan_imports_a_pool_block_the_database_lacks(engine):
    fake = await FakeBitcoind().start()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=5)
    store = SqlFoundBlockStore(engine)
    try:
        assert await client.call("submitblock", CASE["block"]) is None
        other = BlockRecovery(client, store, bytes.fromhex("0014" + "11" * 20), depth=10)
        assert await other.scan() == []  # pays someone else
        scanner = BlockRecovery(client, store, POOL_SCRIPT, depth=10)
        assert await scanner.scan() == [CASE["block_hash"]]
        assert scanner.stats.recovered_from_chain == 1
        row = await store.repo.get(CASE["block_hash"])
        assert (row.status, row.account, row.worker, row.job_id) == ("accepted", "", "", "")
        assert row.coinbase_value == REWARD and row.height == CASE["height"]
        assert row.bits == 0x207FFFFF and row.block_hex == CASE["block"]
        assert row.prevhash == CASE["getblock_verbose"]["previousblockhash"]
        assert row.data["recovered"] == RECOVERED
        assert int(row.found_at.timestamp()) == CASE["getblock_verbose"]["time"]
        assert await scanner.scan() == []  # seen
        assert await BlockRecovery(client, store, POOL_SCRIPT).scan() == []  # in the database
    finally:
        await client.close()
        await fake.stop()


def _network_difficulty(nbits: int) -> float:
    return DIFF1 / target_from_nbits(nbits)


async def _kill_between_send_and_record(tmp_path: Path, url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    data = tmp_path / "data"
    port = free_port()
    cfg = write_config(
        tmp_path / "pool.toml", data_dir=data, port=port, url=url,
        extra="[payouts]\ntick_interval_s = 0.3\nallocation_delay_s = 0.0\n",
    )  # fmt: skip
    pool = PoolProcess(cfg, tmp_path / "pool.log")
    monkeypatch.setenv("QAZPOOL_TEST_HOLD_FOUND_BLOCK_RECORD", "1")
    pool.start()
    try:
        await pool.wait_ready()
        c = await StratumClient.connect("127.0.0.1", port)
        await c.cgminer("alice.rig1")
        job = await c.wait_job()
        for _ in range(3):  # some of alice's work in the PPLNS window
            found = c.grind(job)
            if not found.meets_network:
                assert (await c.submit(job, found))["result"] is True
        while True:
            # ~1.3 M hashes expected at the embedded chain's bits: 2 M tries (the default)
            # missed one time in five
            block = c.grind(job, difficulty=_network_difficulty(job.nbits),
                            max_tries=50_000_000)  # fmt: skip
            if block.meets_network:
                break
        block_hash = block.hash[::-1].hex()
        reply = asyncio.create_task(c.submit(job, block))  # never answered: the record hangs
        chain_file = data / "embedded-chain.jsonl"
        await wait_until(lambda: chain_file.exists() and block_hash in _block_hashes(chain_file),
                         timeout=30)  # fmt: skip
        assert "holding the record of found block " + block_hash in pool.log_tail(100_000)
        pool.kill()  # SIGKILL between the send and the record
        reply.cancel()
        await c.close()
        record = data / "found-blocks.jsonl"
        assert not record.exists() or block_hash not in record.read_text()
        engine = create_engine(url or f"sqlite+aiosqlite:///{(data / 'qazpool.sqlite3').resolve()}")
        try:
            assert await FoundBlocks(engine).get(block_hash) is None  # lost by the crash...
            monkeypatch.delenv("QAZPOOL_TEST_HOLD_FOUND_BLOCK_RECORD")
            pool.start()
            await pool.wait_ready()

            async def allocated() -> bool:
                return await Allocations(engine).get(block_hash) is not None

            for _ in range(600):  # ...found on the chain at restart and allocated
                if await allocated():
                    break
                await asyncio.sleep(0.05)
            row = await FoundBlocks(engine).get(block_hash)
            assert row is not None, pool.log_tail()
            assert row.data["recovered"] == RECOVERED and row.account == ""
            allocation = await Allocations(engine).get(block_hash)
            assert allocation is not None, pool.log_tail()
            assert "alice" in {line.miner_id for line in allocation.lines}
            assert await pool.terminate() == 0, pool.log_tail()
        finally:
            await engine.dispose()
    finally:
        pool.ensure_stopped()


def _block_hashes(chain_file: Path) -> str:
    import json

    from stratum.hashcore import sha256d

    out = []
    for line in chain_file.read_text().splitlines():
        try:
            raw = bytes.fromhex(json.loads(line)["block"])
        except (ValueError, KeyError):
            continue
        out.append(sha256d(raw[:80])[::-1].hex())
    return " ".join(out)


async def test_block_lost_by_a_kill_between_send_and_record_is_recovered(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _kill_between_send_and_record(tmp_path, db_url, monkeypatch)


async def test_scan_and_submitter_racing_on_one_block_keep_one_row_with_its_finder(engine):
    """The chain scan can see a block between ``submitblock`` and the submitter's record. Either
    order leaves one row, no error, and the finder the submitter knows (while the block is not
    yet allocated): the scan's insert loses on the unique hash (False, not an IntegrityError
    that aborted the rest of its pass), and the submitter's record adopts the scan's row."""
    import dataclasses
    from datetime import UTC, datetime

    from poolserver.bitcoin.block_recovery import recovered_block
    from poolserver.bitcoin.blocks import BlockOutcome, BlockStatus

    store = SqlFoundBlockStore(engine)
    scanned = recovered_block(CASE["getblock_verbose"], REWARD, CASE["block"])
    mined = dataclasses.replace(scanned, account="alice", worker="rig1", job_id="7",
                                found_at=datetime.now(UTC))  # fmt: skip

    # the submitter first, the scan's insert second (its look-up missed the row)
    await store.persist(mined)
    assert await store.import_recovered(scanned, 0x207FFFFF, RECOVERED) is False
    row = await store.repo.get(CASE["block_hash"])
    assert (row.account, row.status) == ("alice", "pending")

    # the scan first: the submitter's record (direct, or from its JSONL file) names the finder
    async with engine.begin() as conn:
        from poolserver.storage.models import FoundBlock as FoundBlockRow

        await conn.execute(FoundBlockRow.__table__.delete())
    assert await store.import_recovered(scanned, 0x207FFFFF, RECOVERED) is True
    assert (await store.repo.get(CASE["block_hash"])).account == ""
    assert await store.import_outcome(BlockOutcome(mined, BlockStatus.PENDING)) is True
    row = await store.repo.get(CASE["block_hash"])
    assert (row.account, row.worker, row.job_id, row.status) == ("alice", "rig1", "7", "accepted")
    assert row.data["recovered"] == RECOVERED  # still says how it got in
    assert await store.import_outcome(BlockOutcome(mined, BlockStatus.ACCEPTED)) is False

    # once allocated (frozen with "finder unknown" among its inputs) the row is never rewritten
    async with engine.begin() as conn:
        from poolserver.storage.models import BlockAllocation

        await conn.execute(FoundBlockRow.__table__.delete())
    assert await store.import_recovered(scanned, 0x207FFFFF, RECOVERED) is True
    row = await store.repo.get(CASE["block_hash"])
    async with engine.begin() as conn:
        await conn.execute(BlockAllocation.__table__.insert().values(
            block_id=row.id, inputs_hash="00" * 32, canonical=b"{}", policy="pplns",
            reward=REWARD, pool_fee=0, created_at=datetime.now(UTC)))  # fmt: skip
    assert await store.import_outcome(BlockOutcome(mined, BlockStatus.PENDING)) is False
    assert (await store.repo.get(CASE["block_hash"])).account == ""
