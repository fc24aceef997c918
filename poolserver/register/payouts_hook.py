"""The register's input to PPLNS: periods in which a miner's shares earn nothing.

A share at ``t`` earns only while the miner's license is active at ``t`` (not before it was
issued, not while suspended, not after revocation or expiry). The intervals are derived from
the register at allocation time, so a suspension recorded late (retroactively) also removes
the credit of shares already in the journal.
"""

from __future__ import annotations

from payouts.types import SuspensionInterval, Suspensions
from poolserver.register.licensing import credited_intervals, uncredited_periods
from poolserver.register.repository import RegisterRepository, Snapshot


def suspension_intervals(snapshot: Snapshot) -> list[SuspensionInterval]:
    out: list[SuspensionInterval] = []
    for account in sorted(snapshot.miners):
        credited = credited_intervals(snapshot.licenses.get(account, ()))
        for start, end in uncredited_periods(credited):
            out.append(SuspensionInterval(account, start, end))
    return out


async def load_suspensions(repo: RegisterRepository) -> Suspensions:
    """``payouts`` ``Suspensions`` for every registered miner (miner id = Stratum account)."""
    return Suspensions(suspension_intervals(await repo.snapshot()))
