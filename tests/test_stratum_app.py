"""End to end: the composed pool (PoolApp) with the real share journal (SQLite), the metrics
endpoint and bitcoind replayed by tests/fake_bitcoind.py; a test miner gets work, submits
ground shares and finds a (regtest) block that is submitted to the node."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import sys
import urllib.request

from poolserver.app import PoolApp
from poolserver.config import config_from_dict
from tests.fake_bitcoind import FakeBitcoind
from tests.stratum_client import StratumClient


def _config(tmp_path, fake: FakeBitcoind, stratum_port: int = 0, metrics_port: int = 0) -> dict:
    return {
        "pool": {"data_dir": str(tmp_path / "data")},
        "node": {"nodes": [{"url": fake.url, "user": fake.user, "password": fake.password}]},
        "stratum": {
            "listeners": [
                {
                    "host": "127.0.0.1",
                    "port": stratum_port,
                    "start_difficulty": 1e-6,
                    "min_difficulty": 1e-8,
                }
            ]
        },
        "metrics": {"host": "127.0.0.1", "port": metrics_port},
        "web": {"port": 0},
        # A real node turns license enforcement on by default; these tests are not about it.
        "register": {"enforce": "off"},
    }


async def test_pool_end_to_end_share_and_block(tmp_path):
    fake = await FakeBitcoind().start()
    app = PoolApp(config_from_dict(_config(tmp_path, fake)))
    await app.start()
    try:
        host, port = app.stratum_addresses[0]
        c = await StratumClient.connect(host, port)
        await c.cgminer("aigerim.s19")
        job = await c.wait_job()
        found = c.grind(job, version_bits=0x00002000)
        reply = await c.submit(job, found)
        assert reply["result"] is True and reply["error"] is None
        # regtest: the share meets the network target, so it went to the node as a block
        assert found.meets_network
        async with asyncio.timeout(5):
            while not fake.submitted:
                await asyncio.sleep(0.01)
        block = bytes.fromhex(fake.submitted[0])
        header_hash = hashlib.sha256(hashlib.sha256(block[:80]).digest()).digest()
        assert header_hash == found.hash
        from poolserver.storage.repository import FoundBlocks

        # recorded: submitblock goes out first, the fsync'd local record before the ack, the
        # database write after it (issue 10 part 3), so wait for the database row
        blocks = FoundBlocks(app.storage.engine)
        async with asyncio.timeout(10):
            while await blocks.get(found.hash[::-1].hex()) is None:
                await asyncio.sleep(0.01)
        # the share is durable in the journal (acked after commit)
        assert app.storage.journal.stats.committed + app.storage.journal.stats.spooled >= 1
        async with asyncio.timeout(5):  # the node's verdict is recorded in the background
            while app.block_sink.stats.accepted < 1:
                await asyncio.sleep(0.01)
        # metrics endpoint shows it
        mhost, mport = app.metrics_address
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://{mhost}:{mport}/metrics", timeout=5).read()
        )
        text = body.decode()
        assert 'qazpool_stratum_shares_total{result="accepted"} 1.0' in text
        assert "qazpool_stratum_blocks_found_total 1.0" in text
        assert "qazpool_node_up 1.0" in text
        assert 'qazpool_block_submissions_total{outcome="accepted"} 1.0' in text
        # a new block on the node reaches the miner as a clean job
        fake.new_block()
        job2 = job
        async with asyncio.timeout(10):
            while job2.prevhash == job.prevhash:  # refreshes on the old tip may come first
                job2 = await c.wait_job(newer_than=job2.job_id)
        assert job2.clean
        stale = await c.submit(job, c.grind(job))
        assert stale["error"][0] == 21
        await c.close()
    finally:
        await app.stop()
        await fake.stop()


async def test_poolserver_run_subprocess_serves_and_stops_on_sigterm(tmp_path):
    fake = await FakeBitcoind().start()
    # port 0: the kernel picks free ports, read back from the startup log (a port probed free
    # and then handed to the child can be taken meanwhile by a parallel test run)
    cfg = _config(tmp_path, fake)
    lst = cfg["stratum"]["listeners"][0]
    toml = (
        f'[pool]\ndata_dir = "{cfg["pool"]["data_dir"]}"\n'
        f'[[node.nodes]]\nurl = "{fake.url}"\nuser = "{fake.user}"\npassword = "{fake.password}"\n'
        '[[stratum.listeners]]\nhost = "127.0.0.1"\nport = 0\n'
        f"start_difficulty = {lst['start_difficulty']}\nmin_difficulty = {lst['min_difficulty']}\n"
        '[metrics]\nhost = "127.0.0.1"\nport = 0\n[web]\nport = 0\n'
        '[register]\nenforce = "off"\n'
    )
    path = tmp_path / "pool.toml"
    path.write_text(toml)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poolserver",
        "--config",
        str(path),
        "run",
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = b""
    try:
        async with asyncio.timeout(20):
            while b"qazpool started" not in log:
                line = await proc.stderr.readline()
                assert line, log.decode()
                log += line
        started = log.decode()
        ms = re.search(r"stratum\+tcp://127\.0\.0\.1:(\d+)", started)
        mm = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", started)
        assert ms and mm, started
        sport, mport = int(ms[1]), int(mm[1])
        assert sport and mport and sport != mport
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read()
        )
        assert b"qazpool_" in metrics  # the logged metrics address is the one serving
        c = await StratumClient.connect("127.0.0.1", sport)
        await c.cpuminer("nurlan.rig")
        job = await c.wait_job()
        assert (await c.submit(job, c.grind(job)))["result"] is True
        proc.send_signal(signal.SIGTERM)
        await c.wait_notification("client.reconnect")
        rest = await asyncio.wait_for(proc.stderr.read(), 20)
        assert await proc.wait() == 0, (log + rest).decode()
        await c.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.stop()
