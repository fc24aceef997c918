"""Scale-out: exactly one payout/maturity leader among the instances sharing one database.

Several ``poolserver run`` processes share one PostgreSQL; every one of them can run the payout
service (allocation, maturity, payments from the one wallet), but only one may at a time. The
leader holds a **lease row** (``payout_leader``, one row) with a TTL (``[payouts].leader_ttl_s``)
on the database's clock, renewed every third of it. The other instances try to take it every
``[payouts].leader_retry_s``; once it lapsed (the leader was killed, hung, or cut off from the
database) one of them takes it with an optimistic update and runs its payout pass at once, so a
takeover happens within TTL + retry seconds, not at the next payout tick. SQLite has one
instance, which takes the lease at startup.

**Fencing.** Every change of holder increments ``epoch``. The outbox stores a new batch, and
marks a batch as *sending* (``payments.sending_epoch``), only in a transaction that first
extends the caller's lease with ``WHERE holder = me AND epoch = mine AND expires_at > now``
(``fence``): a leader that lost its lease (paused past the TTL, partitioned) finds no row to
update, the transaction rolls back, ``LeadershipLost`` stops its payment run, and it sends
nothing. A batch the dead leader marked and perhaps sent is reconciled by its successor through
the wallet (``find_by_comment``) before any send, so it is never sent twice. After the fence the
send must start within half the TTL on this process's monotonic clock, else the run stops too.

Why a lease row and not a PostgreSQL advisory lock on a dedicated connection: a lock lives as
long as its TCP connection, and a stopped or hung process keeps that connection (the kernel
answers the keepalives), so nobody takes over until it dies; a lease needs the leader to act to
keep it. The lease also gives an epoch, stored with the batch it fenced (who marked what), the
same code on SQLite and PostgreSQL, and a takeover time set by configuration, not by the TCP
stack. (The per-tick ``payout_lock`` of ``payout_service`` stays: it keeps a CLI run-once from
running a tick beside the pool's.)

Times compared are the database's (``clock_timestamp()`` on PostgreSQL), so the instances' clocks
need not agree; on SQLite (one machine) the local UTC clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payouts.payments import LeadershipLost, PaymentBatch
from poolserver.aio import cancel_and_wait
from poolserver.instance_lease import default_holder
from poolserver.storage.models import PayoutLeaderRow as Row
from poolserver.storage.repository import SqlPaymentOutbox

log = logging.getLogger(__name__)

LEASE_NAME = "payouts"


@dataclass(slots=True)
class LeaderStats:
    """For the metrics: leader now (0/1), epoch held, gains of leadership from another holder
    (takeovers), leadership lost while running, failed renewals/attempts (database errors)."""

    leader: bool = False
    epoch: int = 0
    takeovers: int = 0
    losses: int = 0
    errors: int = 0


async def db_now(conn: AsyncConnection) -> datetime:
    """The database's clock (PostgreSQL: ``clock_timestamp()``, not the transaction's start);
    SQLite lives on one machine: its UTC clock."""
    if conn.dialect.name == "postgresql":
        value = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class PayoutLeader:
    def __init__(self, engine: AsyncEngine, ttl_s: float, retry_s: float, *,
                 holder: str | None = None,
                 on_gain: Callable[[], None] | None = None) -> None:  # fmt: skip
        if not ttl_s > 0:
            raise ValueError(f"payouts.leader_ttl_s: must be > 0, got {ttl_s}")
        if not 0 < retry_s < ttl_s:
            raise ValueError(f"payouts.leader_retry_s: must be > 0 and below leader_ttl_s "
                             f"({ttl_s:g}), got {retry_s}")  # fmt: skip
        self.engine = engine
        self.ttl = timedelta(seconds=ttl_s)
        self.retry_s = retry_s
        self.holder = holder or default_holder()
        self.on_gain = on_gain
        self.stats = LeaderStats()
        self._valid_until = 0.0  # monotonic: our lease is surely live before this
        self._fenced_at = 0.0  # monotonic: when the last successful fence was sent
        self._task: asyncio.Task[None] | None = None

    # ---- state ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this process holds the lease by its own monotonic clock (the TTL counted
        from before the last successful renewal was sent)."""
        return self.stats.leader and time.monotonic() < self._valid_until

    def _held(self, epoch: int, started: float) -> None:
        self.stats.epoch = epoch
        self.stats.leader = True
        self._valid_until = started + self.ttl.total_seconds()

    def _lost(self, why: str) -> None:
        if self.stats.leader:
            self.stats.losses += 1
            log.info("payout leadership LOST (epoch %d, %s): this instance stops paying",
                     self.stats.epoch, why)  # fmt: skip
        self.stats.leader = False
        self._valid_until = 0.0

    # ---- database steps ---------------------------------------------------------------------

    async def try_acquire(self) -> bool:
        """One attempt: hold (or keep) the lease; True when this process leads afterwards."""
        started = time.monotonic()
        async with self.engine.begin() as conn:
            now = await db_now(conn)
            row = (await conn.execute(
                select(Row.holder, Row.epoch, Row.expires_at).where(Row.name == LEASE_NAME)
                .with_for_update())).first()  # fmt: skip
            values = {"holder": self.holder, "acquired_at": now, "expires_at": now + self.ttl}
            if row is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(insert(Row).values(name=LEASE_NAME, epoch=1, **values))
                except IntegrityError:
                    return False  # another instance inserted first
                epoch, previous = 1, None
            else:
                live = _aware(row.expires_at) > now
                if live and row.holder == self.holder and row.epoch == self.stats.epoch:
                    return await self._extend(conn, now, started)
                if live:
                    self._lost(f"held by {row.holder} epoch {row.epoch}")
                    return False
                result = await conn.execute(
                    update(Row).where(Row.name == LEASE_NAME, Row.epoch == row.epoch)
                    .values(epoch=row.epoch + 1, **values))  # fmt: skip
                if result.rowcount != 1:
                    return False  # another instance took it meanwhile
                epoch, previous = row.epoch + 1, row.holder
        self._held(epoch, started)
        if previous is not None and previous != self.holder:
            self.stats.takeovers += 1
            log.info("payout leadership GAINED: took over the lapsed lease of %s (epoch %d); "
                     "running the payout pass now", previous, epoch)  # fmt: skip
        else:
            log.info("payout leadership GAINED (epoch %d, lease %gs)", epoch,
                     self.ttl.total_seconds())  # fmt: skip
        if self.on_gain is not None:
            self.on_gain()
        return True

    async def _extend(self, conn: AsyncConnection, now: datetime, started: float) -> bool:
        result = await conn.execute(
            update(Row)
            .where(Row.name == LEASE_NAME, Row.holder == self.holder,
                   Row.epoch == self.stats.epoch, Row.expires_at > now)
            .values(expires_at=now + self.ttl))  # fmt: skip
        if result.rowcount != 1:
            self._lost("lease lapsed or taken")
            return False
        self._valid_until = started + self.ttl.total_seconds()
        return True

    async def fence(self, conn: AsyncConnection) -> int:
        """Inside the caller's transaction: extend our lease or raise ``LeadershipLost`` (the
        caller's transaction then rolls back). Returns the epoch to store with the batch."""
        started = time.monotonic()
        if not self.stats.leader:
            raise LeadershipLost("this instance is not the payout leader")
        if not await self._extend(conn, await db_now(conn), started):
            raise LeadershipLost(f"payout lease of epoch {self.stats.epoch} lapsed or was taken "
                                 "by another instance")  # fmt: skip
        self._fenced_at = started
        return self.stats.epoch

    def check_send_window(self) -> None:
        """After a fenced commit: the send may start only within half the TTL of the fence."""
        if time.monotonic() - self._fenced_at > self.ttl.total_seconds() / 2:
            self._lost("fenced transaction took longer than half the lease")
            raise LeadershipLost("too long between the fence and the send (paused?); the next "
                                 "leader reconciles the batch by comment")  # fmt: skip

    async def release(self) -> None:
        """Stop the background task and give the lease up (a clean stop hands over at once)."""
        await cancel_and_wait(self._task)
        self._task = None
        if not self.stats.leader:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(Row).where(Row.name == LEASE_NAME, Row.holder == self.holder,
                                      Row.epoch == self.stats.epoch)
                    .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC)))  # fmt: skip
            log.info("payout leadership released (epoch %d)", self.stats.epoch)
        except Exception as exc:  # it lapses by itself after the TTL
            log.error("payout lease not released (%s); it lapses in %gs", exc,
                      self.ttl.total_seconds())  # fmt: skip
        self.stats.leader = False

    # ---- background task --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="payout-leader")

    async def run(self) -> None:
        """Leader: renew every TTL/3. Follower: try every ``retry_s``."""
        while True:
            try:
                await self.try_acquire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database unreachable: we cannot know; stop leading
                self.stats.errors += 1
                log.warning("payout lease: database step failed: %s", exc)
                if not self.is_leader():
                    self._lost("lease not renewed in time")
            await asyncio.sleep(self.ttl.total_seconds() / 3 if self.stats.leader
                                else self.retry_s)  # fmt: skip

    async def holder_of(self) -> tuple[str, int, datetime] | None:
        """(holder, epoch, expires_at) of the lease row, for messages."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Row.holder, Row.epoch, Row.expires_at)
                                      .where(Row.name == LEASE_NAME))).first()  # fmt: skip
        return None if row is None else (row.holder, row.epoch, _aware(row.expires_at))


class FencedOutbox(SqlPaymentOutbox):
    """The outbox of a payout leader: new batches and sends fenced by its lease."""

    def __init__(self, engine: AsyncEngine, addresses: Callable[[datetime], Any],
                 leader: PayoutLeader) -> None:  # fmt: skip
        super().__init__(engine, addresses, fence=leader.fence)
        self.leader = leader

    async def mark_sending(self, batch: PaymentBatch) -> int | None:
        epoch = await super().mark_sending(batch)
        self.leader.check_send_window()
        return epoch


def leader_from_config(engine: AsyncEngine, config: Any,
                       on_gain: Callable[[], None] | None = None,
                       holder: str | None = None) -> PayoutLeader:  # fmt: skip
    from poolserver.config import ConfigError

    cfg = config.payouts
    try:
        return PayoutLeader(engine, cfg.leader_ttl_s, cfg.leader_retry_s, on_gain=on_gain,
                            holder=holder)  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
