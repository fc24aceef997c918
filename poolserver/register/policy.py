"""``RegisterAccountPolicy``: the Stratum ``AccountPolicy`` backed by the miner register.

``authorize`` answers from an in-memory snapshot of the register (no database round trip per
login). A watcher task polls the audit head every ``poll_interval_s``; when any process (the
operator's CLI included) changed the register, it reloads the snapshot. On every tick it also
re-evaluates each miner's license state at the current time, so a future-dated suspension, a
revocation or an expiry takes effect at its instant, and publishes a ``StandingChange`` on
``events`` for every miner that was allowed and no longer is: the Stratum server closes that
miner's live sessions. Licenses expiring within 60/30/7 days are logged once per threshold and
counted for the metrics (``license_expiring()``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from poolserver.aio import cancel_and_wait
from poolserver.register.errors import RegisterError
from poolserver.register.events import RegisterEvents, StandingChange
from poolserver.register.licensing import (
    DEFAULT_WARNING_DAYS,
    LicenseState,
    expiry_warning,
    refusal_message,
)
from poolserver.register.names import validate_account, validate_worker
from poolserver.register.repository import RegisterRepository, Snapshot, utcnow
from poolserver.register.timeutil import require_utc
from stratum.interfaces import Decision

log = logging.getLogger(__name__)


def unknown_account_message(account: str) -> str:
    return (
        f"Account {account} is not in this pool's register of licensed miners; "
        "ask the pool operator to register your company and its mining license."
    )


class RegisterAccountPolicy:
    def __init__(
        self,
        repo: RegisterRepository,
        *,
        events: RegisterEvents | None = None,
        poll_interval_s: float = 1.0,
        warning_days: Sequence[int] = DEFAULT_WARNING_DAYS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo = repo
        self.events = events or RegisterEvents()
        self.poll_interval_s = poll_interval_s
        self.warning_days = tuple(sorted(warning_days, reverse=True))
        self.clock = clock
        self._snapshot: Snapshot | None = None
        self._allowed: dict[str, bool] = {}
        self._warned: set[tuple[str, str, int]] = set()
        self._expiring: dict[int, int] = dict.fromkeys(self.warning_days, 0)
        self._states: dict[LicenseState, int] = dict.fromkeys(LicenseState, 0)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ---- AccountPolicy ---------------------------------------------------------------------

    async def authorize(self, account: str, worker: str, peer: str) -> Decision:
        try:
            account = validate_account(account)
            validate_worker(worker)
        except RegisterError as exc:
            return Decision(False, f"Login refused: {exc.field} {exc.reason}.")
        snap = self._snapshot
        if snap is None:
            try:
                snap = await self.refresh()
            except Exception:
                log.exception("register unavailable; refusing %s from %s", account, peer)
                return Decision(False, "The pool's miner register is unavailable; retry later.")
        if account not in snap.miners:
            log.info("authorize refused: unknown account %s (worker %s, %s)", account, worker, peer)
            return Decision(False, unknown_account_message(account))
        status = snap.status(account, require_utc(self.clock(), "clock"))
        if not status.allowed:
            log.info(
                "authorize refused: %s.%s from %s: license %s",
                account,
                worker,
                peer,
                status.state.value,
            )
            return Decision(False, refusal_message(status, account))
        return Decision(True)

    # ---- watcher ---------------------------------------------------------------------------

    async def refresh(self) -> Snapshot:
        async with self._lock:
            snap = await self.repo.snapshot()
            self._snapshot = snap
            return snap

    async def start(self) -> None:
        """Load the register and start the watcher task."""
        await self.tick()
        self._task = asyncio.create_task(self._run(), name="register-watcher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("register watcher: tick failed; keeping the last snapshot")

    async def tick(self) -> list[StandingChange]:
        """Reload if the register changed, re-evaluate every miner now, publish cut-offs."""
        snap = self._snapshot
        if snap is None or await self.repo.audit_head() != snap.audit_head:
            snap = await self.refresh()
        now = require_utc(self.clock(), "clock")
        changes: list[StandingChange] = []
        states = dict.fromkeys(LicenseState, 0)
        expiring = dict.fromkeys(self.warning_days, 0)
        for account in snap.miners:
            licenses = snap.licenses.get(account, ())
            status = snap.status(account, now)
            states[status.state] += 1
            if self._allowed.get(account) and not status.allowed:
                susp = status.suspension
                changes.append(
                    StandingChange(
                        account=account,
                        state=status.state.value,
                        effective_at=susp.starts_at if susp else now,
                        reason=susp.reason if susp else status.detail,
                        message=refusal_message(status, account),
                    )
                )
            self._allowed[account] = status.allowed
            warning = expiry_warning(licenses, now, self.warning_days)
            if warning is not None:
                for days in self.warning_days:
                    if days >= warning.threshold:
                        expiring[days] += 1
                key = (account, warning.license.number, warning.threshold)
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning(
                        "license %s of %s expires on %s (%d days left, within %d days)",
                        warning.license.number,
                        account,
                        warning.license.expires_on,
                        warning.days_left,
                        warning.threshold,
                    )
        self._states, self._expiring = states, expiring
        for change in changes:
            log.warning("cutting off %s: license %s", change.account, change.state)
            await self.events.publish(change)
        return changes

    # ---- values for the telemetry issue ---------------------------------------------------

    def license_states(self) -> dict[LicenseState, int]:
        """Miners per license state at the last tick (gauge ``qazpool_miners{license_state}``)."""
        return dict(self._states)

    def license_expiring(self) -> dict[int, int]:
        """Miners whose license in force ends within N days, per configured N (cumulative:
        the 60-day figure includes the 30- and 7-day ones)."""
        return dict(self._expiring)
