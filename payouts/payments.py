"""Payouts: threshold, batching, and an outbox that never pays twice.

Outbox states::

    awaiting_approval ──operator approves──▶ pending ──send / reconcile──▶ broadcast(txid)
       └──operator rejects──▶ failed           │        ──enough confirmations──▶ confirmed
                                               └──wallet refused (PaymentRejected)──▶ failed
                                                  (debits refunded)

**Hot-wallet caps** (``max_payment_sats``, ``max_daily_sats``; 0 = off): a planned batch with an
output above the per-payment cap, or that would take the Kazakhstan day's released total (batches
sent or approved that day, ``PaymentOutbox.released_since``) above the daily cap, is stored with
its debits in ``awaiting_approval`` instead of being sent: the money stays reserved and is not
planned again. ``record_approved`` (an operator, ``poolserver payouts approve``) makes it
``pending``; from there the ordinary protocol below sends it exactly once.

The protocol (``run_payments`` implements it; storage implements ``PaymentOutbox``):

1. **Plan**: miners whose balance is at least ``min_payout_sats`` and who have a payout address
   are grouped into batches of at most ``max_outputs`` outputs. The batch (status ``pending``)
   and one ``payment`` debit per output are stored **in one transaction** before anything is
   sent; from then on that money is reserved and cannot be planned again.
2. **Reconcile, then send**: for a ``pending`` batch ask the wallet first whether a transaction
   with the batch's unique comment exists (``find_by_comment``); if it does, record its txid —
   the previous run crashed after sending and before recording. Only if none exists, call
   ``send_many(outputs, comment)``. Record ``broadcast`` with the txid.
3. **Confirm**: a ``broadcast`` batch becomes ``confirmed`` once its transaction has
   ``confirmations_required`` confirmations.

The network fee of every sent transaction is read from the wallet (``transaction_fee``) when the
broadcast is recorded (also after a crash: the reconciled transaction's fee is read the same way)
and stored with the batch; ``fee_policy`` decides who pays it (see ``txfee.py``): the pool (a
``tx_fee`` ledger entry in the same database transaction as the broadcast) or the miners (the
outputs carry their fee shares).

Planning is against the wallet's **spendable** balance (``budget``): a miner whose balance the
wallet cannot fund yet (coinbases spend only at depth 101) simply waits for a later run, instead
of a refusal that pauses payments. Under ``fee_policy = "pool"`` each batch also keeps
``fee_reserve_sats`` back for its fee.

**Isolation**: when the wallet refuses a batch of several outputs for a reason other than
funds (``WalletUnderfunded``), the batch is failed and refunded as before and each of its
outputs is retried at once as a batch of its own; an output refused alone puts a **hold** on
that miner (the address and the wallet's reason are stored; ``payouts balances`` shows it) and
is not planned again while the miner's payout address is the held one. The others are paid.

A crash at any point leaves a state from which the next run continues without a second send:
before step 1 commits there is no batch and no debit (the next run plans again from the same
balance); between 1 and 2 the batch is pending and step 2 reconciles by comment. A wallet
refusal (``PaymentRejected``: the wallet guarantees nothing was sent) fails the batch and refunds
the debits. A broadcast transaction is never failed automatically (a conflicted or replaced
transaction needs an operator to look); ``record_failed`` exists for that decision.

Every paid allocation line is reported as a **distribution** row (Art. 10(4) of the Law on
Digital Assets: a pool's distribution of mined assets is not issuance).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from payouts.allocation import Allocation
from payouts.ledger import EntryKind, LedgerEntry
from payouts.txfee import TxFeePolicy, miner_fee_shares
from payouts.types import POOL_ACCOUNT, require_int, require_miner_id, require_sats, require_utc


class PaymentStatus(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    PENDING = "pending"
    BROADCAST = "broadcast"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class PaymentRejected(Exception):
    """The wallet refused the payment (e.g. insufficient funds) and guarantees nothing was sent."""


class WalletUnderfunded(PaymentRejected):
    """The wallet refused for lack of spendable funds (nothing sent); retry later, hold nobody."""


class PaymentStateError(ValueError):
    """A transition that the outbox state machine does not allow."""


@dataclass(frozen=True, slots=True)
class PaymentOutput:
    miner_id: str
    address: str
    amount_sats: int  # debited from the miner's balance
    fee_sats: int = 0  # the miner's share of the network fee (fee_policy "miners"), paid from it

    def __post_init__(self) -> None:
        require_miner_id(self.miner_id, "payment_output.miner_id")
        if not isinstance(self.address, str) or not self.address.strip():
            raise ValueError(f"payment_output.address: missing for miner {self.miner_id!r}")
        require_sats(self.amount_sats, "payment_output.amount_sats", positive=True)
        require_sats(self.fee_sats, "payment_output.fee_sats")
        if self.fee_sats >= self.amount_sats:
            raise ValueError(f"payment_output.fee_sats: {self.fee_sats} leaves nothing of "
                             f"{self.amount_sats} for miner {self.miner_id!r}")


@dataclass(frozen=True, slots=True)
class PaymentBatch:
    batch_id: str
    comment: str  # unique per batch; the wallet stores it with the transaction
    created_at: datetime
    outputs: tuple[PaymentOutput, ...]  # by miner id
    status: PaymentStatus = PaymentStatus.PENDING
    txid: str | None = None
    failure: str | None = None
    fee_sats: int | None = None  # the transaction's network fee, from the wallet once sent
    fee_policy: TxFeePolicy = TxFeePolicy.POOL
    hold_reason: str | None = None  # why it awaits (or awaited) an operator's approval
    approved_by: str | None = None  # the operator who approved it
    approved_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", require_utc(self.created_at, "batch.created_at"))
        if self.approved_at is not None:
            object.__setattr__(self, "approved_at",
                               require_utc(self.approved_at, "batch.approved_at"))
        object.__setattr__(self, "status", PaymentStatus(self.status))
        object.__setattr__(self, "fee_policy", TxFeePolicy(self.fee_policy))
        if self.fee_sats is not None:
            require_sats(self.fee_sats, "batch.fee_sats")
        if not self.outputs:
            raise ValueError(f"batch {self.batch_id}: outputs must not be empty")
        miners = [o.miner_id for o in self.outputs]
        if len(set(miners)) != len(miners):
            raise ValueError(f"batch {self.batch_id}: a miner appears twice in outputs")
        has_txid = self.status in (PaymentStatus.BROADCAST, PaymentStatus.CONFIRMED)
        if has_txid != bool(self.txid) and self.status is not PaymentStatus.FAILED:
            raise ValueError(f"batch {self.batch_id}: status {self.status.value} "
                             f"{'needs' if has_txid else 'must not have'} a txid")

    @property
    def total_sats(self) -> int:
        return sum(o.amount_sats for o in self.outputs)

    @property
    def released_at(self) -> datetime:
        """When the money was let go: the approval, else the plan (for the daily cap)."""
        return self.approved_at or self.created_at

    def wallet_outputs(self) -> dict[str, int]:
        """Outputs as the wallet takes them: address → sats (miners sharing an address merged)."""
        merged: dict[str, int] = {}
        for o in self.outputs:
            merged[o.address] = merged.get(o.address, 0) + o.amount_sats
        return dict(sorted(merged.items()))


class PaymentTransport(Protocol):
    """The pool's wallet: bitcoind's ``sendmany`` with a comment, or the embedded chain."""

    async def send_many(self, outputs: Mapping[str, int], comment: str,
                        subtract_fee: bool = False) -> str:
        """Send one transaction paying ``outputs`` (address → sats); return its txid. With
        ``subtract_fee`` the fee comes out of the outputs (see txfee.py), else on top.

        Raise PaymentRejected only when nothing was sent (WalletUnderfunded for lack of funds);
        any other exception means "unknown", and the batch stays pending to be reconciled by
        comment.
        """
        ...

    async def transaction_fee(self, txid: str) -> int:
        """The network fee (satoshis, >= 0) the wallet paid for its transaction ``txid``."""
        ...

    async def find_by_comment(self, comment: str) -> str | None:
        """The txid of the wallet transaction carrying ``comment``, or None if none exists."""
        ...

    async def confirmations(self, txid: str) -> int:
        """Confirmations of ``txid`` (0 = in mempool; negative = conflicted)."""
        ...


class PaymentOutbox(Protocol):
    """Durable storage for the outbox and ledger; each method is one transaction."""

    async def unfinished(self) -> Sequence[PaymentBatch]:
        """Batches in status pending or broadcast, oldest first."""
        ...

    async def balances(self) -> Mapping[str, int]:
        """Ledger balances (sum of entries per account)."""
        ...

    async def payout_addresses(self, at: datetime) -> Mapping[str, str]:
        """Each miner's payout address in force at ``at``."""
        ...

    async def add_batch(self, batch: PaymentBatch, entries: Sequence[LedgerEntry]) -> None:
        """Store a new pending batch and its debits atomically (unique batch_id, entry_id)."""
        ...

    async def update_batch(self, batch: PaymentBatch, entries: Sequence[LedgerEntry]) -> None:
        """Store a batch's new state (and any refund / fee entries) atomically."""
        ...

    async def holds(self) -> Mapping[str, tuple[str, str]]:
        """Miners whose payouts are held: miner → (held address, the wallet's reason)."""
        ...

    async def add_hold(self, miner_id: str, address: str, reason: str) -> None:
        """Hold ``miner_id``'s payouts to ``address`` (the wallet refused it alone)."""
        ...

    async def released_since(self, start: datetime) -> int:
        """Satoshis of batches pending, broadcast or confirmed whose ``released_at`` is at or
        after ``start`` (the daily cap's "paid today")."""
        ...


