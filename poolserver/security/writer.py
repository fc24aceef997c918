"""The running pool's security events: a non-blocking ``emit`` and a task that writes batches.

``emit`` (called on the event loop by the Stratum server, never awaited) appends to a bounded
deque; when it is full the event is dropped and counted (``qazpool_security_events_dropped``),
so a flood can cost the pool neither memory nor time. The writer task wakes on the first event,
waits ``flush_interval_s`` for more, and appends everything queued in one transaction. A database
error keeps the events queued (retried after ``retry_s``); ``stop()`` writes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from poolserver.aio import wait_event
from poolserver.security.log import NewEvent, SecurityLog

log = logging.getLogger(__name__)

MAX_BATCH = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def plain(value: Any) -> Any:
    """The chain hashes plain JSON (no floats): floats become their shortest text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [plain(v) for v in items]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


@dataclass
class SecurityLogStats:
    emitted_total: int = 0
    written_total: int = 0
    dropped_total: int = 0  # the queue was full
    write_errors_total: int = 0
    queued: int = 0


class SecurityEventWriter:
    def __init__(
        self,
        log_: SecurityLog,
        *,
        queue_size: int = 10_000,
        flush_interval_s: float = 0.5,
        retry_s: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.log = log_
        self.queue_size = queue_size
        self.flush_interval_s = flush_interval_s
        self.retry_s = retry_s
        self.clock = clock
        self.stats = SecurityLogStats()
        self._queue: deque[NewEvent] = deque()
        self._wake: asyncio.Event | None = None
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- stratum.interfaces.SecurityEvents -------------------------------------------------
    def emit(self, kind: str, **fields: Any) -> None:
        stats = self.stats
        if len(self._queue) >= self.queue_size:
            stats.dropped_total += 1
            return
        stats.emitted_total += 1
        self._queue.append(NewEvent(self.clock(), kind, plain(fields)))
        stats.queued = len(self._queue)
        if self._wake is not None:
            self._wake.set()

    # ---- the writer task -------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        if self._queue:
            self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _pause(self, seconds: float) -> None:
        await wait_event(self._stopped, seconds)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            if not self._stopped.is_set():
                await self._pause(self.flush_interval_s)  # let a burst gather into one batch
            self._wake.clear()
            while self._queue:
                if await self.flush_once():
                    continue
                if self._stopped.is_set():
                    log.error(
                        "security log: %d event(s) lost at shutdown (database unavailable)",
                        len(self._queue),
                    )
                    return
                await self._pause(self.retry_s)
            if self._stopped.is_set():
                return

    async def flush_once(self) -> bool:
        """Write up to MAX_BATCH queued events; False (events kept) if the database failed."""
        batch = [self._queue[i] for i in range(min(len(self._queue), MAX_BATCH))]
        if not batch:
            return True
        try:
            await self.log.append(batch)
        except Exception as exc:  # the database is down: keep them, count, retry later
            self.stats.write_errors_total += 1
            log.warning("security log: %d event(s) not written yet: %s", len(batch), exc)
            return False
        for _ in batch:
            self._queue.popleft()
        self.stats.written_total += len(batch)
        self.stats.queued = len(self._queue)
        return True

    async def stop(self) -> None:
        """Write what is queued (one more try if the database fails), then end the task."""
        if self._task is None:
            await self.flush_once()
            return
        self._stopped.set()
        assert self._wake is not None
        self._wake.set()
        await self._task
        self._task = None
