"""Issue 17, hot-wallet safety: the per-payment and per-day caps hold a batch in
``awaiting_approval`` (its balances reserved, nothing sent); ``poolserver payouts approve``
(audit log + security log, with the operator's name) lets it go and the next tick sends it
exactly once; the books reconcile with the wallet at every step; a kill between approval and
send (and inside the send) never pays twice. The low-balance warning comes before payments wait.
Real embedded chain and wallet (real transactions), real SQLite and PostgreSQL, the real CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from payouts.payments import PaymentStatus
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.wallet import EmbeddedWallet
from poolserver.cli import main
from poolserver.config import config_from_dict
from poolserver.metrics import PoolCollector, Sources
from poolserver.payout_service import PayoutService
from poolserver.register.repository import RegisterRepository
from poolserver.security.log import SecurityLog
from poolserver.storage.engine import create_engine
from poolserver.storage.repository import Ledger, SqlPaymentOutbox
from stratum.stats import StratumStats
from tests.test_payout_service_kill import MINERS, ROOT, _check_paid_once, _seed


def _conf(tmp_path: Path, url: str, data: Path, **payouts: Any) -> Path:
    conf = tmp_path / "pool.toml"
    extra = "".join(f"{k} = {v}\n" for k, v in payouts.items())
    conf.write_text(
        f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{url}"\n'
        f"[payouts]\nmin_payout_sats = 1000\nmax_outputs_per_batch = 3\n{extra}"
    )
    return conf


async def _tick(url: str, data: Path, **payouts: Any) -> tuple[Any, Any]:
    """One payout tick in this process; returns (report, stats)."""
    engine = create_engine(url)
    try:
        cfg = config_from_dict(
            {
                "pool": {"data_dir": str(data)},
                "storage": {"url": url},
                "payouts": {"min_payout_sats": 1000, "max_outputs_per_batch": 3, **payouts},
            }
        )
        chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
        service = PayoutService(
            engine, cfg, chain, EmbeddedWallet(chain, data / "embedded-wallet.jsonl")
        )
        report = await service.tick()
        result = await service.reconcile()
        assert result.difference_sats == 0, result.lines()  # the books equal the wallet
        return report, service.stats
    finally:
        await engine.dispose()


async def _batches(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        return await SqlPaymentOutbox(engine).all_batches()
    finally:
        await engine.dispose()


def _sent(data: Path) -> Counter[str]:
    return Counter(
        r.comment for r in EmbeddedWallet(None, data / "embedded-wallet.jsonl").recorded()
    )


async def _logs(url: str) -> tuple[list[Any], list[Any]]:
    engine = create_engine(url)
    try:
        audit = [e async for e in RegisterRepository(engine).audit_entries()]
        security = [e async for e in SecurityLog(engine).entries()]
        return audit, security
    finally:
        await engine.dispose()


def test_per_payment_cap_holds_approve_sends_once_reject_refunds(db_url, tmp_path, caplog):
    data = tmp_path / "data"
    credits = asyncio.run(_seed(db_url, data))  # m0..m7: 100_000 + 1_111 * i sat
    caps = {"max_payment_sats": 104_000}  # m4..m7 are above it: batches 2 and 3 wait
    conf = _conf(tmp_path, db_url, data, **caps)
    caplog.set_level(logging.WARNING)
    _, stats = asyncio.run(_tick(db_url, data, **caps))
    batches = asyncio.run(_batches(db_url))
    status = {b.batch_id: b.status for b in batches}
    held = [b for b in batches if b.status is PaymentStatus.AWAITING_APPROVAL]
    assert sorted(o.miner_id for b in held for o in b.outputs) == MINERS[3:]
    assert [b.status for b in batches].count(PaymentStatus.BROADCAST) == 1
    assert all("above max_payment_sats 104000" in b.hold_reason for b in held)
    assert stats.payments_awaiting_approval == 2
    assert sum(_sent(data).values()) == 1  # only the batch under the cap was sent
    assert any("awaits an operator's approval" in r.getMessage() for r in caplog.records)

    # a second tick neither re-plans the reserved balances nor sends the held batches
    asyncio.run(_tick(db_url, data, **caps))
    assert {b.batch_id: b.status for b in asyncio.run(_batches(db_url))} == status

    # `payouts list` shows them; approve one with the operator's name
    first, second = held
    assert main(["--config", str(conf), "payouts", "list", "--status", "awaiting_approval"]) == 0
    assert (
        main(["--config", str(conf), "--operator", "dana", "payouts", "approve", first.batch_id])
        == 0
    )
    assert main(["--config", str(conf), "payouts", "approve", first.batch_id]) == 1  # not held
    assert main(["--config", str(conf), "payouts", "approve", "pay-nonexistent"]) == 1
    approved = next(b for b in asyncio.run(_batches(db_url)) if b.batch_id == first.batch_id)
    assert (approved.status, approved.approved_by) == (PaymentStatus.PENDING, "dana")
    for _ in range(2):  # sent by the next tick, exactly once
        asyncio.run(_tick(db_url, data, **caps))
    assert _sent(data)[first.comment] == 1
    after = {b.batch_id: b for b in asyncio.run(_batches(db_url))}
    assert after[first.batch_id].status is PaymentStatus.BROADCAST
    assert after[second.batch_id].status is PaymentStatus.AWAITING_APPROVAL

    # reject the other: its balances come back (and are held again by the next run)
    assert (
        main(
            [
                "--config",
                str(conf),
                "--operator",
                "dana",
                "payouts",
                "reject",
                second.batch_id,
                "--reason",
                "call the miner first",
            ]
        )
        == 0
    )
    balances = asyncio.run(_balances(db_url))
    assert {m: balances[m] for m in MINERS[6:]} == {m: credits[m] for m in MINERS[6:]}
    asyncio.run(_tick(db_url, data, **caps))
    assert second.comment not in _sent(data)

    audit, security = asyncio.run(_logs(db_url))
    decisions = [(e.who, e.action, e.subject) for e in audit if e.action.startswith("payout.")]
    assert decisions == [
        ("dana", "payout.approve", f"batch:{first.batch_id}"),
        ("dana", "payout.reject", f"batch:{second.batch_id}"),
    ]
    assert json.loads(audit[-1].new)["status"] == "failed"
    kinds = [(e.who, e.action) for e in security]
    assert ("dana", "payout.approve") in kinds and ("dana", "payout.reject") in kinds
    commands = [json.loads(e.new)["command"] for e in security if e.action == "cli.action"]
    assert commands.count("payouts approve") == 3 and "payouts list" not in commands


async def _balances(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        return await Ledger(engine).balances()
    finally:
        await engine.dispose()


def test_daily_cap_counts_what_was_released_today(db_url, tmp_path):
    data = tmp_path / "data"
    asyncio.run(_seed(db_url, data))
    # batch 1 (m0..m2) is 303_333 sat; batch 2 would take the day to 616_665 > 500_000
    caps = {"max_daily_sats": 500_000}
    asyncio.run(_tick(db_url, data, **caps))
    batches = asyncio.run(_batches(db_url))
    assert [b.status for b in batches] == [
        PaymentStatus.BROADCAST,
        PaymentStatus.AWAITING_APPROVAL,
        PaymentStatus.AWAITING_APPROVAL,
    ]
    assert (
        "303333 sat released today + 313332 sat would exceed max_daily_sats 500000"
        in batches[1].hold_reason
    )


def test_low_balance_warning_before_payments_wait(db_url, tmp_path, caplog):
    data = tmp_path / "data"
    asyncio.run(_seed(db_url, data))
    caplog.set_level(logging.INFO)
    # a floor far above the wallet: warned, while payments still go out
    report, stats = asyncio.run(_tick(db_url, data, low_balance_warning_sats=10**12))
    assert stats.wallet_low_balance and report.batches_planned == 3
    registry = CollectorRegistry()
    registry.register(PoolCollector(Sources(StratumStats(), payouts=stats)))
    exported = generate_latest(registry).decode()
    assert "qazpool_wallet_low_balance 1.0" in exported
    assert "\nqazpool_wallet_required_satoshis " in exported
    assert "\nqazpool_wallet_spendable_satoshis " in exported
    assert any(
        r.levelname == "WARNING" and "hot wallet low" in r.getMessage() for r in caplog.records
    )
    # no floor, everybody paid: nothing is due, no warning
    caplog.clear()
    report, stats = asyncio.run(_tick(db_url, data))
    assert not stats.wallet_low_balance and stats.wallet_required_sats == 0
    assert not any("hot wallet low" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "nth"), [("after_send", 1), ("after_update", 2)])
def test_kill_between_approval_and_send_never_pays_twice(db_url, tmp_path, point, nth):
    data = tmp_path / "data"
    credits = asyncio.run(_seed(db_url, data))
    caps = {"max_payment_sats": 99_999}  # every output is above it: all three batches wait
    out = _run_through_with(db_url, data, caps)
    assert "3 new payment batch" in out
    held = asyncio.run(_batches(db_url))
    assert {b.status for b in held} == {PaymentStatus.AWAITING_APPROVAL}
    assert not _sent(data)
    conf = _conf(tmp_path, db_url, data, **caps)
    for b in held:
        assert (
            main(["--config", str(conf), "--operator", "dana", "payouts", "approve", b.batch_id])
            == 0
        )
    _kill_at_with(db_url, data, point, nth, caps)  # SIGKILL inside the approved batches' send
    _run_through_with(db_url, data, caps)
    _check_paid_once(db_url, data, credits)
    assert "0 new payment batch" in _run_through_with(db_url, data, caps)
    _check_paid_once(db_url, data, credits)


def _run_through_with(url: str, data: Path, caps: dict[str, int]) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.payout_kill_worker",
            url,
            str(data),
            "none",
            "1",
            "0",
            json.dumps(caps),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _kill_at_with(url: str, data: Path, point: str, nth: int, caps: dict[str, int]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.payout_kill_worker",
            url,
            str(data),
            point,
            str(nth),
            "0",
            json.dumps(caps),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.startswith("START"):
        line = proc.stdout.readline()
    assert line.startswith("AT "), f"worker did not reach {point} #{nth}: {line!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
