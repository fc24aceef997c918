"""The append-only ledger: entries are added, never updated or deleted; balances are sums.

Entry kinds (amounts are signed integer satoshis):

* ``credit`` (+): when a block reaches ``maturity`` confirmations (default 100, coinbase
  maturity) in the main chain, each allocation line's ``net`` is credited to its miner and the
  pool's fees plus any booked remainder to the pool account (``@pool``).
* ``reversal`` (−): when a credited block leaves the main chain (orphaned by a reorg), every
  credit of that block is negated by a new entry. Should the block come back and mature again it
  is credited anew under the next ``generation``.
* ``payment`` (−): a payout debits the miner when the payment is *planned* (before anything is
  sent), so the same balance can never be planned twice; see payments.py.
* ``payment_refund`` (+): a payment that definitely failed gives the debit back.
* ``tx_fee`` (−, on ``@pool``): the network fee of a payout transaction when the pool pays it
  (``[payouts] fee_policy = "pool"``), recorded from the wallet once the transaction is sent.
* ``deposit`` (+) / ``withdrawal`` (−), on ``@pool``: the operator moved coins into or out of
  the hot wallet (``poolserver payouts deposit|withdraw``); ``note`` says why.

Every entry has a deterministic ``entry_id``; the functions here are idempotent: given the same
chain state and the entries they already produced, they return nothing new. Storage should make
``entry_id`` a unique key so a concurrent double run cannot append twice either.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from payouts.allocation import Allocation
from payouts.types import POOL_ACCOUNT, require_int

DEFAULT_MATURITY = 100


class EntryKind(enum.StrEnum):
    CREDIT = "credit"
    REVERSAL = "reversal"
    PAYMENT = "payment"
    PAYMENT_REFUND = "payment_refund"
    TX_FEE = "tx_fee"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"


_SIGN = {EntryKind.CREDIT: 1, EntryKind.REVERSAL: -1, EntryKind.PAYMENT: -1,
         EntryKind.PAYMENT_REFUND: 1, EntryKind.TX_FEE: -1, EntryKind.DEPOSIT: 1,
         EntryKind.WITHDRAWAL: -1}
_BATCH_KINDS = (EntryKind.PAYMENT, EntryKind.PAYMENT_REFUND, EntryKind.TX_FEE)
_POOL_KINDS = (EntryKind.TX_FEE, EntryKind.DEPOSIT, EntryKind.WITHDRAWAL)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str
    kind: EntryKind
    account: str  # miner id or POOL_ACCOUNT
    amount_sats: int  # signed; the sign always matches the kind
    block_hash: str | None = None  # credit / reversal
    batch_id: str | None = None  # payment / payment_refund
    generation: int = 0  # credit generation of the block
    note: str | None = None  # deposit / withdrawal: the operator's reason

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EntryKind(self.kind))
        amount = require_int(self.amount_sats, "ledger_entry.amount_sats")
        if amount == 0 or (amount > 0) != (_SIGN[self.kind] > 0):
            raise ValueError(f"ledger_entry.amount_sats: {amount} has the wrong sign (or is "
                             f"zero) for a {self.kind.value} entry")
        if self.kind in (EntryKind.CREDIT, EntryKind.REVERSAL) and not self.block_hash:
            raise ValueError(f"ledger_entry.block_hash: required for {self.kind.value}")
        if self.kind in _BATCH_KINDS and not self.batch_id:
            raise ValueError(f"ledger_entry.batch_id: required for {self.kind.value}")
        if self.kind in _POOL_KINDS and self.account != POOL_ACCOUNT:
            raise ValueError(f"ledger_entry.account: a {self.kind.value} entry belongs to "
                             f"{POOL_ACCOUNT}, not {self.account!r}")
        require_int(self.generation, "ledger_entry.generation", minimum=0)


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """What the node says about a found block now."""

    block_hash: str
    in_main_chain: bool
    confirmations: int  # 1 = tip; ignored when not in the main chain

    def __post_init__(self) -> None:
        require_int(self.confirmations, "chain_status.confirmations", minimum=0)


def block_entries(
    allocations: Iterable[Allocation],
    chain: Mapping[str, ChainStatus],
    existing: Iterable[LedgerEntry],
    maturity: int = DEFAULT_MATURITY,
) -> tuple[LedgerEntry, ...]:
    """The credit and reversal entries to append, given the chain state and the ledger so far.

    A block missing from ``chain`` is left alone (state unknown). A block in the main chain with
    fewer than ``maturity`` confirmations is left alone too: not credited yet, and not reversed
    if it already was (only leaving the main chain reverses).
    """
    require_int(maturity, "maturity", minimum=1)
    existing_list = list(existing)
    credited_gens: dict[str, set[int]] = {}
    reversed_gens: dict[str, set[int]] = {}
    for e in existing_list:
        if e.kind is EntryKind.CREDIT:
            credited_gens.setdefault(e.block_hash or "", set()).add(e.generation)
        elif e.kind is EntryKind.REVERSAL:
            reversed_gens.setdefault(e.block_hash or "", set()).add(e.generation)

    new: list[LedgerEntry] = []
    for alloc in sorted(allocations, key=lambda a: (a.block.height, a.block.block_hash)):
        h = alloc.block.block_hash
        status = chain.get(h)
        if status is None:
            continue
        credits = credited_gens.get(h, set())
        reversals = reversed_gens.get(h, set())
        if reversals - credits:
            raise ValueError(f"ledger: block {h} has a reversal without a credit")
        live = credits - reversals
        if len(live) > 1:
            raise ValueError(f"ledger: block {h} has more than one live credit generation")
        if not status.in_main_chain:
            if live:
                (gen,) = live
                new.extend(
                    LedgerEntry(f"reversal:{h}:{gen}:{e.account}", EntryKind.REVERSAL,
                                e.account, -e.amount_sats, block_hash=h, generation=gen)
                    for e in existing_list
                    if e.kind is EntryKind.CREDIT and e.block_hash == h and e.generation == gen)
        elif status.confirmations >= maturity and not live:
            new.extend(credit_entries(alloc, generation=len(credits)))
    return tuple(new)


def credit_entries(alloc: Allocation, generation: int = 0) -> tuple[LedgerEntry, ...]:
    """The credit entries of a matured block: each miner's net, then the pool's total."""
    h = alloc.block.block_hash
    entries = [
        LedgerEntry(f"credit:{h}:{generation}:{line.miner_id}", EntryKind.CREDIT,
                    line.miner_id, line.net_sats, block_hash=h, generation=generation)
        for line in alloc.lines if line.net_sats > 0
    ]
    if alloc.pool_total_sats > 0:
        entries.append(LedgerEntry(f"credit:{h}:{generation}:{POOL_ACCOUNT}", EntryKind.CREDIT,
                                   POOL_ACCOUNT, alloc.pool_total_sats, block_hash=h,
                                   generation=generation))
    return tuple(entries)


def balances(entries: Iterable[LedgerEntry]) -> dict[str, int]:
    """Every account's balance: the sum of its entries (may be negative after a deep reorg)."""
    result: dict[str, int] = {}
    for e in entries:
        result[e.account] = result.get(e.account, 0) + e.amount_sats
    return dict(sorted(result.items()))


def operator_entry(kind: EntryKind, amount_sats: int, note: str, entry_id: str) -> LedgerEntry:
    """A deposit (+) or withdrawal (−) of ``amount_sats`` (given positive) on the pool account."""
    if kind not in (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL):
        raise ValueError(f"kind: {kind.value} is not deposit or withdrawal")
    if not isinstance(amount_sats, int) or isinstance(amount_sats, bool):
        raise TypeError(f"amount_sats: satoshis must be int, got {type(amount_sats).__name__}")
    if amount_sats <= 0:
        raise ValueError(f"amount_sats: must be > 0, got {amount_sats}")
    if not isinstance(note, str) or not note.strip():
        raise ValueError("note: say why the coins moved (e.g. 'fee float top-up')")
    return LedgerEntry(entry_id, kind, POOL_ACCOUNT, _SIGN[kind] * amount_sats, note=note.strip())