@dataclass(frozen=True, slots=True)
class PayoutParams:
    min_payout_sats: int = 100_000
    max_outputs: int = 100
    confirmations_required: int = 1
    fee_policy: TxFeePolicy = TxFeePolicy.POOL
    fee_reserve_sats: int = 0  # kept back from the budget per batch when the pool pays the fee
    max_payment_sats: int = 0  # an output above this waits for approval (0 = no cap)
    max_daily_sats: int = 0  # more than this released per Kazakhstan day waits (0 = no cap)

    def __post_init__(self) -> None:
        require_sats(self.min_payout_sats, "payouts.min_payout_sats", positive=True)
        require_int(self.max_outputs, "payouts.max_outputs", minimum=1)
        require_int(self.confirmations_required, "payouts.confirmations_required", minimum=1)
        object.__setattr__(self, "fee_policy", TxFeePolicy(self.fee_policy))
        require_sats(self.fee_reserve_sats, "payouts.fee_reserve_sats")
        require_sats(self.max_payment_sats, "payouts.max_payment_sats")
        require_sats(self.max_daily_sats, "payouts.max_daily_sats")


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    batch: PaymentBatch
    debits: tuple[LedgerEntry, ...]


@dataclass(frozen=True, slots=True)
class PaymentPlan:
    batches: tuple[PlannedBatch, ...]
    skipped: tuple[tuple[str, str], ...]  # (miner, reason) for balances >= threshold not paid
    held: tuple[tuple[str, str], ...] = ()  # (miner, reason): refused alone this run, now held
    underfunded: str | None = None  # the wallet refused for lack of funds (planning stopped)
    awaiting: tuple[PaymentBatch, ...] = ()  # stored for an operator's approval, not sent


