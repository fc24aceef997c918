"""``reporting.model.ReportSource`` over the database, and the rate table import.

What the ledger recorded in a period: credits and reversals (``ledger_entries``) joined with the
frozen allocation lines (``distributions``) for gross and fee, the register for the miner's
identity, license and the payout address in force, the payments made before the period's end
(attributed to a miner's credits oldest first, like ``payouts.payments.distribution_rows``),
the pool's payout network fees (``tx_fee``) and the imported BTC→KZT rates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payouts.ledger import EntryKind
from payouts.types import POOL_ACCOUNT
from poolserver.storage.models import (
    BlockAllocation,
    Distribution,
    FoundBlock,
    LedgerEntry,
    Payment,
    PaymentOutput,
)
from poolserver.storage.register_models import Miner, MinerLicense, PayoutAddress
from poolserver.storage.report_models import KztRate
from reporting.model import (
    BlockEvent,
    MinerEvent,
    MinerIdentity,
    Period,
    PeriodData,
    PoolExpense,
    kz_date,
)
from reporting.rates import Rate

_PAID = ("broadcast", "confirmed")


def _credit_key(reversal_key: str) -> str:
    return "credit:" + reversal_key.split(":", 1)[1]


def _generation(entry_key: str) -> int:
    # credit:{hash}:{generation}:{account} / reversal:{hash}:{generation}:{account}
    parts = entry_key.split(":")
    return int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else 0


def attribute_payments(credits: Sequence[tuple[int, int]], payments: Sequence[tuple[Any, int]]
                       ) -> dict[int, Any]:
    """Oldest-first attribution: credit ``(id, amount)`` is covered by the first payment
    ``(payment, amount)`` whose running total reaches the credit's running total."""
    out: dict[int, Any] = {}
    paid, j, total = 0, 0, 0
    for cid, amount in credits:
        total += amount
        while j < len(payments) and paid < total:
            paid += payments[j][1]
            j += 1
        if paid >= total and j > 0:
            out[cid] = payments[j - 1][0]
    return out


