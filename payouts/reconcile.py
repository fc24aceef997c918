"""Reconciliation: the ledger and the hot wallet agree to the satoshi.

What must equal what (every term in integer satoshis)::

    wallet total (spendable + immature coinbases + unconfirmed incoming)
      = Σ every ledger balance (miners and @pool)
      + immature rewards  (coinbase values of the pool's blocks in the main chain whose credit
                           is not live yet: found, not yet matured, or not yet credited)
      + unsent batches    (pending batches the wallet has no transaction for: debited in the
                           ledger, the coins still in the wallet)
      − unbooked fees     (pending batches the wallet did send, a crash before the broadcast was
                           recorded, fee_policy "pool": the fee left the wallet, its tx_fee
                           entry comes with the record)

Why the ledger side adds up: a block's credits sum to its coinbase value exactly (Σ net + pool
fee + pool remainder = reward, allocation.py), so crediting moves a block from "immature" into
the ledger unchanged; an orphaned block leaves both the chain (the wallet loses the coinbase) and
the ledger (reversal) or, if never credited, the immature term. A payment debits the miners when
planned (unsent until sent), and the sent transaction takes the outputs plus the fee out of the
wallet: under fee_policy "pool" the fee is a ``tx_fee`` entry on @pool, under "miners" it came
out of the outputs, so the debit alone matches. A failed batch is refunded and sent nothing.
Operator deposits (+) and withdrawals (−, including the withdrawal's own fee) are ledger entries
on @pool. @pool's balance is therefore pool fee income + window remainders − network fees paid +
deposits − withdrawals: the pool's own money in the hot wallet.

An honest wallet reconciles to zero at any moment; anything else is money the books do not
explain (an unrecorded deposit or withdrawal, a coin the pool never found, a double payment).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from payouts.ledger import EntryKind, LedgerEntry


@dataclass(frozen=True, slots=True)
class Reconciliation:
    wallet_sats: int
    ledger_sats: int
    immature_sats: int
    unsent_sats: int
    unbooked_fee_sats: int
    ledger_by_kind: Mapping[str, int] = field(default_factory=dict)
    wallet_detail: Mapping[str, int] = field(default_factory=dict)

    @property
    def expected_sats(self) -> int:
        """What the wallet must hold according to the books."""
        return self.ledger_sats + self.immature_sats + self.unsent_sats - self.unbooked_fee_sats

    @property
    def difference_sats(self) -> int:
        """wallet − books: 0 when they agree; > 0 the wallet holds unexplained coins."""
        return self.wallet_sats - self.expected_sats

    def lines(self) -> list[tuple[str, int]]:
        """The breakdown, as (label, satoshis) rows."""
        rows = [(f"ledger {kind}", sats) for kind, sats in sorted(self.ledger_by_kind.items())]
        rows += [
            ("ledger balances (sum of all accounts)", self.ledger_sats),
            ("+ immature rewards (pool blocks in the main chain, not credited)",
             self.immature_sats),
            ("+ unsent batches (debited, still in the wallet)", self.unsent_sats),
            ("- unbooked fees (sent before the crash, fee not recorded yet)",
             self.unbooked_fee_sats),
            ("= expected wallet total", self.expected_sats),
        ]
        rows += [(f"wallet {name}", sats) for name, sats in self.wallet_detail.items()]
        rows += [("wallet total", self.wallet_sats), ("difference", self.difference_sats)]
        return rows


def ledger_by_kind(entries: Iterable[LedgerEntry]) -> dict[str, int]:
    """The sum of the entries of each kind (every kind listed, zero included)."""
    sums = {kind.value: 0 for kind in EntryKind}
    for e in entries:
        sums[e.kind.value] += e.amount_sats
    return sums


def live_credited_blocks(entries: Iterable[LedgerEntry]) -> set[str]:
    """Blocks with a live credit (a credit generation not reversed)."""
    credited: dict[str, set[int]] = {}
    reversed_: dict[str, set[int]] = {}
    for e in entries:
        if e.kind is EntryKind.CREDIT:
            credited.setdefault(e.block_hash or "", set()).add(e.generation)
        elif e.kind is EntryKind.REVERSAL:
            reversed_.setdefault(e.block_hash or "", set()).add(e.generation)
    return {h for h, gens in credited.items() if gens - reversed_.get(h, set())}