@dataclass(frozen=True, slots=True)
class Transition:
    batch: PaymentBatch
    entries: tuple[LedgerEntry, ...] = ()
    refusal: PaymentRejected | None = None  # why the wallet refused (status failed)


def plan_payments(
    balances: Mapping[str, int],
    addresses: Mapping[str, str],
    params: PayoutParams,
    now: datetime,
    new_id: Callable[[], str] | None = None,
    budget: int | None = None,
    holds: Mapping[str, tuple[str, str]] | None = None,
) -> PaymentPlan:
    """Batches paying every miner whose balance reaches the threshold.

    ``budget``: the wallet's spendable satoshis (None = unlimited): miners are taken in id order
    while their balance fits what is left (plus ``fee_reserve_sats`` per batch when the pool
    pays the fee); the rest wait ("skipped"). ``holds``: miner → (address, reason); a held
    miner is skipped while its address is the held one.

    Pure except for the batch ids, which come from ``new_id`` (default: random). Ids need not be
    reproducible: nothing is sent under an id before the batch is stored, so a plan lost in a
    crash is simply planned again under new ids. They must be unique (storage enforces it).
    """
    new_id = new_id or _random_batch_id
    now = require_utc(now, "now")
    holds = holds or {}
    left = None if budget is None else require_sats(max(budget, 0), "budget")
    reserve = params.fee_reserve_sats if params.fee_policy is TxFeePolicy.POOL else 0
    outputs: list[PaymentOutput] = []
    skipped: list[tuple[str, str]] = []
    for miner, balance in sorted(balances.items()):
        if miner == POOL_ACCOUNT or balance < params.min_payout_sats:
            continue
        address = addresses.get(miner, "")
        if not address.strip():
            skipped.append((miner, "no payout address on record"))
            continue
        held = holds.get(miner)
        if held is not None and held[0] == address:
            skipped.append((miner, f"held: {held[1]}"))
            continue
        if left is not None:
            cost = balance + (reserve if len(outputs) % params.max_outputs == 0 else 0)
            if cost > left:
                skipped.append((miner, f"waiting for spendable funds ({left} sat left to plan)"))
                continue
            left -= cost
        outputs.append(PaymentOutput(miner, address, balance))
    batches = [planned_batch(tuple(outputs[start:start + params.max_outputs]), now, new_id(),
                             params.fee_policy)
               for start in range(0, len(outputs), params.max_outputs)]
    return PaymentPlan(tuple(batches), tuple(skipped))


