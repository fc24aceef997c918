"""Revision 0006_ledger_fees on SQLite and PostgreSQL: payments written before it keep working
(fee unknown, policy "pool", outputs with a zero fee share) and payout holds have a table."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from payouts.txfee import TxFeePolicy
from poolserver.storage import schema
from poolserver.storage.engine import create_engine
from poolserver.storage.repository import SqlPaymentOutbox


async def test_0006_upgrades_payments_written_before_it(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        assert await schema.upgrade(engine, "0004_ledger_block") == ("0004_ledger_block",)
        t = datetime(2026, 11, 30, tzinfo=UTC)
        payments = sa.table("payments", *(sa.column(c) for c in ("id", "comment", "status",
                                                                  "txid")),
                            sa.column("created_at", sa.DateTime(timezone=True)),
                            sa.column("updated_at", sa.DateTime(timezone=True)),
                            sa.column("data", sa.JSON()))
        outputs = sa.table("payment_outputs", *(sa.column(c) for c in (
            "payment_id", "account", "address", "amount")))
        async with engine.begin() as conn:
            await conn.execute(payments.insert().values(
                id=1, comment="qazpool payout pay-old", status="broadcast", txid="ab" * 32,
                created_at=t, updated_at=t, data={"batch_id": "pay-old", "failure": None}))
            await conn.execute(outputs.insert().values(
                payment_id=1, account="alice", address="addr-a", amount=150_000))
        assert await schema.upgrade(engine) == schema.heads()
        await schema.check_schema(engine)
        assert await schema.model_drift(engine) == []
        outbox = SqlPaymentOutbox(engine)
        (batch,) = await outbox.all_batches()
        assert batch.fee_sats is None and batch.fee_policy is TxFeePolicy.POOL
        assert [(o.miner_id, o.amount_sats, o.fee_sats) for o in batch.outputs] == [
            ("alice", 150_000, 0)]
        await outbox.add_hold("alice", "addr-a", "wallet refused: dust")
        assert await outbox.holds() == {"alice": ("addr-a", "wallet refused: dust")}
        assert await outbox.release_hold("alice") == 1 and await outbox.holds() == {}
    finally:
        await engine.dispose()
