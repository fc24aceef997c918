"""The template feed against the loopback fake bitcoind and the embedded chain: long-poll
wake-up, ZMQ hashblock, periodic refresh, node outage (last job kept) and recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import pytest

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.node import NodeClient, NodeStartupError
from poolserver.bitcoin.template_feed import (
    RpcTemplateSource,
    TemplateFeed,
    builder_from_config,
    feed_from_config,
    rpc_from_config,
    startup_check,
)
from poolserver.config import ConfigError, config_from_dict
from stratum.address import address_to_script
from stratum.jobs import JobBuilder, JobStatus, notify_params
from tests.conftest import load_fixture, wait_until
from tests.fake_bitcoind import FakeBitcoind

SCRIPT = address_to_script("bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua", "regtest")


@pytest.fixture
async def node():
    fake = await FakeBitcoind().start()
    yield fake
    await fake.stop()


def _feed(node: FakeBitcoind, **kw) -> tuple[TemplateFeed, NodeClient]:
    client = NodeClient(node.url, user=node.user, password=node.password, timeout=2)
    kw.setdefault("refresh_s", 30.0)
    feed = TemplateFeed(RpcTemplateSource(client, "regtest", longpoll_timeout_s=30),
                        JobBuilder(SCRIPT, tag=b"/qazpool-fixture/"), **kw)  # fmt: skip
    return feed, client


async def test_longpoll_new_block_sends_clean_job_and_stales_old(node):
    feed, client = _feed(node)
    seen = []
    feed.add_listener(seen.append)
    task = asyncio.create_task(feed.run())
    try:
        first = await feed.wait_for_job(5)
        assert first.height == 115 and first.clean_jobs
        assert notify_params(first)[1] == load_fixture("solved_block_case.json")[
            "mining_notify_params"][1]  # fmt: skip
        await wait_until(lambda: node.longpolls_held == 1)  # the long poll is parked on the node
        node.new_block()
        await wait_until(lambda: feed.current_job.height == 116)
        second = feed.current_job
        assert second.clean_jobs
        assert feed.job_book.status(first.job_id) is JobStatus.STALE
        assert feed.job_book.status(second.job_id) is JobStatus.CURRENT
        assert [j.height for j in seen] == [115, 116]
        assert feed.stats.new_blocks == 2 and feed.stats.node_up
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_periodic_refresh_mints_a_job_only_for_new_work(node):
    """Issue 10 part 1: Bitcoin Core answers an unchanged template while its mempool is
    unchanged; such a refresh (or one where only curtime moved: miners roll ntime) keeps the
    current job instead of giving the same work a second job id. A changed coinbase value (new
    fees) is new work: a new job, not clean, the old one still current. Failed before: a new job
    id on every refresh."""
    feed, client = _feed(node, refresh_s=0.02, longpoll=False)
    seen = []
    feed.add_listener(seen.append)
    task = asyncio.create_task(feed.run())
    try:
        first = await feed.wait_for_job(5)
        await wait_until(lambda: feed.stats.templates_fetched >= 3)
        tpl = node.templates[0]
        node.templates[0] = {**tpl, "curtime": tpl["curtime"] + 30, "mintime": tpl["mintime"] + 1}
        fetched = feed.stats.templates_fetched
        await wait_until(lambda: feed.stats.templates_fetched >= fetched + 3)
        assert feed.current_job is first and seen == [first]
        assert feed.stats.jobs_published == 1
        assert feed.stats.templates_unchanged == feed.stats.templates_fetched - 1
        node.templates[0] = {**tpl, "coinbasevalue": tpl["coinbasevalue"] - 1000}
        await wait_until(lambda: feed.current_job is not first)
        later = feed.current_job
        assert not later.clean_jobs and later.prevhash == first.prevhash
        assert later.template.coinbase_value == first.template.coinbase_value - 1000
        assert feed.job_book.status(first.job_id) is JobStatus.CURRENT
        assert seen == [first, later]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_longpoll_follows_the_node_longpollid_when_no_job_is_minted(node):
    """A template with a new longpollid but the same work mints no job; the long poll must
    still be parked with the node's new id (not spin on the old one)."""
    feed, client = _feed(node)
    task = asyncio.create_task(feed.run())
    try:
        first = await feed.wait_for_job(5)
        await wait_until(lambda: node.longpolls_held == 1)
        tpl = node.templates[0]
        node.templates[0] = {**tpl, "longpollid": tpl["longpollid"] + "x"}
        node._changed.set()  # wake the parked poll without a new tip (mempool news)
        node._changed = asyncio.Event()
        # parked again (an old id would be answered at once and never park)
        await wait_until(lambda: node.longpolls_held == 1 and feed.stats.templates_unchanged >= 1)
        method, params = node.calls[-1]
        assert method == "getblocktemplate" and params[0]["longpollid"] == tpl["longpollid"] + "x"
        assert feed.current_job is first
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_node_outage_keeps_last_job_and_recovers(node, caplog):
    caplog.set_level(logging.WARNING, logger="poolserver.bitcoin.template_feed")
    feed, client = _feed(node, refresh_s=0.1, retry_s=0.02, retry_max_s=0.05)
    task = asyncio.create_task(feed.run())
    try:
        job = await feed.wait_for_job(5)
        await node.down()
        await wait_until(lambda: not feed.stats.node_up)
        await wait_until(lambda: feed.stats.fetch_errors >= 4)  # several retries...
        assert feed.current_job is job  # ...while the last job is still served
        assert feed.job_book.status(job.job_id) is JobStatus.CURRENT
        outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(outage) == 1  # logged once, not per retry
        assert f"still serving job {job.job_id} (height 115)" in outage[0].getMessage()
        node.new_block()
        await node.up()
        await wait_until(lambda: feed.current_job.height == 116)
        assert feed.stats.node_up and feed.stats.outage_since is None
        assert any("back after" in r.getMessage() for r in caplog.records)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_zmq_hashblock_triggers_refresh(node):
    import zmq
    import zmq.asyncio

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    ctx = zmq.asyncio.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(endpoint)
    feed, client = _feed(node, refresh_s=60, longpoll=False, zmq_endpoints=[endpoint])
    task = asyncio.create_task(feed.run())
    try:
        await feed.wait_for_job(5)
        node.new_block()
        best = bytes.fromhex(load_fixture("solved_block_case.json")["block_hash"])[::-1]
        for _ in range(200):  # PUB drops messages until the subscriber has connected
            await pub.send_multipart([b"hashblock", best, b"\0\0\0\0"])
            if feed.current_job.height == 116:
                break
            await asyncio.sleep(0.02)
        assert feed.current_job.height == 116 and feed.current_job.clean_jobs
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        pub.close(linger=0)
        ctx.term()


