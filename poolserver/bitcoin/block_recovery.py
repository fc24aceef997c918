"""Recover found blocks that are on the chain but not in the database.

Submission comes first (``poolserver.bitcoin.blocks``): a crash between ``submitblock`` and the
found block's record loses the record, not the block. ``BlockRecovery.scan`` walks the recent
chain (``getblockcount``, ``getblockhash``, ``getblock`` verbosity 2 -- Bitcoin Core's shapes,
also served by the embedded chain and the tests' fake node), finds coinbases paying the pool's
payout script, and imports each such block the database lacks (status ``accepted``, the
coinbase amount paid to the pool, the block hex from ``getblock`` verbosity 0, ``found_at`` =
the last share the pool stored on work for that height, or the header time if later or if there
is none: the PPLNS window ends there). The finder is unknown: account, worker and job id are
``""`` and ``data["recovered"] = RECOVERED``; PPLNS does not depend on the finder (a finder
bonus is simply not paid for such a block). The payout service then allocates it like any other.

It runs at startup (in the background) and then on its own task every
``[node].recover_interval_s`` (not in the payout tick: it must run with payouts disabled too, it
talks to the node ``depth`` times per pass, which must not delay payouts, and the payout service
is another component's). A pass only
fetches blocks it has not seen at that height before, so the periodic cost is one
``getblockhash`` per height in the window plus one ``getblock`` per new block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from poolserver.aio import cancel_and_wait
from poolserver.bitcoin.blocks import BlockStats, FoundBlock
from poolserver.bitcoin.node import Rpc, RpcError
from stratum.tx import DecodeError, parse_tx

log = logging.getLogger(__name__)

RECOVERED = "chain-scan"  # data["recovered"] of a found block imported from the chain


def sats_from_btc(value: Any) -> int:
    """bitcoind's JSON amount (BTC, 8 decimals) as exact satoshis; ValueError if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"amount: not a number: {value!r}")
    try:
        sats = Decimal(str(value)) * 100_000_000
    except InvalidOperation:
        raise ValueError(f"amount: not a number: {value!r}") from None
    if sats != sats.to_integral_value() or sats < 0:
        raise ValueError(f"amount: not a whole number of satoshis: {value!r}")
    return int(sats)


def pool_reward(block: Mapping[str, Any], payout_script: bytes) -> int:
    """Satoshis the block's coinbase pays to ``payout_script`` (0 if none), from ``getblock``
    verbosity 2. Uses the coinbase's raw ``hex`` when present (exact), else ``vout``."""
    txs = block.get("tx")
    if not isinstance(txs, list) or not txs or not isinstance(txs[0], Mapping):
        raise ValueError("getblock: tx[0] is not a transaction object (verbosity 2 needed)")
    cb = txs[0]
    raw = cb.get("hex")
    if isinstance(raw, str):
        try:
            tx = parse_tx(bytes.fromhex(raw))
        except (ValueError, DecodeError) as exc:
            raise ValueError(f"getblock: tx[0].hex: {exc}") from None
        return sum(o.value for o in tx.outputs if o.script == payout_script)
    total = 0
    for n, out in enumerate(cb.get("vout") or []):
        script = (out.get("scriptPubKey") or {}).get("hex")
        if isinstance(script, str) and script.lower() == payout_script.hex():
            try:
                total += sats_from_btc(out.get("value"))
            except ValueError as exc:
                raise ValueError(f"getblock: tx[0].vout[{n}].value: {exc}") from None
    return total


def recovered_block(block: Mapping[str, Any], reward: int, block_hex: str) -> FoundBlock:
    """The ``FoundBlock`` for a pool block seen on the chain (finder unknown)."""
    return FoundBlock(
        block_hash=str(block["hash"]),
        height=int(block["height"]),
        prevhash=str(block.get("previousblockhash", "")),
        job_id="",
        account="",
        worker="",
        coinbase_value=reward,
        found_at=datetime.fromtimestamp(int(block["time"]), UTC),
        block_hex=block_hex,
    )


class BlockRecovery:
    def __init__(
        self,
        rpc: Rpc,
        database: Any,  # poolserver.bitcoin.found_blocks.SqlFoundBlockStore
        payout_script: bytes,
        *,
        depth: int = 144,
        interval_s: float = 600.0,
        stats: BlockStats | None = None,
    ) -> None:
        if depth < 0:
            raise ValueError("node.recover_depth: must be >= 0 (0 = off)")
        if interval_s <= 0:
            raise ValueError("node.recover_interval_s: must be > 0")
        self.rpc = rpc
        self.database = database
        self.payout_script = payout_script
        self.depth = depth
        self.interval_s = interval_s
        self.stats = stats if stats is not None else BlockStats()
        self._seen: dict[int, str] = {}  # height -> hash already checked
        self._task: asyncio.Task[None] | None = None

    async def scan(self) -> list[str]:
        """One pass over the last ``depth`` blocks; returns the hashes imported."""
        if self.depth == 0:
            return []
        tip = await self.rpc.call("getblockcount")
        imported = []
        low = max(1, int(tip) - self.depth + 1)  # the genesis block is nobody's
        for height in range(low, int(tip) + 1):
            try:
                block_hash = await self.rpc.call("getblockhash", height)
                if self._seen.get(height) == block_hash:
                    continue
                block = await self.rpc.call("getblock", block_hash, 2)
            except RpcError as exc:  # e.g. pruned: the node answers, but not for this block
                log.warning("chain scan: height %d skipped: %s", height, exc)
                continue
            try:
                reward = pool_reward(block, self.payout_script)
            except ValueError as exc:
                log.warning("chain scan: block %s at height %d unreadable: %s", block_hash,
                            height, exc)  # fmt: skip
                continue
            if reward > 0 and await self.database.repo.get(block_hash) is None:
                try:
                    block_hex = await self.rpc.call("getblock", block_hash, 0)
                except RpcError as exc:
                    log.warning("block %s: raw hex unavailable (%s); imported without it",
                                block_hash, exc)  # fmt: skip
                    block_hex = ""
                found = recovered_block(block, reward, str(block_hex))
                # when it was found: the header time is when the job was made (shares on it
                # came later); the pool's last share on work for that height is closer
                # (a header's time is at most 2 h ahead of the real time: consensus rule)
                last = await self.database.last_share_at(
                    found.height, found.found_at - timedelta(hours=2))
                if last is not None and last > found.found_at:
                    found = dataclasses.replace(found, found_at=min(last, datetime.now(UTC)))
                if await self.database.import_recovered(found, int(str(block["bits"]), 16),
                                                        RECOVERED):  # fmt: skip
                    self.stats.recovered_from_chain += 1
                    imported.append(block_hash)
                    log.error("BLOCK %s height %d pays the pool (%d sat) but was not in the "
                              "database (lost between submission and record?): imported from "
                              "the chain, finder unknown", block_hash, found.height,
                              reward)  # fmt: skip
            self._seen[height] = block_hash
        for h in [h for h in self._seen if h < low]:
            del self._seen[h]
        return imported

    async def scan_logged(self) -> list[str]:
        try:
            return await self.scan()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("chain scan for lost found blocks failed (%r); retried in %.0f s", exc,
                      self.interval_s)  # fmt: skip
            return []

    async def run(self) -> None:
        """Scan now (startup), then every ``interval_s``, until cancelled. In the background:
        on mainnet the first pass reads ``depth`` full blocks, which must not delay startup."""
        while True:
            await self.scan_logged()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="block-recovery")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
