"""Payment outbox: threshold, batching, state machine, and no double pay under crashes.

The wallet is an in-memory transport that records every send (a fake is the only option without
bitcoind); the crash points are modelled explicitly: every durable write and every wallet call
is a step, and a run can die just before or just after any step.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payouts.allocation import allocate
from payouts.fees import FeePolicy, FeeSchedule
from payouts.ledger import ChainStatus, EntryKind, LedgerEntry, balances, block_entries
from payouts.payments import (
    DistributionStatus,
    PaymentBatch,
    PaymentOutput,
    PaymentRejected,
    PaymentStateError,
    PaymentStatus,
    PayoutParams,
    WalletUnderfunded,
    distribution_rows,
    plan_payments,
    record_broadcast,
    record_confirmed,
    record_failed,
    run_payments,
)
from payouts.txfee import TxFeePolicy, miner_fee_shares, split_fee, subtracted
from payouts.types import POOL_ACCOUNT, BlockRecord, ShareRecord
from tests.payouts_strategies import T0

NOW = T0 + timedelta(days=3)


class Crash(Exception):
    """The process died here."""


@dataclass
class CrashPlan:
    crash_at: int | None = None  # die at this step number (None: never)
    step: int = 0

    def tick(self) -> None:
        self.step += 1
        if self.crash_at is not None and self.step == self.crash_at:
            raise Crash(f"crash at step {self.step}")


@dataclass
class Wallet:
    """In-memory PaymentTransport: records sends; a comment lookup like listtransactions."""

    crash: CrashPlan
    sends: list[tuple[str, dict[str, int], str]] = field(default_factory=list)
    confirmations_of: dict[str, int] = field(default_factory=dict)
    refuse: bool = False
    refuse_addresses: set[str] = field(default_factory=set)  # refused outputs (e.g. dust)
    fee_per_output: int = 141
    fees: dict[str, int] = field(default_factory=dict)

    async def send_many(self, outputs: Mapping[str, int], comment: str,
                        subtract_fee: bool = False) -> str:
        self.crash.tick()  # before the wallet acts
        if self.refuse:
            raise WalletUnderfunded("insufficient funds")
        bad = sorted(set(outputs) & self.refuse_addresses)
        if bad:
            raise PaymentRejected(f"Transaction amount too small ({bad[0]})")
        txid = f"{len(self.sends):064x}"
        fee = self.fee_per_output * len(outputs) + 110
        paid = subtracted(outputs, fee) if subtract_fee else dict(outputs)
        self.fees[txid] = fee
        self.sends.append((comment, paid, txid))
        self.crash.tick()  # sent, but the caller never learns the txid
        return txid

    async def transaction_fee(self, txid: str) -> int:
        self.crash.tick()
        return self.fees[txid]

    async def find_by_comment(self, comment: str) -> str | None:
        self.crash.tick()
        return next((txid for c, _, txid in self.sends if c == comment), None)

    async def confirmations(self, txid: str) -> int:
        self.crash.tick()
        return self.confirmations_of.get(txid, 0)


@dataclass
class Store:
    """In-memory PaymentOutbox: each method is one atomic transaction; unique keys enforced."""

    crash: CrashPlan
    addresses: dict[str, str]
    entries: list[LedgerEntry] = field(default_factory=list)
    batches: dict[str, PaymentBatch] = field(default_factory=dict)
    held: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def holds(self) -> Mapping[str, tuple[str, str]]:
        return dict(self.held)

    async def add_hold(self, miner_id: str, address: str, reason: str) -> None:
        self.held[miner_id] = (address, reason)

    def _append(self, entries: Sequence[LedgerEntry]) -> None:
        ids = {e.entry_id for e in self.entries}
        for e in entries:
            if e.entry_id in ids:
                raise AssertionError(f"duplicate entry {e.entry_id}")
        self.entries.extend(entries)

    async def unfinished(self) -> Sequence[PaymentBatch]:
        self.crash.tick()
        return [b for b in self.batches.values()
                if b.status in (PaymentStatus.PENDING, PaymentStatus.BROADCAST)]

    async def balances(self) -> Mapping[str, int]:
        self.crash.tick()
        return balances(self.entries)

    async def payout_addresses(self, at: datetime) -> Mapping[str, str]:
        return dict(self.addresses)

    async def add_batch(self, batch: PaymentBatch, entries: Sequence[LedgerEntry]) -> None:
        self.crash.tick()  # before commit
        assert batch.batch_id not in self.batches
        self._append(entries)
        self.batches[batch.batch_id] = batch
        self.crash.tick()  # after commit

    async def update_batch(self, batch: PaymentBatch, entries: Sequence[LedgerEntry]) -> None:
        self.crash.tick()
        self._append(entries)
        self.batches[batch.batch_id] = batch
        self.crash.tick()


def credits(amounts: dict[str, int], tag: str = "h") -> list[LedgerEntry]:
    return [LedgerEntry(f"credit:{tag}:{m}", EntryKind.CREDIT, m, a, block_hash=tag)
            for m, a in amounts.items()]


def ids(prefix: str = "b") -> Callable[[], str]:
    c = itertools.count()
    return lambda: f"{prefix}{next(c)}"


def paid_by_wallet(wallet: Wallet, addresses: dict[str, str]) -> dict[str, int]:
    owner = {a: m for m, a in addresses.items()}
    paid: dict[str, int] = {}
    for _, outputs, _ in wallet.sends:
        for address, sats in outputs.items():
            paid[owner[address]] = paid.get(owner[address], 0) + sats
    return paid


# --- planning and the state machine -------------------------------------------------------

def test_threshold_batching_and_debits() -> None:
    bal = {"a": 5, "b": 100, "c": 250, "d": 100, "e": 99, POOL_ACCOUNT: 10**9}
    addresses = {"a": "addr-a", "b": "addr-b", "c": "addr-c", "e": "addr-e"}
    plan = plan_payments(bal, addresses, PayoutParams(min_payout_sats=100, max_outputs=1), NOW,
                         ids())
    assert [[(o.miner_id, o.amount_sats) for o in p.batch.outputs] for p in plan.batches] == \
        [[("b", 100)], [("c", 250)]]
    assert plan.skipped == (("d", "no payout address on record"),)
    assert [[(e.account, e.amount_sats, e.kind) for e in p.debits] for p in plan.batches] == \
        [[("b", -100, EntryKind.PAYMENT)], [("c", -250, EntryKind.PAYMENT)]]
    assert plan.batches[0].batch.comment != plan.batches[1].batch.comment


def test_miners_sharing_an_address_are_merged_for_the_wallet() -> None:
    batch = PaymentBatch("x", "c", NOW, (PaymentOutput("a", "addr", 5),
                                         PaymentOutput("b", "addr", 7)))
    assert batch.wallet_outputs() == {"addr": 12}


def test_state_machine_refuses_illegal_transitions() -> None:
    batch = PaymentBatch("x", "c", NOW, (PaymentOutput("a", "addr", 5),))
    with pytest.raises(PaymentStateError, match="cannot confirm from pending"):
        record_confirmed(batch)
    sent = record_broadcast(batch, "t" * 64).batch
    with pytest.raises(PaymentStateError, match="cannot broadcast from broadcast"):
        record_broadcast(sent, "u" * 64)
    done = record_confirmed(sent).batch
    with pytest.raises(PaymentStateError, match="cannot fail from confirmed"):
        record_failed(done, "late")
    with pytest.raises(ValueError, match="needs a txid"):
        PaymentBatch("x", "c", NOW, (PaymentOutput("a", "addr", 5),), PaymentStatus.BROADCAST)
    with pytest.raises(ValueError, match=r"payment_output\.address: missing"):
        PaymentOutput("a", " ", 5)


def test_wallet_refusal_fails_the_batch_and_refunds() -> None:
    crash = CrashPlan()
    store = Store(crash, {"a": "addr-a"}, credits({"a": 500}))
    wallet = Wallet(crash, refuse=True)
    asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=100), NOW, ids()))
    (batch,) = store.batches.values()
    assert batch.status is PaymentStatus.FAILED and "insufficient funds" in (batch.failure or "")
    assert balances(store.entries)["a"] == 500
    wallet.refuse = False
    asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=100), NOW, ids("r")))
    assert paid_by_wallet(wallet, store.addresses) == {"a": 500}
    assert balances(store.entries)["a"] == 0


def test_confirmation_moves_broadcast_to_confirmed() -> None:
    crash = CrashPlan()
    store = Store(crash, {"a": "addr-a"}, credits({"a": 500}))
    wallet = Wallet(crash)
    params = PayoutParams(min_payout_sats=100, confirmations_required=2)
    asyncio.run(run_payments(store, wallet, params, NOW, ids()))
    (batch,) = store.batches.values()
    assert batch.status is PaymentStatus.BROADCAST
    wallet.confirmations_of[batch.txid or ""] = 1
    asyncio.run(run_payments(store, wallet, params, NOW, ids()))
    assert store.batches[batch.batch_id].status is PaymentStatus.BROADCAST
    wallet.confirmations_of[batch.txid or ""] = 2
    asyncio.run(run_payments(store, wallet, params, NOW, ids()))
    assert store.batches[batch.batch_id].status is PaymentStatus.CONFIRMED
    assert len(wallet.sends) == 1


# --- crashes ------------------------------------------------------------------------------

def run_until_done(store: Store, wallet: Wallet, params: PayoutParams,
                   crash_points: Sequence[int | None]) -> None:
    """Runs that crash at the given steps, then one that does not; each starts fresh from the
    durable state (the store) as a restarted process would."""
    make_id = ids()
    for point in [*crash_points, None]:
        store.crash.crash_at, store.crash.step = point, 0
        try:
            asyncio.run(run_payments(store, wallet, params, NOW, make_id))
        except Crash:
            continue


def check_never_paid_twice(store: Store, wallet: Wallet, credited: dict[str, int],
                           params: PayoutParams) -> None:
    comments = [c for c, _, _ in wallet.sends]
    assert len(comments) == len(set(comments)), "a batch was sent twice"
    paid = paid_by_wallet(wallet, store.addresses)
    bal = balances(store.entries)
    for miner, total in credited.items():
        # what the wallet sent + what is still owed == what was credited: never more
        assert paid.get(miner, 0) + bal.get(miner, 0) == total
        if store.addresses.get(miner):
            assert bal.get(miner, 0) < params.min_payout_sats  # and the rest got paid
    assert all(b.status is not PaymentStatus.PENDING for b in store.batches.values())
    for b in store.batches.values():
        if b.status is PaymentStatus.BROADCAST:
            assert b.txid in {t for _, _, t in wallet.sends}


CREDITED = {"m1": 1_000, "m2": 2_500, "m3": 99, "m4": 700, "m5": 10_000}
ADDRESSES = {m: f"addr-{m}" for m in CREDITED}
PARAMS = PayoutParams(min_payout_sats=100, max_outputs=2)


def steps_of_a_clean_run() -> int:
    crash = CrashPlan()
    store = Store(crash, dict(ADDRESSES), credits(CREDITED))
    asyncio.run(run_payments(store, Wallet(crash), PARAMS, NOW, ids()))
    return crash.step


@pytest.mark.parametrize("point", range(1, steps_of_a_clean_run() + 1))
def test_a_crash_at_every_single_step_never_pays_twice(point: int) -> None:
    crash = CrashPlan()
    store = Store(crash, dict(ADDRESSES), credits(CREDITED))
    wallet = Wallet(crash)
    run_until_done(store, wallet, PARAMS, [point])
    check_never_paid_twice(store, wallet, CREDITED, PARAMS)


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]),
                       st.integers(1, 5_000), min_size=1),
       st.integers(1, 3), st.integers(1, 1_000),
       st.lists(st.one_of(st.none(), st.integers(1, 40)), max_size=6))
def test_repeated_crashes_never_pay_twice(credited, max_outputs, threshold, points) -> None:
    crash = CrashPlan()
    store = Store(crash, {m: f"addr-{m}" for m in credited}, credits(credited))
    wallet = Wallet(crash)
    params = PayoutParams(min_payout_sats=threshold, max_outputs=max_outputs)
    run_until_done(store, wallet, params, points)
    check_never_paid_twice(store, wallet, credited, params)


# --- distribution rows ----------------------------------------------------------------------

def test_distribution_rows_follow_block_and_payment_state() -> None:
    fees = FeePolicy(FeeSchedule.flat(100, T0 - timedelta(days=1)))
    shares = [ShareRecord(i, m, "w", Fraction(1), T0 + timedelta(minutes=i))
              for i, m in enumerate("ABAB")]
    a1 = allocate(BlockRecord(1, "01" * 32, 100_000, Fraction(2), T0 + timedelta(hours=1)),
                  shares, fees)
    a2 = allocate(BlockRecord(2, "02" * 32, 100_000, Fraction(2), T0 + timedelta(hours=2)),
                  shares, fees)
    a3 = allocate(BlockRecord(3, "03" * 32, 100_000, Fraction(2), T0 + timedelta(hours=3)),
                  shares, fees)
    chain = {a.block.block_hash: ChainStatus(a.block.block_hash, True, 100) for a in (a1, a2)}
    crash = CrashPlan()
    store = Store(crash, {"A": "addr-A", "B": "addr-B"},
                  list(block_entries([a1, a2, a3], chain, [])))
    wallet = Wallet(crash)
    asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=1), NOW, ids()))
    for b in store.batches.values():
        wallet.confirmations_of[b.txid or ""] = 1
    asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=1), NOW, ids("x")))
    # block 2 is orphaned after it was paid (a deep reorg): its credit is reversed
    chain[a2.block.block_hash] = ChainStatus(a2.block.block_hash, False, 0)
    store.entries += block_entries([a1, a2, a3], chain, store.entries)
    rows = distribution_rows([a1, a2, a3], store.entries, store.batches.values())
    got = {(r.height, r.miner_id): (r.status, r.address, r.kind) for r in rows}
    assert got == {
        (1, "A"): (DistributionStatus.CONFIRMED, "addr-A", "distribution"),
        (1, "B"): (DistributionStatus.CONFIRMED, "addr-B", "distribution"),
        (2, "A"): (DistributionStatus.ORPHANED, None, "distribution"),
        (2, "B"): (DistributionStatus.ORPHANED, None, "distribution"),
        (3, "A"): (DistributionStatus.IMMATURE, None, "distribution"),
        (3, "B"): (DistributionStatus.IMMATURE, None, "distribution"),
    }
    row = next(r for r in rows if (r.height, r.miner_id) == (1, "A"))
    line = next(ln for ln in a1.lines if ln.miner_id == "A")
    assert (row.gross_sats, row.fee_sats, row.net_sats) == \
        (line.gross_sats, line.fee_sats, line.net_sats)
    assert row.txids and all(len(t) == 64 for t in row.txids)
    # the miner now owes the reversed amount: a negative balance carried forward
    assert balances(store.entries)["A"] == -next(ln.net_sats for ln in a2.lines
                                                 if ln.miner_id == "A")


def test_credit_not_yet_paid_is_credited_and_pending_payment_is_pending() -> None:
    fees = FeePolicy(FeeSchedule.flat(0, T0 - timedelta(days=1)))
    shares = [ShareRecord(0, "A", "w", Fraction(1), T0)]
    a1 = allocate(BlockRecord(1, "01" * 32, 500, Fraction(1), T0 + timedelta(hours=1)),
                  shares, fees)
    entries = list(block_entries([a1], {a1.block.block_hash:
                                        ChainStatus(a1.block.block_hash, True, 100)}, []))
    (row,) = distribution_rows([a1], entries, [])
    assert row.status is DistributionStatus.CREDITED and row.txids == ()
    plan = plan_payments(balances(entries), {"A": "addr-A"}, PayoutParams(min_payout_sats=1),
                         NOW, ids())
    (p,) = plan.batches
    (row,) = distribution_rows([a1], entries + list(p.debits), [p.batch])
    assert row.status is DistributionStatus.PENDING and row.address == "addr-A"


# --- network fees, spendable budget, isolation --------------------------------------------


@given(fee=st.integers(0, 10**6),
       outputs=st.lists(st.tuples(st.sampled_from(["a1", "a2", "a3", "a4"]),
                                  st.integers(1, 10**9)), min_size=1, max_size=12))
def test_fee_shares_sum_exactly_and_follow_cores_rule(fee, outputs) -> None:
    rows = [(f"m{i}", address, amount) for i, (address, amount) in enumerate(outputs)]
    shares = miner_fee_shares(fee, rows)
    assert sum(shares.values()) == fee and set(shares) == {m for m, _, _ in rows}
    per_address = split_fee(fee, sorted({a for _, a, _ in rows}))
    assert sum(per_address.values()) == fee
    n = len(per_address)
    first = min(per_address)
    assert per_address[first] == fee // n + fee % n  # Core: the remainder on the first output
    assert all(v == fee // n for a, v in per_address.items() if a != first)
    for address, share in per_address.items():  # each address's share over its miners
        assert sum(shares[m] for m, a, _ in rows if a == address) == share


def test_pool_pays_the_fee_as_a_ledger_entry() -> None:
    """The old code recorded no fee: the books exceeded the wallet by every fee paid."""
    crash = CrashPlan()
    store = Store(crash, {"a": "addr-a", "b": "addr-b"}, credits({"a": 500, "b": 700}))
    wallet = Wallet(crash)
    asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=100), NOW, ids()))
    (batch,) = store.batches.values()
    fee = wallet.fees[batch.txid or ""]
    assert batch.fee_sats == fee > 0 and all(o.fee_sats == 0 for o in batch.outputs)
    assert balances(store.entries) == {"a": 0, "b": 0, POOL_ACCOUNT: -fee}
    (fee_entry,) = [e for e in store.entries if e.kind is EntryKind.TX_FEE]
    assert fee_entry.batch_id == batch.batch_id
    assert wallet.sends[0][1] == {"addr-a": 500, "addr-b": 700}


def test_miners_pay_the_fee_from_their_outputs() -> None:
    crash = CrashPlan()
    addresses = {"a": "addr-a", "b": "addr-b", "c": "addr-b"}
    store = Store(crash, addresses, credits({"a": 500, "b": 700, "c": 300}))
    wallet = Wallet(crash)
    params = PayoutParams(min_payout_sats=100, fee_policy=TxFeePolicy.MINERS)
    asyncio.run(run_payments(store, wallet, params, NOW, ids()))
    (batch,) = store.batches.values()
    fee = wallet.fees[batch.txid or ""]
    assert sum(o.fee_sats for o in batch.outputs) == batch.fee_sats == fee
    paid = wallet.sends[0][1]
    assert paid["addr-a"] == 500 - batch.outputs[0].fee_sats
    assert paid["addr-b"] == 1000 - batch.outputs[1].fee_sats - batch.outputs[2].fee_sats
    assert balances(store.entries) == {"a": 0, "b": 0, "c": 0}  # no pool expense


def test_plan_against_the_spendable_budget() -> None:
    bal = {"a": 300, "b": 500, "c": 200}
    addresses = {m: f"addr-{m}" for m in bal}
    params = PayoutParams(min_payout_sats=100, max_outputs=10, fee_reserve_sats=50)
    plan = plan_payments(bal, addresses, params, NOW, ids(), budget=600)
    # a (300) + reserve 50 fits; b (500) does not; c (200) does
    assert [o.miner_id for p in plan.batches for o in p.batch.outputs] == ["a", "c"]
    assert plan.skipped == (("b", "waiting for spendable funds (250 sat left to plan)"),)
    assert plan_payments(bal, addresses, params, NOW, ids(), budget=0).batches == ()


def test_a_refused_output_is_isolated_and_held() -> None:
    crash = CrashPlan()
    addresses = {"a": "addr-a", "b": "addr-b", "c": "addr-c"}
    store = Store(crash, addresses, credits({"a": 500, "b": 700, "c": 900}))
    wallet = Wallet(crash, refuse_addresses={"addr-b"})
    plan = asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=100), NOW, ids()))
    assert [m for m, _ in plan.held] == ["b"] and plan.underfunded is None
    assert paid_by_wallet(wallet, addresses) == {"a": 500, "c": 900}
    assert balances(store.entries)["b"] == 700
    assert store.held["b"][0] == "addr-b" and "too small" in store.held["b"][1]
    # the next run plans nobody (b held at this address) ...
    again = asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=100), NOW,
                                     ids("r")))
    assert again.batches == () and again.skipped[0][0] == "b"
    # ... until b's address changes
    addresses["b"] = "addr-b2"
    asyncio.run(run_payments(store, wallet, PayoutParams(min_payout_sats=100), NOW, ids("s")))
    assert balances(store.entries)["b"] == 0
