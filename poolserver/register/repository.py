"""Async persistence of the registers. Every change is written together with its audit entry
in one transaction, so a change without an audit entry (or the reverse) can never be committed.

Writers are serialized so the audit chain cannot fork: on PostgreSQL by a transaction-scoped
advisory lock, on SQLite by taking the write lock with the transaction's first statement.
Reads (``snapshot``, lookups) never lock. Running pools learn of changes (from any process)
through ``RegisterAccountPolicy``, which polls the audit head.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from poolserver.register import chain
from poolserver.register.address import validate_address
from poolserver.register.csvrows import HardwareRow, LicenseRow, MinerRow, Parsed, RowError
from poolserver.register.errors import Conflict, NotFound, RegisterError
from poolserver.register.hardware import Machine, parse_hashrate, validate_serial
from poolserver.register.history import Dated, validate_fee_bps, value_at
from poolserver.register.iin import kind_of, validate_iin_bin
from poolserver.register.licensing import (
    License,
    LicenseStatus,
    Subtype,
    Suspension,
    check_new_suspension,
    credited_intervals,
    new_license,
    new_suspension,
    status_at,
)
from poolserver.register.names import validate_account
from poolserver.register.text import text_field
from poolserver.register.timeutil import require_utc
from poolserver.storage.models import FeeRate
from poolserver.storage.register_models import (
    LicenseSuspension,
    Miner,
    MinerFeeRate,
    MinerLicense,
    PayoutAddress,
    RegisterAudit,
    RegisteredMachine,
)

log = logging.getLogger(__name__)

AUDIT_LOCK_KEY = 0x71617A7265676973  # "qazregis": pg_advisory_xact_lock key of register writers
BACKDATE_TOLERANCE = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MinerInfo:
    id: int
    account: str
    legal_name: str
    iin_bin: str
    kind: str
    contact: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything authorization needs, read in one go (the policy keeps it in memory)."""

    miners: dict[str, MinerInfo]
    licenses: dict[str, tuple[License, ...]]
    audit_head: int
    taken_at: datetime

    def status(self, account: str, at: datetime) -> LicenseStatus:
        return status_at(self.licenses.get(account, ()), at)


@dataclass
class ImportReport:
    applied: list[int] = field(default_factory=list)  # row numbers written (or would be)
    errors: list[RowError] = field(default_factory=list)
    committed: bool = False


def _miner_json(m: Miner) -> dict[str, Any]:
    return {
        "account": m.account,
        "legal_name": m.legal_name,
        "iin_bin": m.iin_bin,
        "kind": m.kind,
        "contact": m.contact,
    }


def _license_json(lic: MinerLicense) -> dict[str, Any]:
    return {
        "number": lic.number,
        "issued_on": lic.issued_on,
        "subtype": lic.subtype,
        "expires_on": lic.expires_on,
        "revoked_at": lic.revoked_at,
        "revocation_reason": lic.revocation_reason,
    }


def _susp_json(s: LicenseSuspension) -> dict[str, Any]:
    return {
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "reason": s.reason,
        "lifted_at": s.lifted_at,
    }


def _machine_json(m: RegisteredMachine, account: str) -> dict[str, Any]:
    return {
        "serial": m.serial,
        "manufacturer": m.manufacturer,
        "model": m.model,
        "rated_hashrate": m.rated_hashrate,
        "power_w": m.power_w,
        "account": account,
        "data_centre": m.data_centre,
        "registry_number": m.registry_number,
        "registry_date": m.registry_date,
    }


def _to_license(row: MinerLicense, susps: Sequence[LicenseSuspension]) -> License:
    return License(
        number=row.number,
        issued_on=row.issued_on,
        subtype=Subtype(row.subtype),
        expires_on=row.expires_on,
        suspensions=tuple(
            Suspension(s.starts_at, s.ends_at, s.reason, s.lifted_at)
            for s in sorted(susps, key=lambda s: s.starts_at)
        ),
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
    )