def funds_needed(balances: Mapping[str, int], addresses: Mapping[str, str],
                 params: PayoutParams, holds: Mapping[str, tuple[str, str]] | None = None) -> int:
    """Spendable satoshis the next payment run needs to pay everyone due: the payable balances
    (threshold reached, address on record, not held) plus ``fee_reserve_sats`` per batch when
    the pool pays the fee. Below it, payments wait for funds: the low-balance warning."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    plan = plan_payments(balances, addresses, params, epoch, new_id=lambda: "need", holds=holds)
    reserve = params.fee_reserve_sats if params.fee_policy is TxFeePolicy.POOL else 0
    return sum(p.batch.total_sats + reserve for p in plan.batches)


def planned_batch(outputs: tuple[PaymentOutput, ...], now: datetime, batch_id: str,
                  fee_policy: TxFeePolicy = TxFeePolicy.POOL) -> PlannedBatch:
    """A pending batch paying ``outputs`` and its debits."""
    batch = PaymentBatch(batch_id, f"qazpool payout {batch_id}", now, outputs,
                         fee_policy=fee_policy)
    debits = tuple(
        LedgerEntry(f"payment:{batch_id}:{o.miner_id}", EntryKind.PAYMENT, o.miner_id,
                    -o.amount_sats, batch_id=batch_id)
        for o in outputs)
    return PlannedBatch(batch, debits)


def _random_batch_id() -> str:
    return f"pay-{secrets.token_hex(12)}"


def record_broadcast(batch: PaymentBatch, txid: str, fee_sats: int = 0) -> Transition:
    """``broadcast`` with the txid and the transaction's fee: under ``fee_policy = "pool"`` a
    ``tx_fee`` entry (−fee on the pool account); under ``"miners"`` the outputs get their fee
    shares (which sum to the fee exactly)."""
    if batch.status is not PaymentStatus.PENDING:
        raise PaymentStateError(f"batch {batch.batch_id}: cannot broadcast from "
                                f"{batch.status.value}")
    if not isinstance(txid, str) or not txid:
        raise ValueError(f"batch {batch.batch_id}: empty txid")
    require_sats(fee_sats, "fee_sats")
    entries: tuple[LedgerEntry, ...] = ()
    outputs = batch.outputs
    if batch.fee_policy is TxFeePolicy.POOL:
        if fee_sats:
            entries = (LedgerEntry(f"txfee:{batch.batch_id}", EntryKind.TX_FEE, POOL_ACCOUNT,
                                   -fee_sats, batch_id=batch.batch_id),)
    else:
        shares = miner_fee_shares(fee_sats, [(o.miner_id, o.address, o.amount_sats)
                                             for o in outputs])
        outputs = tuple(replace(o, fee_sats=shares[o.miner_id]) for o in outputs)
    return Transition(replace(batch, status=PaymentStatus.BROADCAST, txid=txid,
                              fee_sats=fee_sats, outputs=outputs), entries)


KZ = timezone(timedelta(hours=5), "UTC+5")


def kz_day_start(now: datetime) -> datetime:
    """The UTC instant the Kazakhstan (UTC+5) day of ``now`` began: the daily cap's day."""
    local = require_utc(now, "now").astimezone(KZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def approval_reason(batch: PaymentBatch, params: PayoutParams, released_today: int) -> str | None:
    """Why ``batch`` must wait for an operator (None: it may be sent). ``released_today``:
    satoshis already released this Kazakhstan day."""
    cap = params.max_payment_sats
    if cap:
        over = [o for o in batch.outputs if o.amount_sats > cap]
        if over:
            biggest = max(over, key=lambda o: o.amount_sats)
            return (f"{len(over)} output(s) above max_payment_sats {cap} sat (largest "
                    f"{biggest.amount_sats} sat to {biggest.miner_id})")
    daily = params.max_daily_sats
    if daily and released_today + batch.total_sats > daily:
        return (f"{released_today} sat released today + {batch.total_sats} sat would exceed "
                f"max_daily_sats {daily} sat")
    return None


def hold_for_approval(planned: PlannedBatch, reason: str) -> PlannedBatch:
    return PlannedBatch(replace(planned.batch, status=PaymentStatus.AWAITING_APPROVAL,
                                hold_reason=reason), planned.debits)


def record_approved(batch: PaymentBatch, who: str, at: datetime) -> Transition:
    """An operator lets a held batch go: ``pending``, sent by the next payment run."""
    if batch.status is not PaymentStatus.AWAITING_APPROVAL:
        raise PaymentStateError(f"batch {batch.batch_id}: is {batch.status.value}, not "
                                "awaiting approval")
    if not isinstance(who, str) or not who.strip():
        raise ValueError(f"batch {batch.batch_id}: approval must name the operator")
    return Transition(replace(batch, status=PaymentStatus.PENDING, approved_by=who.strip(),
                              approved_at=require_utc(at, "at")))


def record_confirmed(batch: PaymentBatch) -> Transition:
    if batch.status is not PaymentStatus.BROADCAST:
        raise PaymentStateError(f"batch {batch.batch_id}: cannot confirm from "
                                f"{batch.status.value}")
    return Transition(replace(batch, status=PaymentStatus.CONFIRMED))


def record_failed(batch: PaymentBatch, reason: str) -> Transition:
    """Fail a batch and refund its debits (pending: the wallet refused; broadcast: an operator
    established that the transaction can never confirm)."""
    if batch.status not in (PaymentStatus.AWAITING_APPROVAL, PaymentStatus.PENDING,
                            PaymentStatus.BROADCAST):
        raise PaymentStateError(f"batch {batch.batch_id}: cannot fail from {batch.status.value}")
    refunds = tuple(
        LedgerEntry(f"refund:{batch.batch_id}:{o.miner_id}", EntryKind.PAYMENT_REFUND,
                    o.miner_id, o.amount_sats, batch_id=batch.batch_id)
        for o in batch.outputs)
    if batch.fee_sats and batch.fee_policy is TxFeePolicy.POOL:
        # the transaction will never confirm: its fee was never paid either
        refunds += (LedgerEntry(f"refund:{batch.batch_id}:{POOL_ACCOUNT}",
                                EntryKind.PAYMENT_REFUND, POOL_ACCOUNT, batch.fee_sats,
                                batch_id=batch.batch_id),)
    return Transition(replace(batch, status=PaymentStatus.FAILED, failure=reason), refunds)


async def submit(batch: PaymentBatch, transport: PaymentTransport) -> Transition:
    """Move a pending batch on: reconcile by comment first, send only if nothing was sent."""
    if batch.status is not PaymentStatus.PENDING:
        raise PaymentStateError(f"batch {batch.batch_id}: submit needs pending, "
                                f"is {batch.status.value}")
    txid = await transport.find_by_comment(batch.comment)
    if txid is None:
        try:
            txid = await transport.send_many(
                batch.wallet_outputs(), batch.comment,
                subtract_fee=batch.fee_policy is TxFeePolicy.MINERS)
        except PaymentRejected as exc:
            failed = record_failed(batch, f"wallet refused: {exc}")
            return replace(failed, refusal=exc)
    return record_broadcast(batch, txid, await transport.transaction_fee(txid))


async def check_confirmation(batch: PaymentBatch, transport: PaymentTransport,
                             params: PayoutParams) -> Transition | None:
    """``confirmed`` once deep enough, else None (no change)."""
    if batch.status is not PaymentStatus.BROADCAST or batch.txid is None:
        raise PaymentStateError(f"batch {batch.batch_id}: not broadcast")
    if await transport.confirmations(batch.txid) >= params.confirmations_required:
        return record_confirmed(batch)
    return None


async def run_payments(outbox: PaymentOutbox, transport: PaymentTransport,
                       params: PayoutParams, now: datetime,
                       new_id: Callable[[], str] | None = None,
                       budget: int | None = None) -> PaymentPlan:
    """One payment run: finish what an earlier run left, then plan and send new batches.

    Every state change is stored before the next external action, so the run can be killed at
    any await and simply started again. Only one run may be active at a time (several pool
    nodes: hold a database advisory lock around it); comment reconciliation covers crashes, not
    two concurrent senders.
    """
    for batch in await outbox.unfinished():
        if batch.status is PaymentStatus.PENDING:
            t = await submit(batch, transport)
            await outbox.update_batch(t.batch, t.entries)
            batch = t.batch
        if batch.status is PaymentStatus.BROADCAST:
            confirmed = await check_confirmation(batch, transport, params)
            if confirmed is not None:
                await outbox.update_batch(confirmed.batch, confirmed.entries)
    new_id = new_id or _random_batch_id
    plan = plan_payments(await outbox.balances(), await outbox.payout_addresses(now), params, now,
                         new_id, budget=budget, holds=await outbox.holds())
    held: list[tuple[str, str]] = []
    underfunded: str | None = None
    awaiting: list[PaymentBatch] = []
    capped = bool(params.max_payment_sats or params.max_daily_sats)
    released = await outbox.released_since(kz_day_start(now)) if capped else 0
    for planned in plan.batches:
        reason = approval_reason(planned.batch, params, released) if capped else None
        if reason is not None:
            planned = hold_for_approval(planned, reason)
            await outbox.add_batch(planned.batch, planned.debits)
            awaiting.append(planned.batch)
            continue
        released += planned.batch.total_sats
        t = await _plan_and_submit(outbox, transport, planned)
        if t.refusal is None:
            continue
        if isinstance(t.refusal, WalletUnderfunded):
            underfunded = str(t.refusal)
            break
        # isolate: each output alone; one refused alone is held, the others are paid
        singles = planned.batch.outputs if len(planned.batch.outputs) > 1 else ()
        if not singles:
            held.append(await _hold(outbox, planned.batch.outputs[0], t.refusal))
        for output in singles:
            single = planned_batch((output,), now, new_id(), params.fee_policy)
            ts = await _plan_and_submit(outbox, transport, single)
            if isinstance(ts.refusal, WalletUnderfunded):
                underfunded = str(ts.refusal)
                break
            if ts.refusal is not None:
                held.append(await _hold(outbox, output, ts.refusal))
        if underfunded:
            break
    return replace(plan, held=tuple(held), underfunded=underfunded, awaiting=tuple(awaiting))


async def _plan_and_submit(outbox: PaymentOutbox, transport: PaymentTransport,
                           planned: PlannedBatch) -> Transition:
    await outbox.add_batch(planned.batch, planned.debits)
    t = await submit(planned.batch, transport)
    await outbox.update_batch(t.batch, t.entries)
    return t


async def _hold(outbox: PaymentOutbox, output: PaymentOutput,
                refusal: PaymentRejected) -> tuple[str, str]:
    reason = f"wallet refused {output.amount_sats} sat to {output.address}: {refusal}"
    await outbox.add_hold(output.miner_id, output.address, reason)
    return output.miner_id, reason


# --- distribution rows --------------------------------------------------------------------


class DistributionStatus(enum.StrEnum):
    IMMATURE = "immature"  # block not yet matured: nothing credited
    ORPHANED = "orphaned"  # block left the main chain: credit reversed
    CREDITED = "credited"  # credited, not (fully) covered by a payment yet
    PENDING = "pending"  # covered by a payment not yet sent
    BROADCAST = "broadcast"  # covered by a sent, unconfirmed payment
    CONFIRMED = "confirmed"  # covered by confirmed payments: what legal reports include


_PROGRESS = {PaymentStatus.AWAITING_APPROVAL: DistributionStatus.PENDING,
             PaymentStatus.PENDING: DistributionStatus.PENDING,
             PaymentStatus.BROADCAST: DistributionStatus.BROADCAST,
             PaymentStatus.CONFIRMED: DistributionStatus.CONFIRMED}
_ORDER = [DistributionStatus.PENDING, DistributionStatus.BROADCAST, DistributionStatus.CONFIRMED]


@dataclass(frozen=True, slots=True)
class DistributionRow:
    """One miner's share of one block: a *distribution* of mined assets, not an issuance."""

    miner_id: str
    block_hash: str
    height: int
    found_at: datetime
    gross_sats: int
    fee_sats: int
    net_sats: int
    address: str | None  # where it was paid (None until a payment covers it)
    txids: tuple[str, ...]  # payments that covered it (oldest first)
    status: DistributionStatus
    kind: str = "distribution"


def distribution_rows(
    allocations: Iterable[Allocation],
    entries: Iterable[LedgerEntry],
    batches: Iterable[PaymentBatch],
) -> tuple[DistributionRow, ...]:
    """Per (block, miner) rows; payments are attributed to live credits oldest first (FIFO).

    Ledger entries must be in append order. Failed batches cover nothing (they were refunded).
    """
    entry_list = list(entries)
    by_id = {b.batch_id: b for b in batches}
    live_gen: dict[str, int] = {}
    reversed_blocks: set[str] = set()
    reversed_keys = {(e.block_hash, e.generation) for e in entry_list
                     if e.kind is EntryKind.REVERSAL}
    for e in entry_list:
        if e.kind is EntryKind.CREDIT and e.block_hash is not None:
            if (e.block_hash, e.generation) in reversed_keys:
                reversed_blocks.add(e.block_hash)
            else:
                live_gen[e.block_hash] = e.generation

    # FIFO queues per miner: live credits (block, amount) and payments (batch, amount).
    credits: dict[str, list[tuple[str, int]]] = {}
    payments: dict[str, list[tuple[PaymentBatch, int]]] = {}
    for e in entry_list:
        if e.kind is EntryKind.CREDIT and live_gen.get(e.block_hash or "") == e.generation \
                and (e.block_hash, e.generation) not in reversed_keys:
            credits.setdefault(e.account, []).append((e.block_hash or "", e.amount_sats))
        elif e.kind is EntryKind.PAYMENT:
            batch = by_id.get(e.batch_id or "")
            if batch is None:
                raise ValueError(f"distribution: payment entry {e.entry_id} has no batch")
            if batch.status is not PaymentStatus.FAILED:
                payments.setdefault(e.account, []).append((batch, -e.amount_sats))

    coverage: dict[tuple[str, str], tuple[tuple[PaymentBatch, ...], bool]] = {}
    for miner, queue in credits.items():
        pays = payments.get(miner, [])
        head, taken_from_head = 0, 0
        for block_hash, amount in queue:
            need = amount
            used: list[PaymentBatch] = []
            while need > 0 and head < len(pays):
                batch, paid = pays[head]
                take = min(need, paid - taken_from_head)
                need -= take
                taken_from_head += take
                used.append(batch)
                if taken_from_head == paid:
                    head, taken_from_head = head + 1, 0
            coverage[(block_hash, miner)] = (tuple(used), need == 0)

    rows = []
    for alloc in sorted(allocations, key=lambda a: (a.block.height, a.block.block_hash)):
        h = alloc.block.block_hash
        for line in alloc.lines:
            if line.gross_sats == 0:
                continue
            used, full = coverage.get((h, line.miner_id), ((), False))
            if h in live_gen:
                if used and full:
                    status = min((_PROGRESS[b.status] for b in used), key=_ORDER.index)
                else:
                    status = DistributionStatus.CREDITED
            elif h in reversed_blocks:
                status = DistributionStatus.ORPHANED
            else:
                status = DistributionStatus.IMMATURE
            address = next((o.address for o in used[-1].outputs
                            if o.miner_id == line.miner_id), None) if used else None
            rows.append(DistributionRow(
                miner_id=line.miner_id, block_hash=h, height=alloc.block.height,
                found_at=alloc.block.found_at, gross_sats=line.gross_sats,
                fee_sats=line.fee_sats, net_sats=line.net_sats, address=address,
                txids=tuple(b.txid for b in used if b.txid), status=status))
    return tuple(rows)