class SqlReportSource:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def period_data(self, period: Period,
                          progress: Callable[[str], None] | None = None) -> PeriodData:
        """``progress`` (if given) is told each step of the reading."""
        say = progress or (lambda _step: None)
        start, end = period.start_utc, period.end_utc
        le, fb, ba, d = LedgerEntry, FoundBlock, BlockAllocation, Distribution
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(le.id, le.entry_key, le.account, le.kind, le.amount, le.created_at,
                       fb.block_hash, fb.height, ba.reward, ba.pool_fee, d.gross, d.fee, d.net)
                .join(fb, fb.id == le.block_id)
                .join(ba, ba.block_id == fb.id)
                .outerjoin(d, and_(d.allocation_id == ba.id, d.account == le.account))
                .where(le.kind.in_((EntryKind.CREDIT.value, EntryKind.REVERSAL.value)),
                       le.created_at >= start, le.created_at < end)
                .order_by(le.id))).all()
            accounts = sorted({r.account for r in rows if r.account != POOL_ACCOUNT})
            say(f"{len(rows)} ledger credit/reversal row(s) of {len(accounts)} miner(s) read; "
                "reading the register and payments")
            miners = await self._miners(conn, accounts, period.last)
            addresses = await self._addresses(conn, accounts)
            credit_rows, paid_by = await self._payments(conn, accounts, end)
            fee_rows = (await conn.execute(
                select(le.created_at, le.amount, le.data)
                .where(le.kind == EntryKind.TX_FEE.value, le.created_at >= start,
                       le.created_at < end).order_by(le.id))).all()
            txids = {c: t for c, t in (await conn.execute(
                select(Payment.comment, Payment.txid))).all()}
            reversed_keys = sorted({_credit_key(r.entry_key) for r in rows
                                    if r.kind == EntryKind.REVERSAL.value})
            credit_at = {k: t for k, t in (await conn.execute(
                select(le.entry_key, le.created_at)
                .where(le.entry_key.in_(reversed_keys)))).all()} if reversed_keys else {}
            late = [(c, paid_by[cid]) for cid, c in credit_rows.items()
                    if c.created_at < start and cid in paid_by
                    and start <= paid_by[cid].created_at < end]
            late_accounts = sorted({c.account for c, _ in late} - set(accounts))
            miners.update(await self._miners(conn, late_accounts, period.last))
            addresses.update(await self._addresses(conn, late_accounts))
            reversal_days = {kz_date(credit_at[_credit_key(r.entry_key)])
                             for r in rows if r.kind == EntryKind.REVERSAL.value
                             and _credit_key(r.entry_key) in credit_at}
            say(f"{len(credit_rows)} credit(s) and their payments read; reading tenge rates")
            rate_rows = (await conn.execute(select(KztRate.__table__).where(
                (KztRate.day >= period.first) & (KztRate.day <= period.last)
                | KztRate.day.in_(sorted(reversal_days))))).all()

        miner_events: list[MinerEvent] = []
        groups: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
        for r in rows:
            kind = EntryKind(r.kind)
            groups[(r.block_hash, r.kind, _generation(r.entry_key))].append(r)
            if r.account == POOL_ACCOUNT:
                continue
            sign = 1 if kind is EntryKind.CREDIT else -1
            payment = paid_by.get(r.id) if kind is EntryKind.CREDIT else None
            original = credit_at.get(_credit_key(r.entry_key)) if sign < 0 else None
            miner_events.append(MinerEvent(
                kind=kind, account=r.account, block_hash=r.block_hash, height=r.height,
                at=r.created_at, gross_sats=sign * (r.gross or 0), fee_sats=sign * (r.fee or 0),
                net_sats=r.amount, address=_address_at(addresses.get(r.account, ()), r.created_at),
                payment_txid=(payment.txid or "") if payment else "",
                payment_at=payment.created_at if payment else None,
                payment_fee_sats=payment.out_fee if payment else 0,
                valued_on=kz_date(original) if original else None))
        for c, p in late:
            miner_events.append(MinerEvent(
                kind=EntryKind.PAYMENT, account=c.account, block_hash=c.block_hash,
                height=c.height, at=c.created_at, gross_sats=0, fee_sats=0, net_sats=0,
                address=p.address, payment_txid=p.txid or "", payment_at=p.created_at,
                payment_fee_sats=p.out_fee))
        block_events = []
        for (block_hash, kind_text, _gen), entries in groups.items():
            kind = EntryKind(kind_text)
            sign = 1 if kind is EntryKind.CREDIT else -1
            first = entries[0]
            pool_total = sum(e.amount for e in entries if e.account == POOL_ACCOUNT)
            original = credit_at.get(_credit_key(first.entry_key)) if sign < 0 else None
            block_events.append(BlockEvent(
                kind=kind, block_hash=block_hash, height=first.height,
                at=min(e.created_at for e in entries), reward_sats=sign * first.reward,
                pool_fee_sats=sign * first.pool_fee,
                pool_remainder_sats=pool_total - sign * first.pool_fee,
                valued_on=kz_date(original) if original else None))
        block_events.sort(key=lambda b: (b.at, b.height, b.block_hash, b.kind.value))
        expenses = [PoolExpense(r.created_at, txids.get(
            f"qazpool payout {(r.data or {}).get('batch_id')}") or "", -r.amount)
            for r in fee_rows]
        rates = {r.day: Rate(r.day, Decimal(r.rate), r.source) for r in rate_rows}
        return PeriodData(miner_events, block_events, expenses, miners, rates)

    async def _miners(self, conn: Any, accounts: Sequence[str], last: date
                      ) -> dict[str, MinerIdentity]:
        out: dict[str, MinerIdentity] = {}
        if not accounts:
            return out
        rows = (await conn.execute(
            select(Miner.id, Miner.account, Miner.iin_bin, Miner.legal_name,
                   MinerLicense.number, MinerLicense.issued_on)
            .outerjoin(MinerLicense, and_(MinerLicense.miner_id == Miner.id,
                                          MinerLicense.issued_on <= last))
            .where(Miner.account.in_(accounts))
            .order_by(Miner.account, MinerLicense.issued_on, MinerLicense.id))).all()
        for r in rows:  # the latest license issued by the period's last day wins
            out[r.account] = MinerIdentity(r.account, r.iin_bin, r.legal_name, r.number or "",
                                           r.issued_on)
        return out

    async def _addresses(self, conn: Any, accounts: Sequence[str]
                         ) -> dict[str, list[tuple[datetime, str]]]:
        rows = (await conn.execute(
            select(Miner.account, PayoutAddress.effective_from, PayoutAddress.address)
            .join(PayoutAddress, PayoutAddress.miner_id == Miner.id)
            .where(Miner.account.in_(accounts))
            .order_by(PayoutAddress.effective_from, PayoutAddress.id))).all()
        out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for r in rows:
            out[r.account].append((r.effective_from, r.address))
        return out

    async def _payments(self, conn: Any, accounts: Sequence[str], end: datetime
                        ) -> tuple[dict[int, Any], dict[int, Any]]:
        """Every miner credit recorded before ``end`` (by ledger id), and credit id -> the
        payment (txid, created_at, address, out_fee) covering it, among the payments planned
        before ``end`` that were sent (all miners: a late payment may concern anyone)."""
        credits = (await conn.execute(
            select(LedgerEntry.id, LedgerEntry.entry_key, LedgerEntry.account,
                   LedgerEntry.amount, LedgerEntry.created_at, FoundBlock.block_hash,
                   FoundBlock.height)
            .join(FoundBlock, FoundBlock.id == LedgerEntry.block_id)
            .where(LedgerEntry.kind == EntryKind.CREDIT.value,
                   LedgerEntry.account != POOL_ACCOUNT, LedgerEntry.created_at < end)
            .order_by(LedgerEntry.id))).all()
        pays = (await conn.execute(
            select(PaymentOutput.account, PaymentOutput.amount, PaymentOutput.address,
                   PaymentOutput.fee_sats.label("out_fee"), Payment.txid, Payment.created_at)
            .join(Payment, Payment.id == PaymentOutput.payment_id)
            .where(Payment.status.in_(_PAID), Payment.created_at < end)
            .order_by(Payment.created_at, Payment.id))).all()
        by_miner_c: dict[str, list[tuple[int, int]]] = defaultdict(list)
        by_miner_p: dict[str, list[tuple[Any, int]]] = defaultdict(list)
        for c in credits:
            by_miner_c[c.account].append((c.id, c.amount))
        for p in pays:
            by_miner_p[p.account].append((p, p.amount))
        out: dict[int, Any] = {}
        for account, cs in by_miner_c.items():
            out.update(attribute_payments(cs, by_miner_p.get(account, [])))
        return {c.id: c for c in credits}, out


