"""In-process notifications of a miner losing its standing, for cutting off live sessions.

The Stratum wiring subscribes once::

    events.subscribe(on_cutoff)   # async def on_cutoff(change: StandingChange) -> None

and closes every session of ``change.account`` (after ``client.show_message(change.message)``).
Changes are published by ``RegisterAccountPolicy``'s watcher, which sees every change made by
any process (CLI included) within its poll interval, and also the moment a future-dated
suspension starts or a license expires; the repository publishes its own changes immediately.
A subscriber that raises is logged and does not stop the others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StandingChange:
    account: str
    state: str  # a LicenseState value: suspended, revoked, expired, none
    effective_at: datetime
    reason: str
    message: str = ""  # what to show the miner before disconnecting


Callback = Callable[[StandingChange], Awaitable[None] | None]


class RegisterEvents:
    def __init__(self) -> None:
        self._subscribers: list[Callback] = []

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Register ``callback``; returns a function that unsubscribes it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def publish(self, change: StandingChange) -> None:
        for callback in list(self._subscribers):
            try:
                result = callback(change)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("register event subscriber failed for %s", change.account)
