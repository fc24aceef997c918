"""The figures issue 11 wires from issue 10's components, each read from the component's own
stats object and exported by ``poolserver.metrics.PoolCollector``: Stratum requests by method
and outcome, connections by listener, the share check histogram (real server, real sockets);
the share-arrival -> submitblock latency per node (real submitter, embedded chain); the journal's
flush / batch histograms (real journal on SQLite and PostgreSQL); the payout leader's periodic
reconcile (real embedded wallet)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from poolserver.bitcoin.blocks import BlockSubmitter, JsonlFoundBlockStore
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.wallet import EmbeddedWallet
from poolserver.metrics import PoolCollector, Sources
from poolserver.payout_service import PayoutService, payout_lock
from poolserver.storage.journal import ShareJournal
from stratum.interfaces import AcceptedShare, BlockCandidate, Decision
from stratum.stats import StratumStats
from tests.conftest import wait_until
from tests.payout_support import (
    OTHER_MINER,
    config,
    durable_store,
    find_block,
    journal_shares,
    seed_register,
    share_plan,
    utcnow,
)
from tests.stratum_client import StratumClient
from tests.stratum_support import start_server
from tests.test_blocks import _candidate, _chain


def _samples(sources: Sources) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in PoolCollector(sources).collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class RefuseBob:
    async def authorize(self, account: str, worker: str, peer: str) -> Decision:
        return Decision(account != "bob", "no license")


async def test_requests_by_method_and_outcome_connections_by_listener_and_check_latency():
    server, port, _sink, _blocks = await start_server(policy=RefuseBob())
    try:
        c = await StratumClient.connect("127.0.0.1", port)
        await c.cgminer("alice.rig1")
        assert (await c.request("mining.authorize", ["bob.rig1", "x"]))["result"] is not True
        assert (await c.request("mining.authorize", ["no dots here!", "x"]))["error"]
        assert (await c.request("mining.frobnicate", []))["error"]
        job = await c.wait_job()
        assert (await c.submit(job, c.grind(job)))["result"] is True
        assert (await c.submit(job, c.grind(job, want_share=False)))["result"] is not True
        await c.close()
        await wait_until(lambda: server.stats.connections_current == 0)
        st = server.stats
        assert st.requests[("mining.configure", "ok")] == 1
        assert st.requests[("mining.subscribe", "ok")] == 1
        assert st.requests[("mining.authorize", "ok")] == 1
        assert st.requests[("mining.authorize", "refused")] == 1
        assert st.requests[("mining.authorize", "invalid")] == 1
        assert st.requests[("other", "unsupported")] == 1
        assert st.listener_opened == {str(port): 1}
        assert st.listener_closed == {(str(port), "peer_closed"): 1}
        assert st.check_seconds.count == st.check_batches >= 1 and st.check_seconds.total > 0
        got = _samples(Sources(st))
        req = "qazpool_stratum_requests_total"
        assert got[(req, (("method", "mining.submit"), ("outcome", "accepted")))] == 1
        assert got[(req, (("method", "mining.submit"), ("outcome", "rejected")))] == 1
        assert got[(req, (("method", "mining.authorize"), ("outcome", "refused")))] == 1
        assert got[("qazpool_stratum_connections_opened_total", (("listener", str(port)),))] == 1
        closed = (("listener", str(port)), ("reason", "peer_closed"))
        assert got[("qazpool_stratum_connections_closed_total", closed)] == 1
        assert got[("qazpool_stratum_share_check_seconds_count", ())] == st.check_batches
    finally:
        await server.shutdown()


class StampingNode:
    """The embedded chain behind a client that notes when submitblock is handed to it."""

    def __init__(self, chain: EmbeddedChain, name: str) -> None:
        self.chain = chain
        self.name = name
        self.handed_at: list[float] = []

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        if method == "submitblock":
            self.handed_at.append(time.monotonic())
        return await self.chain.call(method, *params, timeout=timeout)


async def test_submit_latency_from_the_share_arrival_per_node(tmp_path):
    chain = _chain()
    a, b = StampingNode(chain, "a"), StampingNode(chain, "b")
    sink = BlockSubmitter(JsonlFoundBlockStore(tmp_path / "found.jsonl"), [a, b])
    cand = _candidate(chain)
    arrived = time.monotonic()
    await sink.block_found(BlockCandidate(**{**_fields(cand), "arrived": arrived}))
    await sink.drain()
    for node in (a, b):
        h = sink.stats.submit_latency[node.name]
        assert h.count == 1 and 0 <= h.total <= node.handed_at[0] - arrived
    got = _samples(Sources(StratumStats(), block_stats=sink.stats))
    assert got[("qazpool_block_submit_latency_seconds_count", (("node", "a"),))] == 1
    # no arrival (a replay, a candidate from elsewhere): nothing observed
    sink2 = BlockSubmitter(JsonlFoundBlockStore(tmp_path / "found2.jsonl"), [a])
    await sink2.block_found(cand)
    await sink2.drain()
    assert sink2.stats.submit_latency == {}


def _fields(cand: BlockCandidate) -> dict[str, Any]:
    return {f: getattr(cand, f) for f in cand.__dataclass_fields__}


async def test_journal_flush_and_batch_size_histograms(engine, tmp_path):
    """One observation per group commit: 25 shares put at once go out in batches of <= 10."""
    import asyncio

    journal = ShareJournal(engine, tmp_path / "spool", flush_interval_ms=50.0, batch_size=10)
    await journal.start()
    try:
        await asyncio.gather(*(journal.put(AcceptedShare(
            account="alice", worker="rig", session_id="f000000d", peer="127.0.0.1", job_id="1",
            height=1, difficulty=1.0, share_hash=n.to_bytes(32, "little"), is_block=False,
            created_at=utcnow())) for n in range(25)))  # fmt: skip
    finally:
        await journal.close()
    st = journal.stats
    assert st.committed == 25 and st.batches >= 3
    assert st.flush_seconds.count == st.batch_size.count == st.batches
    assert st.batch_size.total == 25 and st.flush_seconds.total > 0
    got = _samples(Sources(StratumStats(), journal_stats=st))
    assert got[("qazpool_journal_batch_size_sum", ())] == 25
    assert got[("qazpool_journal_flush_seconds_count", ())] == st.batches


async def test_payout_leader_reconciles_periodically_and_exports_the_difference(
    engine, db_url, tmp_path
):
    await seed_register(engine)
    await journal_shares(engine, tmp_path / "spool", share_plan(utcnow() - timedelta(minutes=10)))
    chain = EmbeddedChain("regtest")
    store = durable_store(engine, tmp_path)
    await find_block(chain, store, "alice")
    wallet = EmbeddedWallet(chain, tmp_path / "wallet.jsonl")
    service = PayoutService(engine, config(tmp_path, db_url, min_payout_sats=1000), chain, wallet,
                            found_store=store, reconcile_interval_s=3600)  # fmt: skip
    st = service.stats
    assert st.wallet_ledger_difference_sats is None
    report = await service.tick()
    assert not report.errors, report.summary()
    assert st.leader and st.reconcile_runs_total == 1 and st.wallet_ledger_difference_sats == 0
    assert st.reconcile_last_run_at > 0
    chain.generatetoaddress(100, OTHER_MINER)  # the coinbase is spendable now
    # money leaves the wallet without its ledger entry (not `poolserver payouts withdraw`)
    sent = await wallet.withdraw(OTHER_MINER, 50_000, "unrecorded withdrawal")
    await service.tick()
    assert st.reconcile_runs_total == 1  # not due yet: the last figure stays
    service.reconcile_interval_s = 0
    await service.tick()
    assert st.reconcile_runs_total == 2
    assert st.wallet_ledger_difference_sats == -(50_000 + sent.fee)
    got = _samples(Sources(StratumStats(), payouts=st))
    assert got[("qazpool_wallet_ledger_difference_satoshis", ())] == -(50_000 + sent.fee)
    assert got[("qazpool_reconcile_last_run_timestamp_seconds", ())] > 0
    # another process holds the payout lock: this one is not the leader, its figure goes
    async with payout_lock(engine) as locked:
        assert locked
        assert not (await service.tick()).locked
    assert not st.leader and st.wallet_ledger_difference_sats is None
    got = _samples(Sources(StratumStats(), payouts=st))
    assert ("qazpool_wallet_ledger_difference_satoshis", ()) not in got
    assert got[("qazpool_reconcile_runs_total", ())] == 2
