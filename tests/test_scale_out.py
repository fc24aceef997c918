"""Scale-out (issue 12), three instances (slow): three ``poolserver run`` processes, each with
its own ``[pool].node_id``, on one real PostgreSQL over loopback TCP, sharing one node and its
wallet (``tests/shared_node.py``: the embedded chain and wallet behind bitcoind's JSON-RPC).
Miners (``tests.pool_load`` connections, real sha256d shares) are spread over the instances
with a cgminer-style pool list: when theirs goes away they connect to the next one.

1. Payments flow: blocks found, allocated, matured, paid by the payout leader.
2. kill -9 the leader while the node holds its ``sendmany`` *before* executing it (the batch is
   marked sending, nothing sent); then while the node holds the reply *after* sending (the
   wallet paid, the database never learns the txid). Each time another instance leads within
   seconds (a new epoch in ``payout_leader``) and the batch is sent exactly once.
3. kill -9 the instance with the most miners under load: they reconnect to the others and
   keep mining.

Then: every wallet transaction carries a distinct batch comment and matches its batch's txid,
``poolserver payouts reconcile`` finds the books equal to the wallet to the satoshi, every share
a miner saw acknowledged is in the journal exactly once, no share is stored twice, and PPLNS
over the shared table reads each of them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from payouts.ledger import EntryKind, operator_entry
from payouts.payments import PaymentStatus
from poolserver.bitcoin.embedded_chain import bits_for_shares
from poolserver.bitcoin.wallet import EmbeddedWallet, NodeWallet, WalletNodeClient
from poolserver.register.repository import RegisterRepository
from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from poolserver.storage.models import Payment, PayoutLeaderRow, Share
from poolserver.storage.repository import Ledger, ShareHistory, SqlPaymentOutbox
from tests.payout_support import licensed_since
from tests.pool_load import ShareLoad
from tests.pool_process import ROOT, PoolProcess, free_port
from tests.storage_fixtures import PG_USER, PgServer
from tests.stratum_client import StratumClient, StratumClientError
from tests.test_kill_pool import assert_nothing_lost, read_database
from tests.test_register_rules import constructed_numbers

pytestmark = pytest.mark.slow

DIFFICULTY = 1e-6
SHARES_PER_BLOCK = 300
ACCOUNTS = [f"m{i}" for i in range(6)]
ADDRESSES = [
    "bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg",
    "mfoA4eYuzEFAU94bkMKPH6UF3i5qcw7zJ8",
    "bcrt1q9lw93znnd5f4t6h9jy6u3axr5glg8je2gtr3te",
]
LEADER_TTL_S = 5.0
LEADER_RETRY_S = 0.5


class LoopbackPg(PgServer):
    """The fixtures' throwaway cluster, listening on 127.0.0.1 (TCP, as between machines)."""

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                f"-p {self.port} -c max_connections=200 -c shared_buffers=64MB")  # fmt: skip
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                   "-o", opts, "-w", "-t", "60", "start"])  # fmt: skip

    def tcp_url(self, db: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{db}"


_port: contextvars.ContextVar[int] = contextvars.ContextVar("port")


class FailoverLoad(ShareLoad):
    """``ShareLoad`` whose connection ``i`` starts on instance ``i % n`` and, like cgminer with
    a pool list, moves to the next instance when its connection drops or is refused."""

    def __init__(self, ports: list[int], **kw: Any) -> None:
        super().__init__("127.0.0.1", ports[0], **kw)
        self.ports = ports
        self.on_port: dict[int, int] = {}  # connection -> the instance port it mines on now
        self.acks: Counter[tuple[int, int]] = Counter()  # (connection, port) -> acked shares

    async def _connection(self, i: int, stop: asyncio.Event) -> None:
        firmware = ("cgminer", "bitaxe", "cpuminer")[i % 3]
        worker = f"{ACCOUNTS[i % len(ACCOUNTS)]}.rig{i}"
        k = i % len(self.ports)
        while not stop.is_set():
            port = self.ports[k]
            try:
                client = await asyncio.wait_for(StratumClient.connect(self.host, port), 2)
            except (OSError, TimeoutError):
                self.stats.connect_failures += 1
                k = (k + 1) % len(self.ports)  # failover: the next pool in the list
                await asyncio.sleep(0.05)
                continue
            self.stats.connects += 1
            self.on_port[i] = port
            _port.set(port)
            client._en2_counter = self._en2
            try:
                await self._handshake(client, firmware, worker)
                await self._mine(client, worker, stop)
            except (StratumClientError, ConnectionError, OSError, TimeoutError):
                self.stats.disconnects += 1
                k = (k + 1) % len(self.ports)
            finally:
                await client.close()

    def _settle(self, fut: Any, worker: str, job: Any, found: Any) -> None:
        before = len(self.acked)
        super()._settle(fut, worker, job, found)
        if len(self.acked) > before:
            self.acks[(int(worker.rsplit("rig", 1)[1]), _port.get())] += 1


def pool_config(path: Path, *, node_id: int, port: int, data: Path, url: str,
                node_port: int) -> Path:  # fmt: skip
    path.write_text(f"""[pool]
data_dir = "{data}"
log_level = "INFO"
node_id = {node_id}

[[stratum.listeners]]
host = "127.0.0.1"
port = {port}
start_difficulty = {DIFFICULTY!r}
min_difficulty = {DIFFICULTY!r}
max_difficulty = {DIFFICULTY!r}

[node]
recover_depth = 0
retry_s = 0.2
retry_max_s = 1.0

[[node.nodes]]
url = "http://127.0.0.1:{node_port}/"
user = "pool"
password = "secret"

[storage]
url = "{url}"
retry_interval_s = 0.5

[metrics]
enabled = false

[web]
enabled = false

[register]
enforce = "off"

[payouts]
wallet = "node"
tick_interval_s = 1.0
allocation_delay_s = 1.0
maturity_confirmations = 2
max_outputs_per_batch = 2
leader_ttl_s = {LEADER_TTL_S}
leader_retry_s = {LEADER_RETRY_S}
""")
    return path


class Node:
    """``tests.shared_node`` in a child process; its HELD/GONE lines are collected."""

    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.state = state
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.wallet = NodeWallet(WalletNodeClient(f"http://127.0.0.1:{self.port}",
                                                  user="pool", password="secret"))  # fmt: skip

    async def start(self) -> None:
        bits = bits_for_shares(SHARES_PER_BLOCK, DIFFICULTY)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.shared_node", str(self.state), str(self.port),
            f"{bits:08x}", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=(self.state.parent / "node.log").open("wb"))  # fmt: skip
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
        assert line.startswith("READY"), line
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())

    async def wait_line(self, prefix: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            await asyncio.sleep(0.05)
        raise AssertionError(f"node never printed {prefix!r}: {self.lines[-5:]}")

    async def hold(self, mode: str) -> None:
        await self.wallet.rpc.call("test_hold_sendmany", mode)

    async def stop(self) -> None:
        await self.wallet.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def seed(url: str, node: Node) -> int:
    """Schema, the miners (licensed, with payout addresses), and the float: the wallet's coins
    before any block of the pool, booked as the operator's deposit (books = wallet)."""
    engine = create_engine(url)
    try:
        await schema.upgrade(engine)
        repo = RegisterRepository(engine, network="regtest")
        ids = constructed_numbers(len(ACCOUNTS), seed=43)
        for i, m in enumerate(ACCOUNTS):
            await repo.add_miner("op", m, f"Miner {i}", ids[i])
            await repo.set_payout_address("op", m, ADDRESSES[i % len(ADDRESSES)])
            await repo.add_license("op", m, f"KZ-{i}", licensed_since(), "I")
        float_sats = (await node.wallet.balances()).total
        await Ledger(engine).append([operator_entry(EntryKind.DEPOSIT, float_sats, "test float",
                                                    "deposit:float")])  # fmt: skip
        return float_sats
    finally:
        await engine.dispose()


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    async def leader(self) -> tuple[str, int] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(PayoutLeaderRow.holder, PayoutLeaderRow.epoch))
                   ).first()  # fmt: skip
        return None if row is None else (row.holder, row.epoch)

    async def batches(self) -> dict[str, tuple[str, str | None, int | None]]:
        """comment -> (status, txid, sending_epoch)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(Payment.comment, Payment.status, Payment.txid,
                                              Payment.sending_epoch))).all()  # fmt: skip
        return {c: (s, t, e) for c, s, t, e in rows}

    async def until(self, what: str, check: Any, timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


def pid_of(holder: str) -> int:
    return int(holder.split(":")[1])


async def kill_leader_mid_payment(mode: str, node: Node, db: Db, pools: list[PoolProcess]
                                  ) -> tuple[str, int, float]:  # fmt: skip
    """Hold the next sendmany (``before``/``after`` its execution), kill -9 the leader that
    sent it, and return (batch comment, the dead leader's epoch, seconds to the next leader)."""
    held_before = len([x for x in node.lines if x.startswith(f"HELD {mode}")])
    await node.hold(mode)
    deadline = time.monotonic() + 120
    while len([x for x in node.lines if x.startswith(f"HELD {mode}")]) == held_before:
        assert time.monotonic() < deadline, "no payment was sent while the node held sendmany"
        await asyncio.sleep(0.05)
    comment = [x for x in node.lines if x.startswith(f"HELD {mode}")][-1].split(" ", 2)[2]
    holder, epoch = await db.leader()  # type: ignore[misc]
    victim = next(p for p in pools if p.proc is not None and p.proc.pid == pid_of(holder))
    if mode == "before":
        status, _, marked = (await db.batches())[comment]
        assert status == "pending" and marked == epoch  # marked sending by the leader's epoch
    victim.kill()
    killed_at = time.monotonic()

    async def new_leader() -> Any:
        row = await db.leader()
        return row if row is not None and row[1] > epoch else None

    new_holder, _ = await db.until("a new payout leader", new_leader, timeout=60)
    took = time.monotonic() - killed_at
    assert new_holder != holder and any(p.proc is not None and p.proc.pid == pid_of(new_holder)
                                        for p in pools)  # fmt: skip
    if mode == "before":
        await node.wait_line(f"GONE before {comment}")

    async def sent() -> Any:
        status, txid, _ = (await db.batches())[comment]
        return txid if status in ("broadcast", "confirmed") else None

    await db.until(f"batch {comment} sent by the successor", sent)
    victim.start()  # back in the pool (its node_id lease: the dead holder is taken over)
    await victim.wait_ready()
    return comment, epoch, took


async def scenario(tmp: Path, pg: LoopbackPg) -> None:
    url = pg.tcp_url(pg.new_database())
    node = Node(tmp / "node")
    await node.start()
    db = Db(url)
    pools: list[PoolProcess] = []
    stop = asyncio.Event()
    load_task: asyncio.Task[None] | None = None
    try:
        await seed(url, node)
        ports = [free_port() for _ in range(3)]
        for n, port in enumerate(ports, 1):
            cfg = pool_config(tmp / f"pool{n}.toml", node_id=n, port=port,
                              data=tmp / f"data{n}", url=url, node_port=node.port)  # fmt: skip
            pools.append(PoolProcess(cfg, tmp / f"pool{n}.log"))
        for p in pools:
            p.start()
        for p in pools:
            await p.wait_ready()
        load = FailoverLoad(ports, connections=6, in_flight=4)
        load_task = asyncio.create_task(load.run(stop))

        # 1. blocks found, matured, paid by whoever leads
        async def paid() -> Any:
            return any(s == "broadcast" for s, _, _ in (await db.batches()).values())

        await db.until("a first payment", paid, timeout=180)
        assert {load.on_port[i] for i in range(6)} == set(ports)  # miners on every instance

        # 2. the leader killed mid-payment, twice
        before = await kill_leader_mid_payment("before", node, db, pools)
        after = await kill_leader_mid_payment("after", node, db, pools)
        for _, _, took in (before, after):
            assert took < LEADER_TTL_S + LEADER_RETRY_S + 5, f"takeover took {took:.1f}s"
        batches = await db.batches()
        assert batches[before[0]][2] > before[1]  # re-marked and sent by the successor
        assert batches[after[0]][2] == after[1]  # sent by the dead leader, found by comment

        # 3. the instance with the most miners killed under load: they go on mining elsewhere
        dead_port, _ = Counter(load.on_port.values()).most_common(1)[0]
        victim = pools[ports.index(dead_port)]
        moved = [i for i, p in load.on_port.items() if p == dead_port]
        victim.kill()
        acks_before = load.acks.copy()
        await asyncio.sleep(8)
        for i in moved:
            assert load.on_port[i] != dead_port
            elsewhere = sum(n - acks_before[(i, p)] for (c, p), n in load.acks.items()
                            if c == i and p != dead_port)  # fmt: skip
            assert elsewhere > 0, f"miner {i} did not resume on another instance"

        stop.set()
        await load_task
        load_task = None

        quiet_since: list[float] = []

        async def settled() -> Any:
            """No pending batch for 8 s (the last blocks mature and are paid meanwhile)."""
            if any(s == "pending" for s, _, _ in (await db.batches()).values()):
                quiet_since.clear()
                return False
            quiet_since[:] = quiet_since or [time.monotonic()]
            return time.monotonic() - quiet_since[0] > 8

        await db.until("payments to settle", settled)
        for p in pools:
            if p.proc is not None:
                assert await p.terminate() == 0, p.log_tail()

        # nothing double-paid: one wallet transaction per batch comment, matching its txid
        recorded = EmbeddedWallet(None, tmp / "node" / "wallet.jsonl").recorded()
        comments = Counter(r.comment for r in recorded)
        assert comments and all(n == 1 for n in comments.values()), comments
        batches = await db.batches()
        assert {r.comment: r.txid for r in recorded} == {
            c: t for c, (s, t, _) in batches.items() if s in ("broadcast", "confirmed")}
        outbox = await SqlPaymentOutbox(db.engine).all_batches()
        assert all(b.status is not PaymentStatus.PENDING for b in outbox)
        # the books equal the wallet to the satoshi (the operator's command)
        rec = subprocess.run([sys.executable, "-m", "poolserver", "--config",
                              str(pools[0].config), "payouts", "reconcile"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert rec.returncode == 0, rec.stdout + rec.stderr
        # no acked share lost, none stored twice (across three journals, two kill -9s each)
        assert len(load.acked) > 1000
        assert_nothing_lost(load.acked, await read_database(url))
        # PPLNS over the shared table sees every acked share of every instance once
        async with db.engine.connect() as conn:
            ids = dict((await conn.execute(select(Share.share_hash, Share.id))).all())
        window, _ = await ShareHistory(db.engine).pplns_inputs(
            datetime.now(UTC) + timedelta(hours=1), Fraction(10**9))
        seqs = Counter(r.seq for r in window)
        assert len(seqs) == len(window) == len(ids)
        assert all(seqs[ids[h]] == 1 for h in load.acked)
    finally:
        stop.set()
        if load_task is not None:
            load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await load_task
        for p in pools:
            p.ensure_stopped()
        await db.engine.dispose()
        await node.stop()


def test_three_instances_one_postgres(tmp_path):
    try:
        pg = LoopbackPg()
        pg.start()
    except (OSError, RuntimeError, subprocess.CalledProcessError, KeyError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL could not start: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL could not start: {exc}")
    try:
        asyncio.run(scenario(tmp_path, pg))
    finally:
        pg.destroy()

