"""The payout service: found block → frozen allocation → ledger → payments (the I/O edge).

The money rules are pure functions in ``payouts/`` (see ``payouts/README.md``); this module reads
their inputs from the database, the register and the chain, and stores what they return. One
``tick()``, run every ``[payouts].tick_interval_s`` inside ``poolserver run`` (or by hand with
``poolserver payouts run-once``), does in order:

1. **Import** found blocks written to the JSONL fallback while the database was down.
2. **Allocate** every found block the nodes took (``accepted``; also ``inconclusive``, stored
   off the best chain, in case it joins the main chain, and ``orphaned``) that has none yet and
   was found at least ``allocation_delay_s`` ago, and only while this machine's share spool is empty
   (shares acked during a database outage are all in the database): PPLNS window ``k × D``
   with ``D`` exactly from the block header's ``bits``, shares (and hourly rollups) from the
   journal, suspensions from the register (license not active → no credit), the fee in force
   at ``found_at`` (the miner's own dated rate from the register, else the pool's dated rate
   from ``fee_rates``, else ``[payouts] pool_fee_bps``), finder bonus. The allocation is
   frozen (``Allocations.freeze``): computed once, the same bytes forever.
3. **Chain**: asks the node (``getblock``) for each allocated block's confirmations (``-1`` =
   not in the main chain) and appends the ledger entries ``payouts.ledger.block_entries`` says
   are missing: credit at ``maturity_confirmations``, reversal when a credited block leaves the
   main chain. Blocks deeper than twice the maturity are no longer asked about.
4. **Pay** (``payouts.payments.run_payments``): finish unfinished batches (reconcile by comment),
   then plan new ones (``min_payout_sats``, ``max_outputs_per_batch``) to the payout address in
   force now (register's dated history, addresses of the configured network only), within the
   wallet's **spendable** balance (a coinbase spends at depth 101: a payment waits for it instead
   of being refused). The fee of every sent transaction is recorded (``fee_policy``). An output
   the wallet refuses alone is held (``payouts balances`` shows why); the others are paid. Only
   after a refusal for lack of funds does planning pause for ``payment_retry_after_s``.
5. **Retention**: every ``retention_interval_s`` roll raw shares older than
   ``[storage].retention_days`` up into exact hourly sums.
6. **Reconcile** (``reconcile``, as ``poolserver payouts reconcile``): on the first tick and then
   every ``reconcile_interval_s`` the books are checked against the wallet; the last difference
   (satoshis) and its time are kept in ``PayoutStats`` for the metrics (the payout leader only:
   a process that cannot take the lock drops its figure).

Several instances on one database (``poolserver run`` with a ``PayoutLeader``): only the holder
of the payout lease ticks, a new leader ticks at once after taking over, and every new batch and
every send is fenced by the lease (``poolserver/payout_leader.py``; a tick whose fence fails stops
with ``LeadershipLost``, having sent nothing). The whole tick also runs under a lock (PostgreSQL:
session advisory lock; SQLite: ``flock`` on a file beside the database), so a CLI run-once never
ticks beside the pool's: comment reconciliation protects against crashes, not against a second
concurrent sender. A tick that cannot take the lock, or does not lead, does nothing.
Every step is idempotent and each state change is committed before the next external action, so
a tick may be killed anywhere and simply run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from payouts.allocation import Allocation, allocate
from payouts.fees import FeePolicy, FeeRate, FeeSchedule
from payouts.ledger import ChainStatus, EntryKind, block_entries
from payouts.payments import (
    LeadershipLost,
    PaymentTransport,
    PayoutParams,
    funds_needed,
    run_payments,
)
from payouts.pplns import PplnsParams, UnderfillPolicy
from payouts.reconcile import Reconciliation, ledger_by_kind, live_credited_blocks
from payouts.txfee import DUST_LIMIT_SATS, TxFeePolicy
from payouts.types import (
    BlockRecord,
    RollupRecord,
    ShareRecord,
    Suspensions,
    difficulty_from_bits,
    exact_difficulty,
    require_miner_id,
)
from poolserver.aio import cancel_and_wait, wait_event
from poolserver.bitcoin.node import Rpc, RpcError
from poolserver.config import Config, ConfigError, PayoutsConfig
from poolserver.payout_leader import FencedOutbox, PayoutLeader
from poolserver.register.history import Dated, value_at
from poolserver.register.payouts_hook import load_suspensions
from poolserver.register.repository import RegisterRepository
from poolserver.storage.models import FeeRate as FeeRateRow
from poolserver.storage.models import FoundBlock
from poolserver.storage.register_models import Miner, MinerFeeRate, PayoutAddress
from poolserver.storage.repository import (
    Allocations,
    FoundBlocks,
    Ledger,
    ShareHistory,
    SqlPaymentOutbox,
)
from poolserver.storage.retention import RollupReport, retention_cutoff, roll_up
from poolserver.storage.spool import Spool
from poolserver.storage_config import storage_settings

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RECONCILE_INTERVAL_S = 600.0  # periodic reconcile (reads the whole ledger and the wallet)
LOCK_KEY = 0x71617A7061796F75  # "qazpayou": pg_advisory_lock key of the payout service
ALLOCATABLE = ("accepted", "inconclusive", "orphaned")
RPC_INVALID_ADDRESS_OR_KEY = -5  # getblock: "Block not found"


def pplns_params(cfg: PayoutsConfig) -> PplnsParams:
    try:
        k = exact_difficulty(cfg.pplns_k, "payouts.pplns_k")
        return PplnsParams(k=k, underfill=UnderfillPolicy(cfg.underfill_policy))
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc) if "payouts." in str(exc) else
                          f"payouts.underfill_policy: {exc}") from None  # fmt: skip


def payout_params(cfg: PayoutsConfig) -> PayoutParams:
    if cfg.fee_policy not in tuple(TxFeePolicy):
        raise ConfigError(f"payouts.fee_policy: {cfg.fee_policy!r} is not one of "
                          + ", ".join(p.value for p in TxFeePolicy))
    if isinstance(cfg.min_payout_sats, int) and cfg.min_payout_sats < DUST_LIMIT_SATS:
        raise ConfigError(
            f"payouts.min_payout_sats: {cfg.min_payout_sats} sat is below the dust limit "
            f"{DUST_LIMIT_SATS} sat (P2PKH, the strictest of the address types paid to); the "
            "wallet would refuse such an output")
    if not isinstance(cfg.fee_rate_sat_vb, int) or isinstance(cfg.fee_rate_sat_vb, bool) \
            or cfg.fee_rate_sat_vb < 1:
        raise ConfigError(f"payouts.fee_rate_sat_vb: must be an integer >= 1, got "
                          f"{cfg.fee_rate_sat_vb!r}")
    try:
        return PayoutParams(min_payout_sats=cfg.min_payout_sats,
                            max_outputs=cfg.max_outputs_per_batch,
                            confirmations_required=cfg.payment_confirmations,
                            fee_policy=TxFeePolicy(cfg.fee_policy),
                            fee_reserve_sats=cfg.fee_reserve_sats,
                            max_payment_sats=cfg.max_payment_sats,
                            max_daily_sats=cfg.max_daily_sats)  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).replace("payouts.max_outputs", "payouts.max_outputs_per_batch")
                          .replace("confirmations_required", "payment_confirmations")) from None


def eligible_weight(shares: Iterable[ShareRecord], rollups: Iterable[RollupRecord],
                    suspensions: Suspensions) -> Fraction:  # fmt: skip
    """Work that can count in a window (suspended shares take no room)."""
    total = sum((s.difficulty for s in shares if not suspensions.is_suspended(s.miner_id, s.time)),
                Fraction(0))  # fmt: skip
    for r in rollups:
        if suspensions.coverage(r.miner_id, r.period_start, r.period_end) != "full":
            total += r.difficulty_sum
    return total


@dataclass
class PayoutStats:
    """Figures of the payment step for the metrics exporter (updated every tick that pays)."""

    wallet_spendable_sats: int = -1  # the budget of the last run (-1: the wallet cannot say)
    # what the next payment run needs (payable balances + fee reserve per batch), and whether
    # the spendable balance after the run is below it or below low_balance_warning_sats
    wallet_required_sats: int = 0
    wallet_low_balance: bool = False
    payments_awaiting_approval: int = 0  # batches the hot-wallet caps hold for an operator
    payments_waiting_for_funds: int = 0  # miners over the threshold the wallet cannot fund yet
    payouts_held: int = 0  # miners whose payout is held (wallet refused their output alone)
    batches_planned_total: int = 0
    outputs_held_total: int = 0  # holds placed by this process
    underfunded_refusals_total: int = 0  # wallet refusals for lack of funds (planning paused)
    # the last reconcile run under the lock: wallet - books in satoshis (None: not run by this
    # process, or it is not the payout leader any more), and its Unix time
    wallet_ledger_difference_sats: int | None = None
    leader: bool = False  # the last tick held the payout lock (its gauges are the pool's)
    lease: Any = None  # payout_leader.LeaderStats (several instances: who leads, takeovers)
    reconcile_last_run_at: float = 0.0
    reconcile_runs_total: int = 0
    reconcile_errors_total: int = 0


@dataclass
class TickReport:
    locked: bool = True
    imported: int = 0
    allocated: list[str] = field(default_factory=list)
    credits: int = 0
    reversals: int = 0
    batches_planned: int = 0
    payments_skipped: str = ""
    held: list[str] = field(default_factory=list)
    retention: RollupReport | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.locked:
            return "another process holds the payout lock (or leads the payouts); nothing done"
        parts = [f"imported {self.imported} block(s)", f"allocated {len(self.allocated)}",
                 f"{self.credits} credit and {self.reversals} reversal entries",
                 f"{self.batches_planned} new payment batch(es)"]  # fmt: skip
        if self.payments_skipped:
            parts.append(f"payments: {self.payments_skipped}")
        if self.held:
            parts.append(f"payouts held: {', '.join(self.held)}")
        if self.retention is not None:
            parts.append(f"retention rolled up {self.retention.shares} share(s)")
        if self.errors:
            parts.append(f"{len(self.errors)} error(s): " + "; ".join(self.errors))
        return ", ".join(parts)


async def spendable_budget(transport: PaymentTransport) -> int | None:
    """The wallet's spendable satoshis, or None when the transport cannot say."""
    spendable = getattr(transport, "spendable", None)
    return None if spendable is None else int(await spendable())