async def test_embedded_chain_end_to_end_through_config(tmp_path):
    cfg = config_from_dict({"pool": {"data_dir": str(tmp_path)}, "chain": {"bits": "207fffff"}})
    rpc = rpc_from_config(cfg)
    assert isinstance(rpc, EmbeddedChain)
    await startup_check(rpc, cfg)
    feed = feed_from_config(cfg, rpc)
    task = asyncio.create_task(feed.run())
    try:
        job = await feed.wait_for_job(5)
        assert job.height == 1
        rpc.generatetoaddress(1, cfg.chain.payout_address)  # the network found a block
        await wait_until(lambda: feed.current_job.height == 2)  # via long poll
        assert feed.job_book.is_stale(job.job_id)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (tmp_path / "embedded-chain.jsonl").exists()


async def test_embedded_chain_refresh_keeps_the_job_while_nothing_changed(tmp_path):
    cfg = config_from_dict(
        {"pool": {"data_dir": str(tmp_path)}, "chain": {"bits": "207fffff"}},
    )
    cfg = dataclasses.replace(cfg, node=dataclasses.replace(cfg.node, template_refresh_s=0.02))
    rpc = rpc_from_config(cfg)
    feed = feed_from_config(cfg, rpc)
    task = asyncio.create_task(feed.run())
    try:
        job = await feed.wait_for_job(5)
        await wait_until(lambda: feed.stats.templates_fetched >= 4)
        assert feed.current_job is job and feed.stats.jobs_published == 1
        rpc.generatetoaddress(1, cfg.chain.payout_address)
        await wait_until(lambda: feed.current_job.height == 2)
        assert feed.stats.jobs_published == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^chain\.payout_address: invalid address 'bc1q.*'"):
        builder_from_config(
            config_from_dict(
                {"chain": {"payout_address": "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"}}
            )
        )
    with pytest.raises(ConfigError, match="refuses network = 'main'"):
        rpc_from_config(config_from_dict({"chain": {"network": "main"}}))
    with pytest.raises(ConfigError, match="at most 100"):
        builder_from_config(config_from_dict({"pool": {"tag": "x" * 90}}))
    with pytest.raises(ConfigError, match=r"chain\.bits"):
        rpc_from_config(config_from_dict({"chain": {"bits": "zz"}}))


async def test_startup_check_unreachable_gives_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config_from_dict({"node": {"nodes": [{"url": f"http://127.0.0.1:{port}/"}],
                                     "retry_max_s": 0.01}})  # fmt: skip
    rpc = rpc_from_config(cfg)
    with pytest.raises(NodeStartupError, match="cannot reach bitcoind"):
        await startup_check(rpc, cfg, attempts=2)
    await rpc.close()  # type: ignore[attr-defined]
