"""The suite's own miners in the operator's register, created once (idempotent) and audited
like any change (``who`` = ``security-suite``): an honest account, an attacker, a victim, one
with a license the suspension case suspends and lifts through the real CLI, one whose license
has expired and one whose license was revoked. Never a real miner's account."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from poolserver.config import Config
from poolserver.register.iin import check_digit
from poolserver.register.repository import RegisterRepository
from poolserver.security_suite.context import Identities

WHO = "security-suite"


def suite_bin(index: int) -> str:
    """A valid BIN (legal entity, Kazakh check digit) for the suite's miner ``index``."""
    n = 0
    while True:
        body = f"2604409{index:02d}{n:02d}"
        digit = check_digit(body)
        if digit is not None:
            return body + str(digit)
        n += 1


async def ensure_identities(engine: object, config: Config, ids: Identities,
                            today: date | None = None) -> list[str]:  # fmt: skip
    """Register what is missing; returns what was added (for the protocol)."""
    repo = RegisterRepository(engine, network=config.register.network or config.chain.network)
    today = today or datetime.now(UTC).date()
    added: list[str] = []
    plan = [(ids.honest, "ok"), (ids.attacker, "ok"), (ids.victim, "ok"),
            (ids.suspend, "ok"), (ids.expired, "expired"), (ids.revoked, "revoked")]  # fmt: skip
    for i, (account, state) in enumerate(plan):
        if await repo.get_miner(account) is not None:
            continue
        await repo.add_miner(WHO, account, f"Security suite test {account} LLP", suite_bin(i))
        number = ids.license_of(account)
        if state == "expired":
            issued = today - timedelta(days=4 * 366)
            await repo.add_license(WHO, account, number, issued, "I", today - timedelta(days=30))
        else:
            await repo.add_license(WHO, account, number, today - timedelta(days=100), "I")
        if state == "revoked":
            await repo.revoke(WHO, number, datetime.now(UTC) - timedelta(days=1),
                              "security suite: a revoked license must be refused")  # fmt: skip
        added.append(f"{account} ({state})")
    return added