def _address_at(history: Iterable[tuple[datetime, str]], at: datetime) -> str:
    current = ""
    for since, address in history:
        if since <= at:
            current = address
    return current


class RateConflict(ValueError):
    """A day already has a different rate: reports of a closed period must not change."""


async def import_rates(engine: AsyncEngine, rates: Sequence[Rate], replace: bool = False
                       ) -> tuple[int, int]:
    """Insert new days (a day with the same rate and source is left alone); a different rate
    for a stored day is refused (RateConflict naming the days) unless ``replace``. Returns
    (added, replaced). One transaction: all or nothing."""
    added = replaced = 0
    conflicts: list[str] = []
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        existing = {r.day: r for r in (await conn.execute(select(KztRate.__table__).where(
            KztRate.day.in_([x.day for x in rates])))).all()}
        for rate in rates:
            values = dict(rate=str(rate.kzt_per_btc), source=rate.source, imported_at=now)
            old = existing.get(rate.day)
            if old is None:
                await conn.execute(KztRate.__table__.insert().values(day=rate.day, **values))
                added += 1
            elif (Decimal(old.rate), old.source) != (rate.kzt_per_btc, rate.source):
                if not replace:
                    conflicts.append(f"{rate.day} (stored {old.rate} {old.source!r}, "
                                     f"file {rate.kzt_per_btc} {rate.source!r})")
                    continue
                await conn.execute(KztRate.__table__.update().where(KztRate.day == rate.day)
                                   .values(**values))
                replaced += 1
        if conflicts:
            raise RateConflict("date: a different rate is already stored for "
                               + "; ".join(conflicts) + " (reports already generated for "
                               "these days would change; use --replace to overwrite)")
    return added, replaced


def missing_rate_days(events: Iterable[MinerEvent], rates: dict[date, Rate]) -> list[date]:
    return sorted({kz_date(e.at) for e in events} - set(rates))
