"""What the demo shows, read from the running pool (its StratumStats, the embedded chain) and
from the database (found blocks, credits, balances, payments): one snapshot per refresh."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from poolserver.storage.models import FoundBlock, LedgerEntry, Payment, Share


@dataclass
class Snapshot:
    elapsed_s: float = 0.0
    height: int = 0
    connections: int = 0
    authorized: int = 0
    hashrate: float = 0.0  # H/s from accepted difficulty over the last window
    shares: Counter[str] = field(default_factory=Counter)  # pool's result label -> count
    blocks_found: int = 0  # pool blocks in the database
    blocks_credited: int = 0  # of those, matured and credited to miners
    shares_stored: int = 0
    credited: dict[str, int] = field(default_factory=dict)  # account -> satoshis credited
    balances: dict[str, int] = field(default_factory=dict)  # account -> ledger balance
    paid: dict[str, int] = field(default_factory=dict)  # account -> satoshis in payments sent
    payments: int = 0  # payment batches broadcast or confirmed
    payment_txids: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.shares.get("accepted", 0)

    @property
    def rejected(self) -> int:
        return sum(n for label, n in self.shares.items() if label != "accepted")


async def read_database(engine: Any, snap: Snapshot) -> None:
    async with engine.connect() as conn:
        snap.blocks_found = (await conn.execute(select(func.count(FoundBlock.id)))).scalar_one()
        snap.shares_stored = (await conn.execute(select(func.count(Share.id)))).scalar_one()
        rows = (await conn.execute(
            select(LedgerEntry.account, LedgerEntry.kind, func.sum(LedgerEntry.amount))
            .group_by(LedgerEntry.account, LedgerEntry.kind))).all()  # fmt: skip
        credited_blocks = (await conn.execute(
            select(func.count(func.distinct(LedgerEntry.block_id)))
            .where(LedgerEntry.kind == "credit"))).scalar_one()  # fmt: skip
        pays = (await conn.execute(
            select(Payment.txid).where(Payment.status.in_(("broadcast", "confirmed")))
            .order_by(Payment.id))).all()  # fmt: skip
    snap.blocks_credited = int(credited_blocks)
    balances: dict[str, int] = {}
    for account, kind, total in rows:
        total = int(total)
        if kind == "credit":
            snap.credited[account] = snap.credited.get(account, 0) + total
        if kind == "payment":
            snap.paid[account] = snap.paid.get(account, 0) + abs(total)
        balances[account] = balances.get(account, 0) + total
    snap.balances = balances
    snap.payments = len(pays)
    snap.payment_txids = [t for (t,) in pays if t]
