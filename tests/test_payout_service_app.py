"""The composed pool runs the payout service: a block found over Stratum is stored in the
database (not the JSONL file), allocated, credited at maturity and paid, with no step by hand."""

from __future__ import annotations

import asyncio

from poolserver.app import PoolApp
from poolserver.bitcoin.blocks import BlockStatus, JsonlFoundBlockStore
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.config import config_from_dict
from poolserver.storage.repository import Allocations, FoundBlocks, Ledger
from tests.payout_support import ADDR, OTHER_MINER, seed_register
from tests.stratum_client import StratumClient


async def test_pool_pays_a_block_found_over_stratum(db_url, engine, tmp_path):
    await seed_register(engine)
    cfg = config_from_dict(
        {
            "pool": {"data_dir": str(tmp_path / "data")},
            "storage": {"url": db_url},
            "chain": {"bits": "207fffff", "persist": False},
            "stratum": {"listeners": [{"host": "127.0.0.1", "port": 0,
                                       "start_difficulty": 1e-6, "min_difficulty": 1e-8}]},
            "metrics": {"enabled": False},
            "web": {"port": 0},
            "payouts": {"tick_interval_s": 0.2, "allocation_delay_s": 0.0,
                        "maturity_confirmations": 2, "min_payout_sats": 1000},
        }
    )  # fmt: skip
    app = PoolApp(cfg)
    await app.start()
    try:
        chain = app.rpc
        assert isinstance(chain, EmbeddedChain)
        host, port = app.stratum_addresses[0]
        c = await StratumClient.connect(host, port)
        await c.cgminer("alice.rig1")
        job = await c.wait_job()
        found = c.grind(job, version_bits=0x00002000)
        assert (await c.submit(job, found))["result"] is True
        await c.close()
        block_hash = found.hash[::-1].hex()
        async with asyncio.timeout(15):
            while await Allocations(engine).get(block_hash) is None:
                await asyncio.sleep(0.05)
        row = await FoundBlocks(engine).get(block_hash)
        assert row.account == "alice" and row.data["verdicts"] == {"embedded": None}
        # the local fsync'd record (written with every block since issue 10 part 3; this
        # asserted the file's absence when it was only a fallback)
        (local,) = JsonlFoundBlockStore(tmp_path / "data" / "found-blocks.jsonl").read()
        assert local.block.block_hash == block_hash and local.status is BlockStatus.ACCEPTED
        # 2 confirmations: credited; paid once the coinbase is spendable (depth 101)
        chain.generatetoaddress(100, OTHER_MINER)
        wallet = app.payout_service.transport
        async with asyncio.timeout(15):
            while not wallet.recorded():
                await asyncio.sleep(0.05)
        (sent,) = wallet.recorded()
        allocation = await Allocations(engine).get(block_hash)
        assert allocation is not None
        assert sent.outputs == {ADDR["alice"]: allocation.lines[0].net_sats}
        assert (await Ledger(engine).balances())["alice"] == 0
    finally:
        await app.stop()
    assert app.payout_service._task is None
