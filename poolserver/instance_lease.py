"""Scale-out: the instance id lease (issue 12).

Several pool instances share one database; each hands out extranonce1 values with its
``[pool].node_id`` in the high bits, so two live processes must never run with the same id.
At startup an instance takes the id's row in ``instance_leases`` (refused while another holder's
lease is live), then renews it every third of ``[pool].lease_ttl_s``; a clean stop deletes it.
After kill -9 the row stays but lapses after the TTL, so a restart is not refused for longer
(on the same host at once: a holder whose process is gone is taken over immediately).

Takeover of a lapsed lease is an optimistic update (``WHERE holder = old AND expires_at = old``),
so two processes racing for the same lapsed id cannot both win; a racing first insert loses on
the primary key. Times are the instances' UTC clocks: keep them within a fraction of the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from poolserver.aio import cancel_and_wait
from poolserver.storage.models import InstanceLease as Row

log = logging.getLogger(__name__)


class LeaseHeld(RuntimeError):
    """Another live instance holds this instance id."""


@dataclass(slots=True)
class LeaseStats:
    """Export as metrics: held (0/1), renewals, renew_failures (database errors), lost (renewal
    found another holder: this process must not keep serving under the id)."""

    held: bool = False
    renewals: int = 0
    renew_failures: int = 0
    lost: int = 0


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def dead_local_holder(holder: str) -> bool:
    """True when ``holder`` (host:pid:tag) names a process of this host that is gone: its lease
    need not lapse (a restart after kill -9 on the same machine is not kept waiting)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class InstanceIdLease:
    def __init__(self, engine: Any, instance_id: int, ttl_s: float, *, holder: str | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:  # fmt: skip
        if not ttl_s > 0:
            raise ValueError(f"pool.lease_ttl_s: must be > 0, got {ttl_s}")
        self.engine = engine
        self.instance_id = instance_id
        self.ttl = timedelta(seconds=ttl_s)
        self.holder = holder or default_holder()
        self.clock = clock
        self.stats = LeaseStats()
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Take the id or raise LeaseHeld naming the holder and when its lease lapses."""
        for _attempt in range(3):
            now = self.clock()
            async with self.engine.begin() as conn:
                row = (await conn.execute(
                    select(Row.holder, Row.expires_at).where(Row.instance_id == self.instance_id)
                )).first()  # fmt: skip
                values = {"holder": self.holder, "acquired_at": now,
                          "expires_at": now + self.ttl}  # fmt: skip
                if row is None:
                    try:
                        async with conn.begin_nested():
                            await conn.execute(insert(Row).values(instance_id=self.instance_id,
                                                                  **values))  # fmt: skip
                    except IntegrityError:
                        continue  # another process inserted first: look again
                else:
                    expires = _aware(row.expires_at)
                    if row.holder != self.holder and expires > now:
                        if dead_local_holder(row.holder):
                            log.warning("pool.node_id %d: lease holder %s is a process of this "
                                        "host that no longer runs (killed?): taking over",
                                        self.instance_id, row.holder)  # fmt: skip
                        else:
                            raise LeaseHeld(
                                f"pool.node_id {self.instance_id} is held by another live instance "
                                f"({row.holder}) until {expires.isoformat()} (lease TTL "
                                f"{self.ttl.total_seconds():g}s, renewed while it runs); give this "
                                "instance its own [pool].node_id, or wait for the lease to lapse "
                                "if that instance is gone"
                            )
                    result = await conn.execute(
                        update(Row)
                        .where(Row.instance_id == self.instance_id, Row.holder == row.holder,
                               Row.expires_at == row.expires_at)
                        .values(**values)
                    )  # fmt: skip
                    if result.rowcount != 1:
                        continue  # someone else took the lapsed lease meanwhile: look again
                    if row.holder != self.holder:
                        log.warning("pool.node_id %d: took over the lapsed lease of %s",
                                    self.instance_id, row.holder)  # fmt: skip
            self.stats.held = True
            log.info("pool.node_id %d: lease held by %s (TTL %gs)", self.instance_id,
                     self.holder, self.ttl.total_seconds())  # fmt: skip
            return
        raise LeaseHeld(f"pool.node_id {self.instance_id}: lost the race for the lease three "
                        "times; another instance is starting with the same id")  # fmt: skip

    async def renew(self) -> bool:
        """Extend the lease; False when another holder has the id (the lease was lost)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Row)
                .where(Row.instance_id == self.instance_id, Row.holder == self.holder)
                .values(expires_at=now + self.ttl)
            )
        if result.rowcount == 1:
            self.stats.renewals += 1
            return True
        self.stats.held = False
        self.stats.lost += 1
        log.critical("pool.node_id %d: lease LOST (another instance holds the id); extranonce1 "
                     "values may collide until this process stops", self.instance_id)  # fmt: skip
        return False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.renew():
                    return
            except Exception as exc:  # database unreachable: keep trying until the TTL lapses
                self.stats.renew_failures += 1
                log.error("pool.node_id %d: lease renewal failed: %s", self.instance_id, exc)

    async def release(self) -> None:
        await cancel_and_wait(self._task)
        if not self.stats.held:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(delete(Row).where(Row.instance_id == self.instance_id,
                                                     Row.holder == self.holder))  # fmt: skip
        except Exception as exc:  # it lapses by itself after the TTL
            log.error("pool.node_id %d: lease not released (%s); it lapses in %gs",
                      self.instance_id, exc, self.ttl.total_seconds())  # fmt: skip
        self.stats.held = False
