"""The repository of firmware probe results (``probe_results``, SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from firmware_probe import Outcome, ProbeResult
from poolserver.probe_verdict import Verdict
from poolserver.storage.probe_models import ProbeResultRow


def machine_key(result: ProbeResult) -> str:
    """A machine across probes: its serial, else its MAC, else its address."""
    if result.serial:
        return f"serial:{result.serial}"
    if result.mac:
        return f"mac:{result.mac}"
    return f"ip:{result.host}"


@dataclass(frozen=True, slots=True)
class StoredProbe:
    id: int
    probed_at: datetime
    account: str
    worker: str
    user_agent: str
    trigger: str
    machine_key: str
    verdict: str
    findings: list[dict[str, Any]]
    result: ProbeResult


def _clip(value: str | None, n: int) -> str | None:
    return value[:n] if isinstance(value, str) else value


class ProbeStore:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def save(
        self,
        result: ProbeResult,
        verdict: Verdict,
        *,
        account: str = "",
        worker: str = "",
        user_agent: str = "",
        trigger: str = "authorize",
        at: datetime | None = None,
    ) -> int:
        data = result.to_dict()
        evidence = data.pop("evidence")
        values = dict(
            probed_at=at or datetime.now(UTC),
            host=result.host[:64],
            account=account[:64],
            worker=worker[:128],
            user_agent=user_agent[:128],
            trigger=trigger,
            outcome=result.outcome.value,
            machine_key=machine_key(result)[:80],
            vendor=_clip(result.vendor, 64),
            model=_clip(result.model, 64),
            firmware_family=_clip(result.firmware_family, 32),
            firmware_version=_clip(result.firmware_version, 64),
            serial=result.serial,
            mac=result.mac,
            rated_hashrate=result.rated_hashrate,
            hashrate=result.hashrate,
            power_w=result.power_w,
            uptime_s=result.uptime_s,
            detail=result.detail[:1000],
            verdict=verdict.summary[:200],
            identity=data,
            findings=verdict.as_json(),
            evidence=evidence,
        )
        async with self.engine.begin() as conn:
            res = await conn.execute(insert(ProbeResultRow).values(**values))
            return int(res.inserted_primary_key[0])

    async def latest(self, account: str | None = None) -> list[StoredProbe]:
        """The latest probe of every machine (optionally of one account's workers)."""
        t = ProbeResultRow.__table__
        newest = select(func.max(t.c.id)).group_by(t.c.machine_key)
        if account is not None:
            newest = newest.where(t.c.account == account)
        q = select(t).where(t.c.id.in_(newest.scalar_subquery())).order_by(t.c.host, t.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_stored(r) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Delete results probed before ``before``, except each machine's latest; returns the
        number of rows deleted."""
        t = ProbeResultRow.__table__
        newest = select(func.max(t.c.id)).group_by(t.c.machine_key).scalar_subquery()
        async with self.engine.begin() as conn:
            res = await conn.execute(delete(t).where(t.c.probed_at < before, t.c.id.not_in(newest)))
            return int(res.rowcount or 0)

    async def account_hashrate(self, account: str) -> int:
        """What the account's machines report themselves (latest probe of each, identified)."""
        total = 0
        for p in await self.latest(account):
            if p.result.outcome in (Outcome.IDENTIFIED, Outcome.PARTIAL) and p.result.hashrate:
                total += p.result.hashrate
        return total


def _stored(r: Any) -> StoredProbe:
    identity = dict(r["identity"])
    identity["evidence"] = dict(r["evidence"] or {})
    at = r["probed_at"]
    return StoredProbe(
        id=r["id"],
        probed_at=at if at.tzinfo else at.replace(tzinfo=UTC),
        account=r["account"],
        worker=r["worker"],
        user_agent=r["user_agent"],
        trigger=r["trigger"],
        machine_key=r["machine_key"],
        verdict=r["verdict"],
        findings=list(r["findings"] or []),
        result=ProbeResult.from_dict(identity),
    )
