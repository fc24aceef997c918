"""The network fee of a payout transaction: who pays it and how it is split.

``[payouts] fee_policy``:

* ``pool``: the outputs pay each miner its full debit; the wallet adds the fee on top and the
  ledger books it as a ``tx_fee`` entry (−fee) on the pool account.
* ``miners``: the fee is subtracted from the outputs (Bitcoin Core ``sendmany``
  ``subtractfeefrom`` = every output). Bitcoin Core's rule, used by the embedded wallet too:
  each output pays ``fee // n``, and the **first** output (addresses in ascending order, the
  order the pool sends them in) also pays ``fee % n``. Where several miners share one address,
  that address's share is split over them in proportion to their amounts with the exact split
  rule (``split.py``). The shares always sum to the fee exactly; each miner's payment row shows
  its share; the ledger still debits the full amount (the miner received amount − share).

Dust: an output below the dust limit is refused by Bitcoin Core's wallet. The strictest limit of
the address types the pool accepts is P2PKH's **546 sat** (P2SH 540, P2WPKH 294, P2WSH/P2TR 330 at
the default 3 sat/vB dust relay fee), so ``min_payout_sats`` below 546 is a configuration error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from payouts.split import split_exact
from payouts.types import require_sats

DUST_LIMIT_SATS = 546  # P2PKH at Bitcoin Core's default dustrelayfee (3000 sat/kvB)


class TxFeePolicy(enum.StrEnum):
    POOL = "pool"
    MINERS = "miners"


def split_fee(fee_sats: int, addresses: Sequence[str]) -> dict[str, int]:
    """Bitcoin Core's ``subtractfeefrom`` split of ``fee_sats`` over ``addresses`` (in the order
    given): ``fee // n`` each, the remainder on the first. Sums to ``fee_sats`` exactly."""
    require_sats(fee_sats, "fee_sats")
    if not addresses:
        raise ValueError("addresses: at least one output must share the fee")
    if len(set(addresses)) != len(addresses):
        raise ValueError("addresses: an address appears twice")
    n = len(addresses)
    shares = {a: fee_sats // n for a in addresses}
    shares[addresses[0]] += fee_sats % n
    return shares


def miner_fee_shares(fee_sats: int, outputs: Sequence[tuple[str, str, int]]) -> dict[str, int]:
    """Each miner's share of ``fee_sats`` for outputs ``(miner, address, amount)``: Core's split
    over the distinct addresses in ascending order, then each address's share over its miners
    in proportion to their amounts (exact split). Sums to ``fee_sats`` exactly."""
    by_address: dict[str, list[tuple[str, int]]] = {}
    for miner, address, amount in outputs:
        require_sats(amount, f"amount of {miner}", positive=True)
        by_address.setdefault(address, []).append((miner, amount))
    per_address = split_fee(fee_sats, sorted(by_address))
    shares: dict[str, int] = {}
    for address, miners in by_address.items():
        shares.update(split_exact(per_address[address], miners))
    return shares


def subtracted(outputs: Mapping[str, int], fee_sats: int) -> dict[str, int]:
    """The amounts actually paid per address when ``fee_sats`` is subtracted from ``outputs``."""
    shares = split_fee(fee_sats, sorted(outputs))
    return {a: outputs[a] - shares[a] for a in sorted(outputs)}