class Tx:
    """One register transaction: the session plus the audit appender."""

    def __init__(self, session: AsyncSession, who: str, at: datetime) -> None:
        self.session = session
        self.who = who
        self.at = at
        self.entries: list[chain.AuditEntry] = []
        self._head: chain.AuditEntry | None = None
        self._head_loaded = False

    async def audit(self, action: str, subject: str, old: Any, new: Any) -> chain.AuditEntry:
        if not self._head_loaded:
            row = (
                await self.session.execute(
                    select(RegisterAudit).order_by(RegisterAudit.seq.desc()).limit(1)
                )
            ).scalar_one_or_none()
            self._head = None if row is None else _entry(row)
            self._head_loaded = True
        entry = chain.make_entry(self._head, self.who, self.at, action, subject, old, new)
        self.session.add(
            RegisterAudit(
                seq=entry.seq,
                prev_hash=entry.prev_hash,
                who=entry.who,
                at=entry.at,
                action=entry.action,
                subject=entry.subject,
                old=entry.old,
                new=entry.new,
                hash=entry.hash,
            )
        )
        self._head = entry
        self.entries.append(entry)
        return entry


def _entry(row: RegisterAudit) -> chain.AuditEntry:
    return chain.AuditEntry(
        row.seq,
        row.prev_hash,
        row.who,
        row.at,
        row.action,
        row.subject,
        row.old,
        row.new,
        row.hash,
    )