@contextlib.asynccontextmanager
async def payout_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """Yields True if this process may run the payout tick (the lock is held until exit)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # a holder that vanished from the network (no FIN) loses the lock within ~11 s,
            # not after the kernel's two-hour keepalive default (no effect on a Unix socket)
            for setting in ("tcp_keepalives_idle = 5", "tcp_keepalives_interval = 2",
                            "tcp_keepalives_count = 3"):  # fmt: skip
                await conn.execute(text(f"SET {setting}"))
            got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                           {"k": LOCK_KEY})).scalar())  # fmt: skip
            try:
                yield got
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        return
    database = engine.url.database or "qazpool"
    path = Path(f"{database}.payouts.lock")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class PayoutService:
    def __init__(
        self,
        engine: AsyncEngine,
        config: Config,
        chain: Rpc,
        transport: PaymentTransport | None,
        *,
        found_store: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reconcile_interval_s: float = RECONCILE_INTERVAL_S,
        leader: PayoutLeader | None = None,
    ) -> None:
        self.engine = engine
        self.reconcile_interval_s = reconcile_interval_s
        self.config = config
        self.cfg = config.payouts
        self.chain = chain
        self.transport = transport
        self.found_store = found_store  # DurableFoundBlockStore: its JSONL fallback is imported
        self.clock = clock
        self.network = config.register.network or config.chain.network
        self.pplns = pplns_params(self.cfg)
        self.payout = payout_params(self.cfg)
        if self.cfg.maturity_confirmations < 1:
            raise ConfigError("payouts.maturity_confirmations: must be >= 1")
        if self.cfg.tick_interval_s <= 0:
            raise ConfigError("payouts.tick_interval_s: must be > 0")
        if not isinstance(self.cfg.low_balance_warning_sats, int) \
                or self.cfg.low_balance_warning_sats < 0:
            raise ConfigError("payouts.low_balance_warning_sats: must be an integer >= 0")
        self.blocks = FoundBlocks(engine)
        self.allocations = Allocations(engine)
        self.ledger = Ledger(engine)
        self.history = ShareHistory(engine)
        self.register = RegisterRepository(engine, network=self.network)
        # several instances on one database: only the lease holder ticks, its sends fenced
        self.leader = leader
        self.outbox = SqlPaymentOutbox(engine, self.payout_addresses) if leader is None \
            else FencedOutbox(engine, self.payout_addresses, leader)
        self._wake = asyncio.Event()
        self._spool = Spool(storage_settings(config).spool_path())
        self._paused_until: datetime | None = None
        self.stats = PayoutStats(lease=leader.stats if leader is not None else None)
        self._last_retention: datetime | None = None
        self._last_reconcile: float | None = None  # monotonic
        self._task: asyncio.Task[None] | None = None

    # ---- inputs ---------------------------------------------------------------------------

    async def fee_policy(self, at: datetime, miners: Iterable[str]) -> FeePolicy:
        """Rates in force at ``at``: the pool's dated rates (fee_rates) over the configured
        fallback, and each miner's own dated rate where the register has one."""
        async with self.engine.connect() as conn:
            pool_rows = (await conn.execute(select(FeeRateRow.effective_from,
                                                   FeeRateRow.fee_bps))).all()  # fmt: skip
            wanted = sorted(set(miners))
            own_rows = (await conn.execute(
                select(Miner.account, MinerFeeRate.effective_from, MinerFeeRate.fee_bps,
                       MinerFeeRate.id)
                .join(Miner, Miner.id == MinerFeeRate.miner_id)
                .where(Miner.account.in_(wanted)))).all() if wanted else []  # fmt: skip
        rates = {EPOCH: self.cfg.pool_fee_bps}
        for effective_from, bps in pool_rows:
            rates[effective_from] = bps
        pool = FeeSchedule(tuple(FeeRate(t, bps) for t, bps in rates.items()))
        own: dict[str, list[Dated[int]]] = {}
        for account, effective_from, bps, seq in own_rows:
            own.setdefault(account, []).append(Dated(effective_from, bps, seq))
        per_miner = {}
        for account, history in own.items():
            bps_at = value_at(history, at)
            if bps_at is not None:
                per_miner[account] = FeeSchedule.flat(bps_at, EPOCH)
        return FeePolicy(pool=pool, per_miner=per_miner,
                         finder_bonus_bps=self.cfg.finder_bonus_bps)  # fmt: skip

    async def payout_addresses(self, at: datetime) -> dict[str, str]:
        """Each registered miner's payout address in force at ``at`` (this network's only)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Miner.account, PayoutAddress.effective_from, PayoutAddress.address,
                       PayoutAddress.id)
                .join(Miner, Miner.id == PayoutAddress.miner_id)
                .where(PayoutAddress.network == self.network))).all()  # fmt: skip
        by_miner: dict[str, list[Dated[str]]] = {}
        for account, effective_from, address, seq in rows:
            by_miner.setdefault(account, []).append(Dated(effective_from, address, seq))
        out = {}
        for account, history in sorted(by_miner.items()):
            address = value_at(history, at)
            if address:
                out[account] = address
        return out

    @staticmethod
    def block_record(row: Any) -> BlockRecord:
        try:
            finder: str | None = require_miner_id(row.account, "finder")
        except (TypeError, ValueError):
            finder = None
        return BlockRecord(height=row.height, block_hash=row.block_hash,
                           reward_sats=row.coinbase_value,
                           network_difficulty=difficulty_from_bits(row.bits),
                           found_at=row.found_at, finder=finder)  # fmt: skip

    async def compute_allocation(self, row: Any) -> Allocation:
        """The allocation of a stored found block, from the database as it is now (pure
        function of the journal, the register and the config; nothing is written)."""
        block = self.block_record(row)
        suspensions = await load_suspensions(self.register)
        window = self.pplns.k * block.network_difficulty
        need = window
        while True:
            shares, rollups = await self.history.pplns_inputs(block.found_at, need)
            fetched = sum((s.difficulty for s in shares), Fraction(0)) + sum(
                (r.difficulty_sum for r in rollups), Fraction(0))
            eligible = eligible_weight(shares, rollups, suspensions)
            if eligible >= window or fetched < need:
                break
            need += window - eligible  # suspended work took no room: reach further back
        miners = {s.miner_id for s in shares} | {r.miner_id for r in rollups}
        if block.finder:
            miners.add(block.finder)
        fees = await self.fee_policy(block.found_at, miners)
        return allocate(block, shares, fees, rollups=rollups, params=self.pplns,
                        suspensions=suspensions)  # fmt: skip

    # ---- steps ----------------------------------------------------------------------------

    async def allocate_blocks(self, now: datetime, report: TickReport) -> None:
        ready = now - timedelta(seconds=self.cfg.allocation_delay_s)
        if await asyncio.to_thread(self._spool.has_data):
            # shares acked while the database was down are still in the spool: a window read
            # now could miss some of them, so wait until the journal has replayed it
            log.warning("allocation deferred: the share spool %s is not replayed yet",
                        self._spool.dir)  # fmt: skip
            report.errors.append("allocation deferred: share spool not replayed yet")
            return
        for row in await self.blocks.unallocated(ALLOCATABLE):
            if row.found_at > ready:
                continue
            try:
                allocation = await self.compute_allocation(row)
                await self.allocations.freeze(allocation)
            except Exception as exc:
                log.error("block %s: allocation failed, retried next tick: %s",
                          row.block_hash, exc)  # fmt: skip
                report.errors.append(f"allocate {row.block_hash[:16]}: {exc}")
                continue
            report.allocated.append(row.block_hash)
            log.warning("block %s height %d allocated (%s, %d miner(s), inputs %s)",
                        row.block_hash, row.height, allocation.outcome.value,
                        len(allocation.lines), allocation.inputs_hash[:16])  # fmt: skip

    async def chain_status(self, block_hash: str) -> ChainStatus | None:
        try:
            info = await self.chain.call("getblock", block_hash, 1)
        except RpcError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return None  # the node does not know it (yet): state unknown
            raise
        conf = info.get("confirmations") if isinstance(info, dict) else None
        if not isinstance(conf, int) or isinstance(conf, bool) or conf == 0:
            return None
        return ChainStatus(block_hash, in_main_chain=conf > 0, confirmations=max(conf, 0))

    async def update_chain(self, report: TickReport) -> None:
        # blocks deeper than the horizon are settled: neither read nor asked about again
        undecided = await self.allocations.undecided(2 * self.cfg.maturity_confirmations)
        allocations = {a.block.block_hash: a for a, _, _ in undecided}
        statuses: dict[str, ChainStatus] = {}
        for allocation, status, confirmations in undecided:
            block_hash = allocation.block.block_hash
            try:
                st = await self.chain_status(block_hash)
            except Exception as exc:
                report.errors.append(f"chain {block_hash[:16]}: {exc}")
                log.warning("block %s: chain state unknown this tick (%s)", block_hash, exc)
                continue
            if st is None:
                continue
            statuses[block_hash] = st
            new_status = "accepted" if st.in_main_chain else "orphaned"
            if new_status != status or st.confirmations != confirmations:
                if new_status != status:
                    log.warning("block %s: %s -> %s (%d confirmations)", block_hash, status,
                                new_status, st.confirmations)  # fmt: skip
                async with self.engine.begin() as conn:
                    await conn.execute(
                        FoundBlock.__table__.update()
                        .where(FoundBlock.block_hash == block_hash)
                        .values(status=new_status, confirmations=st.confirmations,
                                updated_at=datetime.now(UTC)))  # fmt: skip
        if not statuses:
            return
        existing = await self.ledger.block_entries(list(statuses))
        new = block_entries([allocations[h] for h in statuses], statuses, existing,
                            self.cfg.maturity_confirmations)  # fmt: skip
        if new:
            await self.ledger.append(new)
            for e in new:
                if e.kind is EntryKind.CREDIT:
                    report.credits += 1
                else:
                    report.reversals += 1
            log.warning("ledger: %d credit and %d reversal entries appended",
                        sum(e.kind is EntryKind.CREDIT for e in new),
                        sum(e.kind is EntryKind.REVERSAL for e in new))  # fmt: skip

    async def pay(self, now: datetime, report: TickReport) -> None:
        if self.transport is None or not self.cfg.payments_enabled:
            report.payments_skipped = "disabled"
            return
        if self._paused_until is not None and now < self._paused_until:
            # finish what is in flight, plan nothing new
            report.payments_skipped = f"paused until {self._paused_until.isoformat()}"
            params = PayoutParams(min_payout_sats=2**62, max_outputs=1,
                                  confirmations_required=self.payout.confirmations_required)
        else:
            params = self.payout
        # plan only what the wallet can fund now (a coinbase is spendable at depth 101)
        budget = await spendable_budget(self.transport)
        plan = await run_payments(self.outbox, self.transport, params, now, budget=budget)
        report.batches_planned += len(plan.batches)
        self.stats.wallet_spendable_sats = -1 if budget is None else budget
        self.stats.batches_planned_total += len(plan.batches)
        self.stats.outputs_held_total += len(plan.held)
        self.stats.underfunded_refusals_total += plan.underfunded is not None
        self.stats.payments_waiting_for_funds = sum(
            reason.startswith("waiting for spendable") for _, reason in plan.skipped)
        self.stats.payouts_held = len(await self.outbox.holds())
        for miner, reason in plan.skipped:
            log.warning("payout to %s skipped: %s", miner, reason)
        for batch in plan.awaiting:
            log.warning("payment batch %s (%d sat to %d output(s)) awaits an operator's approval: "
                        "%s; `poolserver payouts approve %s` sends it", batch.batch_id,
                        batch.total_sats, len(batch.outputs), batch.hold_reason,
                        batch.batch_id)  # fmt: skip
        self.stats.payments_awaiting_approval = len(await self.outbox.awaiting())
        await self.check_low_balance(now)
        for miner, reason in plan.held:
            log.error("payout to %s held: %s (released by `poolserver payouts release %s` or a "
                      "new payout address)", miner, reason, miner)  # fmt: skip
            report.held.append(miner)
        if plan.underfunded is not None:
            self._paused_until = now + timedelta(seconds=self.cfg.payment_retry_after_s)
            log.error("wallet refused a payment (%s); debits refunded, new payments paused "
                      "until %s", plan.underfunded, self._paused_until.isoformat())  # fmt: skip
            report.errors.append(f"wallet refused: {plan.underfunded}")

    async def check_low_balance(self, now: datetime) -> None:
        """The hot wallet's spendable balance against what the next run needs: a WARNING when
        it falls short (once, until it recovers), the figures for the metrics and alerts."""
        spendable = await spendable_budget(self.transport) if self.transport else None
        if spendable is None:
            return
        needed = funds_needed(await self.outbox.balances(), await self.outbox.payout_addresses(now),
                              self.payout, await self.outbox.holds())  # fmt: skip
        # batches held for approval are debited already and need the money once approved
        reserve = self.payout.fee_reserve_sats if self.payout.fee_policy is TxFeePolicy.POOL else 0
        needed += sum(b.total_sats + reserve for b in await self.outbox.awaiting())
        floor = self.cfg.low_balance_warning_sats
        low = spendable < needed or (floor > 0 and spendable < floor)
        if low and not self.stats.wallet_low_balance:
            log.warning("hot wallet low: %d sat spendable, the next payments need %d sat "
                        "(fee reserve included)%s; top the wallet up before payments wait",
                        spendable, needed, f", warning floor {floor} sat" if floor else "")
        elif not low and self.stats.wallet_low_balance:
            log.info("hot wallet balance recovered: %d sat spendable, %d sat needed",
                     spendable, needed)
        self.stats.wallet_required_sats = needed
        self.stats.wallet_low_balance = low
        self.stats.wallet_spendable_sats = spendable

    async def retention(self, now: datetime, report: TickReport) -> None:
        due = self._last_retention is None or (
            now - self._last_retention).total_seconds() >= self.cfg.retention_interval_s
        if not due:
            return
        cutoff = retention_cutoff(now, self.config.storage.retention_days)
        report.retention = await roll_up(self.engine, cutoff)
        self._last_retention = now

    async def tick(self) -> TickReport:
        report = TickReport()
        if self.leader is not None and not self.leader.is_leader():
            report.locked = False  # another instance leads: its figures count
            self.stats.leader = False
            self.stats.wallet_ledger_difference_sats = None
            return report
        try:
            return await self._locked_tick(report)
        except LeadershipLost as exc:
            log.info("payout tick stopped: %s", exc)
            report.errors.append(f"leadership lost: {exc}")
            self.stats.leader = False
            self.stats.wallet_ledger_difference_sats = None
            return report

    async def _locked_tick(self, report: TickReport) -> TickReport:
        async with payout_lock(self.engine) as locked:
            if not locked:
                report.locked = False
                self.stats.leader = False  # another process is the leader: its figures count
                self.stats.wallet_ledger_difference_sats = None
                return report
            self.stats.leader = True
            now = self.clock()
            if self.found_store is not None:
                report.imported = await self.found_store.import_fallback()
            await self.allocate_blocks(now, report)
            await self.update_chain(report)
            await self.pay(now, report)
            await self.retention(now, report)
            await self.periodic_reconcile(report)
        return report

    async def periodic_reconcile(self, report: TickReport) -> None:
        """``reconcile`` on the first tick and every ``reconcile_interval_s`` (under the tick's
        lock); the last difference goes to ``stats`` for the metrics. A failure keeps the last
        figure and counts an error (never fails the tick)."""
        if self.transport is None or not hasattr(self.transport, "balances"):
            return
        mono = time.monotonic()
        if self._last_reconcile is not None and \
                mono - self._last_reconcile < self.reconcile_interval_s:
            return
        self._last_reconcile = mono
        try:
            result = await self.reconcile()
        except Exception as exc:
            self.stats.reconcile_errors_total += 1
            log.warning("periodic reconcile failed: %r", exc)
            report.errors.append(f"reconcile: {exc}")
            return
        st = self.stats
        st.reconcile_runs_total += 1
        st.wallet_ledger_difference_sats = result.difference_sats
        st.reconcile_last_run_at = time.time()
        if result.difference_sats:
            log.error("reconcile: wallet and ledger differ by %d sat (wallet %d, books %d); run "
                      "`poolserver payouts reconcile`", result.difference_sats,
                      result.wallet_sats, result.expected_sats)  # fmt: skip

    # ---- reconciliation (payouts/reconcile.py says what must equal what) --------------------

    async def immature_rewards(self, credited: set[str]) -> int:
        """Coinbase values of the pool's found blocks in the main chain without a live credit."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(FoundBlock.block_hash, FoundBlock.coinbase_value)
                .where(FoundBlock.status != "rejected"))).all()  # fmt: skip
        total = 0
        for block_hash, value in rows:
            if block_hash in credited:
                continue
            status = await self.chain_status(block_hash)
            if status is not None and status.in_main_chain:
                total += int(value)
        return total

    async def reconcile(self) -> Reconciliation:
        """The books against the wallet, exact in satoshis. Call under ``payout_lock`` so no
        tick moves money between the reads."""
        if self.transport is None:
            raise ConfigError("payouts.wallet: \"off\" has no wallet to reconcile against")
        entries = await self.ledger.entries()
        unsent = unbooked = 0
        # a batch awaiting approval is debited and unsent, like a pending one
        for batch in [*await self.outbox.unfinished(), *await self.outbox.awaiting()]:
            if batch.status.value not in ("pending", "awaiting_approval"):
                continue
            txid = await self.transport.find_by_comment(batch.comment)
            if txid is None:
                unsent += batch.total_sats
            elif batch.fee_policy is TxFeePolicy.POOL:
                unbooked += await self.transport.transaction_fee(txid)
        immature = await self.immature_rewards(live_credited_blocks(entries))
        balance = await self.transport.balances()  # type: ignore[attr-defined]
        detail = {"spendable": balance.spendable, "immature": balance.immature}
        if balance.pending:
            detail["unconfirmed incoming"] = balance.pending
        return Reconciliation(
            wallet_sats=balance.total, ledger_sats=sum(e.amount_sats for e in entries),
            immature_sats=immature, unsent_sats=unsent, unbooked_fee_sats=unbooked,
            ledger_by_kind=ledger_by_kind(entries), wallet_detail=detail)  # fmt: skip

    # ---- background task ------------------------------------------------------------------

    def wake(self) -> None:
        """Tick now (the payout leadership was just gained)."""
        self._wake.set()

    async def run(self) -> None:
        """Tick every ``tick_interval_s`` (the first one after one interval), and at once when
        this instance becomes the payout leader, until cancelled."""
        while True:
            await wait_event(self._wake, self.cfg.tick_interval_s)
            self._wake.clear()
            try:
                report = await self.tick()
                if report.allocated or report.credits or report.reversals or \
                        report.batches_planned or report.errors:
                    log.info("payout tick: %s", report.summary())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payout tick failed; retrying in %.0f s",
                              self.cfg.tick_interval_s)  # fmt: skip

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="payout-service")
        if self.leader is not None:
            self.leader.on_gain = self.wake
            self.leader.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.leader is not None:
            await self.leader.release()  # a clean stop hands the payouts over at once
        close = getattr(self.transport, "close", None)
        if close is not None:
            await close()
