"""The demo's miners in the register: valid BINs, licenses, payout addresses and machines, and
one license suspended so its refusal at mining.authorize is visible. Idempotent (a second demo
run on the same folder keeps the register it has)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from poolserver.register.csvrows import HardwareRow
from poolserver.register.iin import check_digit
from stratum.address import encode_segwit

OPERATOR = "demo"


@dataclass(frozen=True)
class DemoMiner:
    account: str
    legal_name: str
    firmware: str  # connect sequence: cgminer | bitaxe | whatsminer | cpuminer
    user_agent: str
    manufacturer: str
    model: str
    rated_hashrate: int  # H/s in the register (the real machine's figure)
    power_w: int
    sim_hashrate: float  # H/s the simulated machine grinds (scaled down for one laptop)
    suspended: bool = False
    cpu_port: bool = False


MINERS: tuple[DemoMiner, ...] = (
    DemoMiner(
        "aigerim",
        "Aigerim Data LLP",
        "cgminer",
        "bmminer/2.0.0",
        "Bitmain",
        "Antminer S19 XP",
        141_000_000_000_000,
        3010,
        30_000.0,
    ),
    DemoMiner(
        "bolat",
        "Bolat Hash LLP",
        "bitaxe",
        "bitaxe/BM1370/v2.4.2",
        "Bitaxe",
        "Gamma 601",
        1_200_000_000_000,
        17,
        18_000.0,
    ),
    DemoMiner(
        "dana",
        "Dana Mining LLP",
        "whatsminer",
        "whatsminer/v1.0",
        "MicroBT",
        "Whatsminer M50S",
        126_000_000_000_000,
        3276,
        24_000.0,
    ),
    DemoMiner(
        "erlan",
        "Erlan Compute LLP",
        "cpuminer",
        "cpuminer/2.5.1",
        "Generic",
        "x86-64 CPU",
        20_000_000,
        65,
        6_000.0,
        cpu_port=True,
    ),
    DemoMiner(
        "zhanar",
        "Zhanar Energy LLP",
        "cgminer",
        "cgminer/4.11.1",
        "Bitmain",
        "Antminer S21",
        200_000_000_000_000,
        3500,
        20_000.0,
        suspended=True,
    ),
)


def demo_bin(index: int) -> str:
    """A valid BIN (entity type 4 in the 5th digit, Kazakh check digit) per demo miner."""
    n = 0
    while True:
        body = f"2104400{index:02d}{n:02d}"
        digit = check_digit(body)
        if digit is not None:
            return body + str(digit)
        n += 1


def demo_address(account: str) -> str:
    """A regtest P2WPKH address of the miner (never the pool's coinbase address)."""
    program = hashlib.sha256(f"qazpool demo miner {account}".encode()).digest()[:20]
    return encode_segwit("bcrt", 0, program)


def license_number(account: str) -> str:
    return f"KZ-DEMO-{account.upper()}"


async def seed_register(repo: Any, today: date, now: datetime | None = None) -> bool:
    """Register the demo miners unless they are there already; True when it added them."""
    if await repo.get_miner(MINERS[0].account) is not None:
        return False
    now = now or datetime.now(UTC)
    await repo.set_pool_fee(OPERATOR, 100)
    for i, m in enumerate(MINERS):
        await repo.add_miner(OPERATOR, m.account, m.legal_name, demo_bin(i),
                             contact=f"{m.account}@example.kz")  # fmt: skip
        await repo.set_payout_address(OPERATOR, m.account, demo_address(m.account))
        await repo.add_license(OPERATOR, m.account, license_number(m.account),
                               today - timedelta(days=200), "I")  # fmt: skip
        await repo.add_machine(OPERATOR, HardwareRow(
            serial=f"DEMO-{m.account.upper()}-0001", manufacturer=m.manufacturer, model=m.model,
            rated_hashrate=m.rated_hashrate, power_w=m.power_w, account=m.account,
            data_centre="Ekibastuz DC-1", registry_number=f"MR-2026-{i + 1:04d}",
            registry_date=today - timedelta(days=190)))  # fmt: skip
        if m.suspended:
            await repo.suspend(OPERATOR, license_number(m.account), now - timedelta(days=1),
                               "demo: reporting obligations not met", months=3)  # fmt: skip
    return True


async def seed_web_token(engine: Any, data_dir: Path, account: str) -> str:
    """The demo miner's read token for the web page: the one kept in the demo folder while it is
    still live in the database, else a new one (written there 0600 for the next run)."""
    from poolserver.demo.settings import WEB_TOKEN_FILE
    from poolserver.web.tokens import WebTokens

    tokens = WebTokens(engine)
    path = data_dir / WEB_TOKEN_FILE
    if path.exists():
        kept = path.read_text().strip()
        if kept and await tokens.check(account, kept):
            return kept
    token = await tokens.issue(account, "poolserver demo")
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token
