"""poolserver.telemetry / telemetry_db: the pure helpers, node RPC timing around a real
NodeClient talking to the fake bitcoind, and the database figures (ledger balances, payments,
found blocks, licenses, PPLNS fill) read from real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from poolserver.bitcoin.node import NodeClient, NodeGroup, NodeUnavailable, RpcError
from poolserver.register.repository import RegisterRepository
from poolserver.storage.models import (
    BlockAllocation,
    FoundBlock,
    LedgerEntry,
    Payment,
    PaymentOutput,
    Share,
)
from poolserver.telemetry import (
    FIRMWARE_LABELS,
    Histogram,
    InstrumentedRpc,
    RpcStats,
    expiring_counts,
    firmware_family,
    instrument_nodes,
    pplns_fill,
)
from poolserver.telemetry_db import db_reader
from tests.fake_bitcoind import FakeBitcoind
from tests.test_register_repository import IDS

NOW = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("agent", "family"),
    [
        ("cgminer/4.11.1", "cgminer"),
        ("bitaxe/BM1370/v2.4.2", "bitaxe"),
        ("bmminer/2.0.0", "antminer"),
        ("BOSminer/plus", "braiins"),
        ("LUXminer/2024.5", "luxos"),
        ("whatsminer/v1.0", "whatsminer"),
        ("cpuminer/2.5.1", "cpuminer"),
        ("NiceHash/1.0.0", "nicehash"),
        ("", "unknown"),
        ("my-own-miner/0.1", "other"),
    ],
)
def test_firmware_family_is_a_bounded_label(agent, family):
    assert firmware_family(agent) == family and family in FIRMWARE_LABELS


def test_histogram_buckets_are_cumulative_and_end_at_inf():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.count == 4 and h.total == pytest.approx(7.65)


def test_pplns_fill_and_expiry_horizons():
    assert pplns_fill(0, 0) == 0.0 and pplns_fill(5, 10) == 0.5 and pplns_fill(30, 10) == 1.0
    expiry = {
        "a": NOW + timedelta(days=3),
        "b": NOW + timedelta(days=20),
        "c": NOW + timedelta(days=90),
    }
    assert expiring_counts(expiry, NOW) == {60: 2, 30: 2, 7: 1}


async def test_instrumented_node_records_latency_errors_and_up():
    fake = await FakeBitcoind().start()
    client = NodeClient(fake.url, user=fake.user, password=fake.password, timeout=2)
    stats = RpcStats()
    group = instrument_nodes(NodeGroup([client]), stats)
    try:
        assert isinstance(group.members[0], InstrumentedRpc)
        await group.call("getblockchaininfo")
        node = stats.nodes[client.name]
        assert node.up and node.calls["getblockchaininfo"] == 1
        assert node.latency["getblockchaininfo"].count == 1
        await fake.down()
        with pytest.raises(NodeUnavailable):
            await group.call("getblockchaininfo")
        assert not node.up and node.errors[("getblockchaininfo", "unavailable")] == 1
        await fake.up()
        with pytest.raises(RpcError):  # the node answers an unknown method with an error object
            await group.call("getrawmempool")
        assert node.up  # it answered
        assert node.calls["other"] == 1 and node.errors[("other", "rpc_error")] == 1
    finally:
        await group.close()
        await fake.stop()


async def test_database_figures_from_ledger_payments_blocks_and_licenses(engine):
    repo = RegisterRepository(engine, network="regtest", clock=lambda: NOW)
    await repo.add_miner("op", "acme", "ACME Mining LLP", IDS[0], "ops@acme.kz")
    await repo.add_license("op", "acme", "KZ-0001", date(2024, 1, 15), "I",
                           expires_on=(NOW + timedelta(days=5)).date())  # fmt: skip
    await repo.add_miner("op", "bolat", "Bolat LLP", IDS[1])
    await repo.add_license("op", "bolat", "KZ-0002", date(2023, 1, 1), "I",
                           expires_on=date(2024, 1, 1))  # fmt: skip
    await repo.add_miner("op", "nolic", "No License LLP", IDS[2])

    def block(i: int, status: str) -> FoundBlock:
        return FoundBlock(block_hash=f"{i:064x}", height=100 + i, prevhash="00" * 32,
                          account="acme", worker="w", job_id="j", block_hex="", bits=0x207FFFFF,
                          coinbase_value=5_000_000_000, found_at=NOW, status=status,
                          updated_at=NOW)  # fmt: skip

    from sqlalchemy.ext.asyncio import async_sessionmaker

    async with async_sessionmaker(engine)() as s, s.begin():
        mature, immature, orphan = block(1, "accepted"), block(2, "accepted"), block(3, "orphaned")
        s.add_all([mature, immature, orphan, block(4, "rejected")])
        await s.flush()
        for b, reward in ((mature, 5_000_000_000), (immature, 3_125_000_000), (orphan, 7)):
            s.add(BlockAllocation(block_id=b.id, inputs_hash="0" * 64, canonical=b"", policy="n",
                                  reward=reward, pool_fee=1, created_at=NOW))  # fmt: skip
        paid = Payment(comment="p1", status="confirmed", created_at=NOW, updated_at=NOW)
        pending = Payment(comment="p2", status="broadcast", created_at=NOW, updated_at=NOW)
        failed = Payment(comment="p3", status="failed", created_at=NOW, updated_at=NOW)
        s.add_all([paid, pending, failed])
        await s.flush()
        s.add_all([
            PaymentOutput(payment_id=paid.id, account="acme", address="a", amount=1_000_000),
            PaymentOutput(payment_id=pending.id, account="acme", address="a", amount=250_000),
            PaymentOutput(payment_id=pending.id, account="bolat", address="b", amount=50_000),
            PaymentOutput(payment_id=failed.id, account="bolat", address="b", amount=9),
        ])  # fmt: skip
        entries = [
            ("c1", "acme", "credit", 4_900_000_000, mature.id),
            ("c2", "@pool", "credit", 100_000_000, mature.id),
            ("p1", "acme", "payment", -1_000_000, None),
            ("p2", "acme", "payment", -250_000, None),
        ]
        s.add_all([LedgerEntry(entry_key=k, account=a, kind=kind, amount=amt, block_id=bid,
                               created_at=NOW) for k, a, kind, amt, bid in entries])  # fmt: skip
        s.add_all([
            Share(uid=bytes([i]) * 16, account="acme", worker="w", session_id="s", peer="p",
                  job_id="j", height=1, difficulty=d, share_hash=bytes([i]) * 32, is_block=False,
                  created_at=NOW)
            for i, d in enumerate((2.0, 3.0), start=1)
        ])  # fmt: skip

    read = db_reader(engine, network="regtest", pplns_k="2", network_difficulty=lambda: 5.0,
                     clock=lambda: NOW)  # fmt: skip
    snap = await read()
    assert snap.ledger_satoshis == {
        "mature": 4_900_000_000 - 1_250_000,  # miners' credits minus planned payments
        "pool": 100_000_000,
        "immature": 3_125_000_000,  # allocated, not credited, not orphaned
        "pending_payout": 300_000,  # the broadcast batch
    }
    assert all(isinstance(v, int) for v in snap.ledger_satoshis.values())  # satoshis stay int
    assert snap.payments == {"awaiting_approval": 0, "pending": 0, "broadcast": 1,
                             "confirmed": 1, "failed": 1}  # fmt: skip
    assert snap.payment_satoshis["confirmed"] == 1_000_000
    assert snap.found_blocks == {"pending": 0, "accepted": 2, "inconclusive": 0,
                                 "rejected": 1, "orphaned": 1}  # fmt: skip
    assert snap.miners_by_license_state["active"] == 1
    assert snap.miners_by_license_state["expired"] == 1
    assert snap.miners_by_license_state["none"] == 1
    assert snap.licenses_expiring == {60: 1, 30: 1, 7: 1}
    assert snap.pplns_window_difficulty == 10.0 and snap.pplns_window_work_difficulty == 5.0
