"""Subprocess for the payout kill test: one payout tick whose payment run stops at a named
point (prints ``AT <point> <n>`` and waits to be SIGKILLed by the test), or runs through.

    python -m tests.payout_kill_worker DB_URL DATA_DIR POINT N [PAUSE_S [PAYOUTS_JSON]]

POINT: ``after_add_batch`` (batch and debits committed, nothing sent), ``after_send`` (the
wallet recorded the transaction, the outbox does not know its txid), ``after_update``
(broadcast recorded, later batches not planned/sent yet), or ``none``. N: stop at the N-th time
the point is reached. PAUSE_S: sleep this long at every point (random-time kills). PAYOUTS_JSON:
more ``[payouts]`` options (e.g. the hot-wallet caps)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.wallet import EmbeddedWallet
from poolserver.config import config_from_dict
from poolserver.payout_service import PayoutService
from poolserver.storage.engine import create_engine


class Points:
    def __init__(self, point: str, nth: int, pause: float) -> None:
        self.point, self.nth, self.pause = point, nth, pause
        self.seen: dict[str, int] = {}

    async def reached(self, name: str) -> None:
        self.seen[name] = self.seen.get(name, 0) + 1
        if self.pause:
            await asyncio.sleep(self.pause)
        if name == self.point and self.seen[name] == self.nth:
            print(f"AT {name} {self.nth}", flush=True)
            await asyncio.sleep(3600)  # the test kills us here


class HookedWallet:
    def __init__(self, inner: EmbeddedWallet, points: Points) -> None:
        self.inner, self.points = inner, points

    async def send_many(self, outputs: Mapping[str, int], comment: str,
                        subtract_fee: bool = False) -> str:
        txid = await self.inner.send_many(outputs, comment, subtract_fee)
        await self.points.reached("after_send")
        return txid

    async def transaction_fee(self, txid: str) -> int:
        return await self.inner.transaction_fee(txid)

    async def spendable(self) -> int:
        return await self.inner.spendable()

    async def find_by_comment(self, comment: str) -> str | None:
        return await self.inner.find_by_comment(comment)

    async def confirmations(self, txid: str) -> int:
        return await self.inner.confirmations(txid)


async def main(url: str, data: Path, point: str, nth: int, pause: float,
               extra: dict[str, Any] | None = None) -> None:
    config = config_from_dict({
        "pool": {"data_dir": str(data)}, "storage": {"url": url},
        "payouts": {"min_payout_sats": 1000, "max_outputs_per_batch": 3, **(extra or {})},
    })  # fmt: skip
    engine = create_engine(url)
    chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
    points = Points(point, nth, pause)
    wallet = HookedWallet(EmbeddedWallet(chain, data / "embedded-wallet.jsonl"), points)
    service = PayoutService(engine, config, chain, wallet)
    outbox: Any = service.outbox
    add_batch, update_batch = outbox.add_batch, outbox.update_batch

    async def hooked_add(batch: Any, entries: Sequence[Any]) -> None:
        await add_batch(batch, entries)
        await points.reached("after_add_batch")

    async def hooked_update(batch: Any, entries: Sequence[Any]) -> None:
        await update_batch(batch, entries)
        await points.reached("after_update")

    outbox.add_batch, outbox.update_batch = hooked_add, hooked_update
    try:
        print("START", flush=True)
        report = await service.tick()
        print(f"DONE {report.summary()}", flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url, data, point, nth = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    extra = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
    asyncio.run(main(url, data, point, nth, pause, extra))
