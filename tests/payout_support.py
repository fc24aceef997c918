"""Shared set-up for the payout service tests: a register with miners, shares through the real
journal, and a block found through the real BlockSubmitter on the embedded chain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from poolserver.bitcoin.blocks import BlockSubmitter, JsonlFoundBlockStore
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.found_blocks import DurableFoundBlockStore, SqlFoundBlockStore
from poolserver.config import Config, config_from_dict
from poolserver.register.repository import RegisterRepository
from poolserver.register.timeutil import kz_date
from poolserver.storage.journal import ShareJournal
from stratum.hashcore import sha256d
from stratum.interfaces import AcceptedShare, BlockCandidate
from tests.test_embedded_chain import EN1, EN2, _grind, _job
from tests.test_register_rules import constructed_numbers

ADDR = {
    "alice": "bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg",
    "bob": "mfoA4eYuzEFAU94bkMKPH6UF3i5qcw7zJ8",
    "carol": "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua",
}
IDS = constructed_numbers(6, seed=23)
# Blocks by the rest of the network pay here (not the pool's coinbase address, which the
# embedded wallet holds coins of: those would be unexplained deposits).
OTHER_MINER = "bcrt1qyt3hpyd3d7ufvruar9zxte5en2u3cc4cvqut6s"
SHARE_DIFF = 1e-10  # regtest bits 207fffff: D = 4.66e-10, the window k*D holds ~9 such shares


def config(tmp_path: Path, db_url: str, **payouts: Any) -> Config:
    data = {"pool": {"data_dir": str(tmp_path / "data")}, "storage": {"url": db_url},
            "payouts": {"allocation_delay_s": 0.0, **payouts}}  # fmt: skip
    return config_from_dict(data)


async def seed_register(engine: Any) -> RegisterRepository:
    """alice and bob licensed (for a year now) with addresses; bob pays his own 0 % fee; the
    pool-wide dated fee is 2.5 %; carol registered with an address but no license (her shares
    earn nothing)."""
    repo = RegisterRepository(engine, network="regtest")
    for i, name in enumerate(("alice", "bob", "carol")):
        await repo.add_miner("op", name, f"{name.title()} LLP", IDS[i])
        await repo.set_payout_address("op", name, ADDR[name])
    await repo.add_license("op", "alice", "KZ-A1", licensed_since(), "I")
    await repo.add_license("op", "bob", "KZ-B1", licensed_since(), "I")
    await repo.set_miner_fee("op", "bob", 0)
    await repo.set_pool_fee("op", 250)
    return repo


def share_plan(start: datetime) -> list[tuple[str, float, datetime]]:
    """Oldest first: bob's old work, then alice, bob and carol interleaved."""
    plan = [("bob", SHARE_DIFF, start + timedelta(seconds=i)) for i in range(4)]
    pattern = ["alice", "carol", "bob", "alice", "carol", "alice", "bob", "alice", "carol",
               "alice", "bob", "carol"]  # fmt: skip
    plan += [(m, SHARE_DIFF, start + timedelta(seconds=10 + i)) for i, m in enumerate(pattern)]
    return plan


async def journal_shares(engine: Any, spool: Path, plan: list[tuple[str, float, datetime]]
                         ) -> None:  # fmt: skip
    journal = ShareJournal(engine, spool, flush_interval_ms=1.0)
    await journal.start()
    try:
        for n, (account, diff, at) in enumerate(plan):
            await journal.put(AcceptedShare(
                account=account, worker="rig", session_id="f000000d", peer="127.0.0.1",
                job_id="1", height=1, difficulty=diff, share_hash=n.to_bytes(32, "little"),
                is_block=False, created_at=at))  # fmt: skip
    finally:
        await journal.close()


def expected_weights(plan: list[tuple[str, float, datetime]], window: Fraction,
                     excluded: set[str]) -> dict[str, Fraction]:  # fmt: skip
    """An independent walk: newest first, excluded miners skipped, the edge share partial."""
    weights: dict[str, Fraction] = {}
    left = window
    for account, diff, _at in sorted(plan, key=lambda p: p[2], reverse=True):
        if account in excluded or left <= 0:
            continue
        take = min(Fraction(diff), left)
        weights[account] = weights.get(account, Fraction(0)) + take
        left -= take
    return weights


def durable_store(engine: Any, tmp_path: Path) -> DurableFoundBlockStore:
    return DurableFoundBlockStore(SqlFoundBlockStore(engine),
                                  JsonlFoundBlockStore(tmp_path / "found-blocks.jsonl"))


async def find_block(chain: EmbeddedChain, store: Any, account: str = "alice") -> str:
    """A block found by ``account`` through the real submitter; returns its hash."""
    job = _job(chain)
    header = _grind(job)
    candidate = BlockCandidate(job=job, extranonce1=EN1, extranonce2=EN2, header=header,
                               block_hash=sha256d(header), account=account, worker="rig")
    submitter = BlockSubmitter(store, [chain], retry_window_s=1.0)
    await submitter.block_found(candidate)
    (outcome,) = await submitter.drain()
    return outcome.block.block_hash


def utcnow() -> datetime:
    return datetime.now(UTC)


def licensed_since(days_ago: int = 365) -> date:
    """A license issue date (Kazakhstan calendar) ``days_ago`` days before today: the tests run
    with the real clock, so a fixed date would expire (3 years) and fail them on a later day."""
    return kz_date(utcnow()) - timedelta(days=days_ago)

