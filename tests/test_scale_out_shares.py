"""Scale-out (issue 12): shares counted once across instances, on SQLite and PostgreSQL.

Each instance journals its own shares into the shared database (its own ``ShareJournal``, spool
and group commit); the unique ``shares.share_hash`` index refuses the same work a second time,
whichever instance it reaches and however it is replayed. PPLNS reads the shared table, so the
window of a block sees every acknowledged share of every instance exactly once, and the
allocation weights are exactly the acknowledged work per miner.

(Two instances cannot produce the same header from honest miners: their extranonce1 values
differ in the ``[pool].node_id`` prefix, leased so that no two live instances share it. A replay
of captured work, or the same instance's spool replayed after a restart, is what this covers.
The three-instance process test checks the same through real pools: ``test_scale_out.py``.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from fractions import Fraction

from payouts.types import ShareRecord
from poolserver.storage.repository import ShareHistory
from stratum.interfaces import AcceptedShare, DuplicateShare
from tests.test_storage_dedup import started, stored
from tests.test_storage_journal import T0, make_share

MINERS = ("kz1", "kz2", "kz3")


def instance_shares(instance: int, n: int) -> list[AcceptedShare]:
    """``n`` shares acked by one instance (its own hashes, three miners, mixed difficulty)."""
    return [make_share(instance * 1000 + i, account=MINERS[i % 3],
                       created_at=T0 + timedelta(milliseconds=10 * i + instance))
            for i in range(n)]  # fmt: skip


async def test_each_acked_share_counted_once_across_instances_and_replays(engine, tmp_path):
    journals = [await started(engine, tmp_path / f"spool{i}") for i in range(3)]
    own = [instance_shares(i, 30) for i in range(3)]
    try:
        results = await asyncio.gather(*(j.put(s) for j, shares in zip(journals, own, strict=True)
                                         for s in shares), return_exceptions=True)  # fmt: skip
        assert all(r is None for r in results), results  # every instance acks its own shares
        # the same headers replayed to the other instances (captured work, a resubmitting
        # proxy), and to the same instance after a restart: refused everywhere
        replays = [(journals[(i + k) % 3], replace(s, job_id="ff", session_id="deadbeef"))
                   for i, shares in enumerate(own) for s in shares[::3] for k in (1, 2, 0)]
        refused = await asyncio.gather(*(j.put(s) for j, s in replays), return_exceptions=True)
        assert all(isinstance(r, DuplicateShare) for r in refused), refused
    finally:
        for j in journals:
            await j.close()
    acked = [s for shares in own for s in shares]
    rows = await stored(engine)
    assert Counter(r.share_hash for r in rows) == Counter(s.share_hash for s in acked)

    # PPLNS over the shared table: a window larger than all the work sees each share once
    total = sum((Fraction(s.difficulty) for s in acked), Fraction(0))
    window, _ = await ShareHistory(engine).pplns_inputs(T0 + timedelta(hours=1), total * 2)
    assert len(window) == len(acked) == len({r.seq for r in window}) == 90
    per_miner: Counter[str] = Counter()
    for r in window:
        per_miner[r.miner_id] += r.difficulty  # type: ignore[assignment]
    want: Counter[str] = Counter()
    for s in acked:
        want[s.account] += Fraction(s.difficulty)  # type: ignore[assignment]
    assert per_miner == want

    # a window of half the work takes the newest shares, whichever instance acked them
    half, _ = await ShareHistory(engine).pplns_inputs(T0 + timedelta(hours=1), total / 2)
    newest = sorted(acked, key=lambda s: s.created_at, reverse=True)
    taken: list[ShareRecord] = list(half)
    assert [r.time for r in taken] == [s.created_at for s in newest[:len(taken)]]
    assert {round(s.created_at.timestamp() * 1000) % 10 for s in newest[:len(taken)]} == {0, 1, 2}