class RegisterRepository:
    """CRUD of miners, licenses, suspensions, payout addresses, fee rates and machines."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        network: str = "regtest",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.network = network
        self.clock = clock
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sqlite = engine.dialect.name == "sqlite"

    # ---- transactions ---------------------------------------------------------------------

    @asynccontextmanager
    async def change(self, who: str) -> AsyncIterator[Tx]:
        """A write transaction; audit entries added through it commit with the change."""
        who = text_field(who, "who")
        async with self.sessions() as session:
            async with session.begin():
                if self._sqlite:
                    # take SQLite's write lock now (waits up to busy_timeout) so the audit head
                    # read below cannot be overtaken by another writer's commit
                    await session.execute(text("UPDATE reg_miners SET id = id WHERE 0"))
                else:
                    await session.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY}
                    )
                tx = Tx(session, who, require_utc(self.clock(), "clock"))
                yield tx

    async def _miner(self, session: AsyncSession, account: str) -> Miner:
        account = validate_account(account)
        row = (
            await session.execute(select(Miner).where(Miner.account == account))
        ).scalar_one_or_none()
        if row is None:
            raise NotFound("account", f"no miner with account {account}")
        return row

    async def _license(self, session: AsyncSession, number: str) -> MinerLicense:
        row = (
            await session.execute(select(MinerLicense).where(MinerLicense.number == number))
        ).scalar_one_or_none()
        if row is None:
            raise NotFound("license", f"no license numbered {number[:64]}")
        return row

    def _not_backdated(self, when: datetime, now: datetime, field: str) -> datetime:
        when = require_utc(when, field)
        if when < now - BACKDATE_TOLERANCE:
            raise RegisterError(
                field,
                "cannot be in the past: what was in force at past distributions is fixed",
            )
        return when

    # ---- miners ---------------------------------------------------------------------------

    async def add_miner(
        self, who: str, account: str, legal_name: str, iin_bin: str, contact: str = ""
    ) -> MinerInfo:
        async with self.change(who) as tx:
            return await self._add_miner(tx, account, legal_name, iin_bin, contact)

    async def _add_miner(
        self, tx: Tx, account: str, legal_name: str, iin_bin: str, contact: str
    ) -> MinerInfo:
        account = validate_account(account)
        number = validate_iin_bin(iin_bin)
        legal_name = text_field(legal_name, "legal_name")
        contact = text_field(contact, "contact", required=False)
        s = tx.session
        if (await s.execute(select(Miner.id).where(Miner.account == account))).first():
            raise Conflict("account", f"account {account} is already registered")
        other = (
            await s.execute(select(Miner.account).where(Miner.iin_bin == number))
        ).scalar_one_or_none()
        if other is not None:
            raise Conflict("iin_bin", f"{number} is already registered to account {other}")
        row = Miner(
            account=account,
            legal_name=legal_name,
            iin_bin=number,
            kind=kind_of(number).value,
            contact=contact,
            created_at=tx.at,
            updated_at=tx.at,
        )
        s.add(row)
        await s.flush()
        await tx.audit("miner.add", f"miner:{account}", None, _miner_json(row))
        return _miner_info(row)

    async def update_miner(
        self, who: str, account: str, *, legal_name: str | None = None, contact: str | None = None
    ) -> MinerInfo:
        async with self.change(who) as tx:
            row = await self._miner(tx.session, account)
            old = _miner_json(row)
            if legal_name is not None:
                row.legal_name = text_field(legal_name, "legal_name")
            if contact is not None:
                row.contact = text_field(contact, "contact", required=False)
            new = _miner_json(row)
            if new != old:
                row.updated_at = tx.at
                await tx.audit("miner.update", f"miner:{row.account}", old, new)
            return _miner_info(row)

    async def miners(self) -> list[MinerInfo]:
        async with self.sessions() as s:
            rows = (await s.execute(select(Miner).order_by(Miner.account))).scalars()
            return [_miner_info(r) for r in rows]

    async def get_miner(self, account: str) -> MinerInfo | None:
        async with self.sessions() as s:
            try:
                return _miner_info(await self._miner(s, account))
            except NotFound:
                return None

    # ---- licenses -------------------------------------------------------------------------

    async def add_license(
        self,
        who: str,
        account: str,
        number: str,
        issued_on: date,
        subtype: Subtype | str,
        expires_on: date | None = None,
    ) -> License:
        async with self.change(who) as tx:
            return await self._add_license(tx, account, number, issued_on, subtype, expires_on)

    async def _add_license(
        self,
        tx: Tx,
        account: str,
        number: str,
        issued_on: date,
        subtype: Subtype | str,
        expires_on: date | None,
    ) -> License:
        lic = new_license(number, issued_on, subtype, expires_on)
        miner = await self._miner(tx.session, account)
        existing = (
            await tx.session.execute(
                select(Miner.account)
                .join(MinerLicense, MinerLicense.miner_id == Miner.id)
                .where(MinerLicense.number == lic.number)
            )
        ).scalar_one_or_none()
        if existing is not None:
            raise Conflict("license.number", f"{lic.number} is already registered to {existing}")
        row = MinerLicense(
            miner_id=miner.id,
            number=lic.number,
            issued_on=lic.issued_on,
            subtype=lic.subtype.value,
            expires_on=lic.expires_on,
            revoked_at=None,
            revocation_reason="",
            created_at=tx.at,
        )
        tx.session.add(row)
        await tx.session.flush()
        await tx.audit(
            "license.add", f"miner:{miner.account} license:{lic.number}", None, _license_json(row)
        )
        return lic

    async def suspend(
        self,
        who: str,
        number: str,
        starts_at: datetime,
        reason: str,
        *,
        months: int | None = None,
        ends_at: datetime | None = None,
    ) -> Suspension:
        """Record a 1..6 month suspension. Retroactive starts are allowed (the decision may be
        entered late): shares from ``starts_at`` on stop earning either way."""
        susp = new_suspension(starts_at, reason, months=months, ends_at=ends_at)
        async with self.change(who) as tx:
            row = await self._license(tx.session, number)
            susps = await self._suspensions(tx.session, [row.id])
            check_new_suspension(_to_license(row, susps.get(row.id, [])), susp)
            srow = LicenseSuspension(
                license_id=row.id,
                starts_at=susp.starts_at,
                ends_at=susp.ends_at,
                reason=susp.reason,
                lifted_at=None,
                created_at=tx.at,
            )
            tx.session.add(srow)
            account = await self._account_of(tx.session, row.miner_id)
            await tx.audit(
                "license.suspend", f"miner:{account} license:{row.number}", None, _susp_json(srow)
            )
        return susp

    async def lift_suspension(self, who: str, number: str, at: datetime | None = None) -> None:
        """End the suspension in force at ``at`` (default now) early (Art. 9(6))."""
        async with self.change(who) as tx:
            when = require_utc(at or tx.at, "lifted_at")
            row = await self._license(tx.session, number)
            susps = (await self._suspensions(tx.session, [row.id])).get(row.id, [])
            current = next(
                (s for s in susps if s.lifted_at is None and s.starts_at <= when < s.ends_at),
                None,
            )
            if current is None:
                raise NotFound("suspension", f"license {number} is not suspended at that time")
            old = _susp_json(current)
            current.lifted_at = when
            account = await self._account_of(tx.session, row.miner_id)
            await tx.audit(
                "license.lift", f"miner:{account} license:{row.number}", old, _susp_json(current)
            )

    async def revoke(self, who: str, number: str, at: datetime, reason: str) -> None:
        """Record a revocation (by court, Art. 9(7)) taking effect at ``at``."""
        at = require_utc(at, "revoked_at")
        reason = text_field(reason, "revocation_reason")
        async with self.change(who) as tx:
            row = await self._license(tx.session, number)
            if row.revoked_at is not None:
                raise Conflict("license", f"license {number} is already revoked")
            old = _license_json(row)
            row.revoked_at, row.revocation_reason = at, reason
            account = await self._account_of(tx.session, row.miner_id)
            await tx.audit(
                "license.revoke", f"miner:{account} license:{row.number}", old, _license_json(row)
            )

    async def licenses_of(self, account: str) -> tuple[License, ...]:
        async with self.sessions() as s:
            miner = await self._miner(s, account)
            rows = list(
                (
                    await s.execute(select(MinerLicense).where(MinerLicense.miner_id == miner.id))
                ).scalars()
            )
            susps = await self._suspensions(s, [r.id for r in rows])
            return tuple(_to_license(r, susps.get(r.id, [])) for r in rows)

    async def _suspensions(
        self, s: AsyncSession, license_ids: list[int]
    ) -> dict[int, list[LicenseSuspension]]:
        out: dict[int, list[LicenseSuspension]] = {}
        if not license_ids:
            return out
        rows = (
            await s.execute(
                select(LicenseSuspension).where(LicenseSuspension.license_id.in_(license_ids))
            )
        ).scalars()
        for r in rows:
            out.setdefault(r.license_id, []).append(r)
        return out

    async def _account_of(self, s: AsyncSession, miner_id: int) -> str:
        return (await s.execute(select(Miner.account).where(Miner.id == miner_id))).scalar_one()

    # ---- payout addresses and fees ---------------------------------------------------------

    async def set_payout_address(
        self, who: str, account: str, address: str, effective_from: datetime | None = None
    ) -> str:
        async with self.change(who) as tx:
            return await self._set_address(tx, account, address, effective_from)

    async def _set_address(
        self, tx: Tx, account: str, address: str, effective_from: datetime | None
    ) -> str:
        addr = validate_address(address, self.network)
        when = self._not_backdated(effective_from or tx.at, tx.at, "effective_from")
        miner = await self._miner(tx.session, account)
        old = await self._address_at(tx.session, miner.id, when)
        tx.session.add(
            PayoutAddress(
                miner_id=miner.id,
                address=addr,
                network=self.network,
                effective_from=when,
                created_at=tx.at,
            )
        )
        await tx.audit(
            "payout_address.set",
            f"miner:{miner.account}",
            None if old is None else {"address": old},
            {"address": addr, "network": self.network, "effective_from": when},
        )
        return addr

    async def _address_at(self, s: AsyncSession, miner_id: int, at: datetime) -> str | None:
        rows = (
            await s.execute(select(PayoutAddress).where(PayoutAddress.miner_id == miner_id))
        ).scalars()
        return value_at((Dated(r.effective_from, r.address, r.id) for r in rows), at)

    async def payout_address_at(self, account: str, at: datetime) -> str | None:
        """The address a distribution dated ``at`` pays."""
        async with self.sessions() as s:
            miner = await self._miner(s, account)
            return await self._address_at(s, miner.id, require_utc(at, "at"))

    async def set_miner_fee(
        self, who: str, account: str, fee_bps: int, effective_from: datetime | None = None
    ) -> None:
        async with self.change(who) as tx:
            await self._set_miner_fee(tx, account, fee_bps, effective_from)

    async def _set_miner_fee(
        self, tx: Tx, account: str, fee_bps: int, effective_from: datetime | None
    ) -> None:
        fee_bps = validate_fee_bps(fee_bps)
        when = self._not_backdated(effective_from or tx.at, tx.at, "effective_from")
        miner = await self._miner(tx.session, account)
        old = await self._fee_at(tx.session, miner.id, when)
        tx.session.add(
            MinerFeeRate(miner_id=miner.id, fee_bps=fee_bps, effective_from=when, created_at=tx.at)
        )
        await tx.audit(
            "fee.miner.set",
            f"miner:{miner.account}",
            None if old is None else {"fee_bps": old},
            {"fee_bps": fee_bps, "effective_from": when},
        )

    async def set_pool_fee(
        self, who: str, fee_bps: int, effective_from: datetime | None = None, note: str = ""
    ) -> None:
        """A pool-wide fee rate (storage's ``fee_rates`` table), audited like the rest."""
        fee_bps = validate_fee_bps(fee_bps)
        async with self.change(who) as tx:
            when = self._not_backdated(effective_from or tx.at, tx.at, "effective_from")
            old = await self._pool_fee_at(tx.session, when)
            tx.session.add(
                FeeRate(
                    effective_from=when,
                    fee_bps=fee_bps,
                    note=text_field(note, "note", required=False),
                    created_at=tx.at,
                )
            )
            await tx.audit(
                "fee.pool.set",
                "pool",
                None if old is None else {"fee_bps": old},
                {"fee_bps": fee_bps, "effective_from": when},
            )

    async def _pool_fee_at(self, s: AsyncSession, at: datetime) -> int | None:
        rows = (await s.execute(select(FeeRate))).scalars()
        return value_at((Dated(r.effective_from, r.fee_bps, r.id) for r in rows), at)

    async def _fee_at(self, s: AsyncSession, miner_id: int, at: datetime) -> int | None:
        rows = (
            await s.execute(select(MinerFeeRate).where(MinerFeeRate.miner_id == miner_id))
        ).scalars()
        return value_at((Dated(r.effective_from, r.fee_bps, r.id) for r in rows), at)

    async def own_fee_at(self, account: str, at: datetime) -> int | None:
        """The miner's own fee rate (basis points) at ``at``, ignoring the pool-wide rate."""
        async with self.sessions() as s:
            miner = await self._miner(s, account)
            return await self._fee_at(s, miner.id, require_utc(at, "at"))

    async def fee_at(self, account: str, at: datetime) -> int | None:
        """The fee (basis points) for the miner at ``at``: its own rate, else the pool's."""
        at = require_utc(at, "at")
        async with self.sessions() as s:
            miner = await self._miner(s, account)
            own = await self._fee_at(s, miner.id, at)
            return own if own is not None else await self._pool_fee_at(s, at)

    # ---- hardware -------------------------------------------------------------------------

    async def add_machine(self, who: str, row: HardwareRow) -> Machine:
        async with self.change(who) as tx:
            return await self._add_machine(tx, row)

    async def _add_machine(self, tx: Tx, row: HardwareRow) -> Machine:
        serial = validate_serial(row.serial)
        rated = parse_hashrate(row.rated_hashrate)
        if isinstance(row.power_w, bool) or not isinstance(row.power_w, int) or row.power_w <= 0:
            raise RegisterError("power_w", "must be a positive whole number of watts")
        miner = await self._miner(tx.session, row.account)
        other = (
            await tx.session.execute(
                select(Miner.account)
                .join(RegisteredMachine, RegisteredMachine.miner_id == Miner.id)
                .where(RegisteredMachine.serial == serial)
            )
        ).scalar_one_or_none()
        if other is not None:
            raise Conflict("serial", f"serial {serial} is already registered to {other}")
        m = RegisteredMachine(
            serial=serial,
            manufacturer=text_field(row.manufacturer, "manufacturer"),
            model=text_field(row.model, "model"),
            rated_hashrate=rated,
            power_w=row.power_w,
            miner_id=miner.id,
            data_centre=text_field(row.data_centre, "data_centre"),
            registry_number=text_field(row.registry_number, "registry_number", required=False),
            registry_date=row.registry_date,
            created_at=tx.at,
            updated_at=tx.at,
        )
        tx.session.add(m)
        await tx.session.flush()
        await tx.audit("machine.add", f"machine:{serial}", None, _machine_json(m, miner.account))
        return _to_machine(m, miner.account)

    async def remove_machine(self, who: str, serial: str) -> None:
        async with self.change(who) as tx:
            m = (
                await tx.session.execute(
                    select(RegisteredMachine).where(RegisteredMachine.serial == serial)
                )
            ).scalar_one_or_none()
            if m is None:
                raise NotFound("serial", f"no machine with serial {serial[:64]}")
            account = await self._account_of(tx.session, m.miner_id)
            await tx.audit("machine.remove", f"machine:{serial}", _machine_json(m, account), None)
            await tx.session.delete(m)

    async def machines(self, account: str | None = None) -> list[Machine]:
        async with self.sessions() as s:
            q = select(RegisteredMachine, Miner.account).join(
                Miner, Miner.id == RegisteredMachine.miner_id
            )
            if account is not None:
                q = q.where(Miner.account == validate_account(account))
            rows = await s.execute(q.order_by(RegisteredMachine.serial))
            return [_to_machine(m, acct) for m, acct in rows]

    # ---- imports --------------------------------------------------------------------------

    async def import_rows(
        self,
        who: str,
        parsed: Parsed[Any],
        *,
        dry_run: bool = False,
        strict: bool = False,
    ) -> ImportReport:
        """Apply parsed CSV rows in one transaction. Rows with errors (parse or conflict) are
        skipped and reported; ``strict`` applies nothing if any row fails; ``dry_run`` checks
        every row against the database and then rolls back."""
        report = ImportReport(errors=list(parsed.errors))

        class _Rollback(Exception):
            pass

        try:
            async with self.change(who) as tx:
                for line, row in parsed.rows:
                    try:
                        await self._apply_row(tx, row)
                    except RegisterError as exc:
                        report.errors.append(RowError(line, exc.field, exc.reason))
                        continue
                    report.applied.append(line)
                if dry_run or (strict and report.errors):
                    raise _Rollback
        except _Rollback:
            report.committed = False
            if strict and not dry_run:
                report.applied = []
            return report
        report.committed = True
        return report

    async def _apply_row(self, tx: Tx, row: Any) -> None:
        # every check happens before the row's first write, so a refused row leaves nothing
        if isinstance(row, MinerRow):
            if row.payout_address is not None:
                validate_address(row.payout_address, self.network)
            await self._add_miner(tx, row.account, row.legal_name, row.iin_bin, row.contact)
            if row.payout_address is not None:
                await self._set_address(tx, row.account, row.payout_address, None)
            if row.fee_bps is not None:
                await self._set_miner_fee(tx, row.account, row.fee_bps, None)
        elif isinstance(row, LicenseRow):
            await self._add_license(
                tx, row.account, row.number, row.issued_on, row.subtype, row.expires_on
            )
        elif isinstance(row, HardwareRow):
            await self._add_machine(tx, row)
        else:  # pragma: no cover - programming error
            raise TypeError(f"cannot import {type(row).__name__}")

    # ---- snapshot, audit -------------------------------------------------------------------

    async def audit_head(self) -> int:
        async with self.sessions() as s:
            return int((await s.execute(select(func.max(RegisterAudit.seq)))).scalar() or 0)

    async def snapshot(self) -> Snapshot:
        """Miners with their licenses and suspensions, and the audit head they reflect."""
        async with self.sessions() as s, s.begin():
            head = int((await s.execute(select(func.max(RegisterAudit.seq)))).scalar() or 0)
            miners = {m.account: _miner_info(m) for m in (await s.execute(select(Miner))).scalars()}
            by_id = {m.id: m.account for m in miners.values()}
            lic_rows = list((await s.execute(select(MinerLicense))).scalars())
            susp: dict[int, list[LicenseSuspension]] = {}
            for r in (await s.execute(select(LicenseSuspension))).scalars():
                susp.setdefault(r.license_id, []).append(r)
        licenses: dict[str, list[License]] = {}
        for r in lic_rows:
            licenses.setdefault(by_id[r.miner_id], []).append(_to_license(r, susp.get(r.id, [])))
        return Snapshot(
            miners,
            {a: tuple(v) for a, v in licenses.items()},
            head,
            require_utc(self.clock(), "clock"),
        )

    async def credited_periods(self) -> dict[str, list[tuple[datetime, datetime]]]:
        """Per account, the periods in which its shares earn (licensing.credited_intervals)."""
        snap = await self.snapshot()
        return {a: credited_intervals(snap.licenses.get(a, ())) for a in snap.miners}

    async def audit_entries(self, batch: int = 1000) -> AsyncIterator[chain.AuditEntry]:
        """All audit entries in ``seq`` order, read in batches."""
        after = -1
        while True:
            async with self.sessions() as s:
                rows = list(
                    (
                        await s.execute(
                            select(RegisterAudit)
                            .where(RegisterAudit.seq > after)
                            .order_by(RegisterAudit.seq)
                            .limit(batch)
                        )
                    ).scalars()
                )
            for r in rows:
                yield _entry(r)
            if len(rows) < batch:
                return
            after = rows[-1].seq

    async def verify_audit(self, anchor: tuple[int, str] | None = None) -> chain.ChainReport:
        entries = [e async for e in self.audit_entries()]
        return chain.verify_chain(entries, anchor)


def _miner_info(m: Miner) -> MinerInfo:
    return MinerInfo(m.id, m.account, m.legal_name, m.iin_bin, m.kind, m.contact, m.created_at)


def _to_machine(m: RegisteredMachine, account: str) -> Machine:
    return Machine(
        serial=m.serial,
        manufacturer=m.manufacturer,
        model=m.model,
        rated_hashrate=m.rated_hashrate,
        power_w=m.power_w,
        owner=account,
        data_centre=m.data_centre,
        registry_number=m.registry_number,
        registry_date=m.registry_date,
    )
