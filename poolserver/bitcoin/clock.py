"""The host clock against the chain: at startup and every ``[clock].check_interval_s``.

What the chain can and cannot say about the real time (``getblockchaininfo``):

- **Lower bound (any network, provable).** Consensus refuses a block whose time is more than
  2 hours past the accepting node's clock, so the real time now is at least
  ``tip.time - 2 h``. A host clock below that is *behind* by at least the difference. Shares
  would be stamped in the past and a report's UTC+5 month boundary moved by as much; the node
  refuses blocks whose ntime the pool's jobs roll past its own future window.
- **Upper bound (live networks only, statistical).** ``mediantime`` (the median of the last 11
  block times) lags the real time by about an hour on mainnet, so it bounds nothing useful; the
  tip's own time does: with a synced node (IBD is refused at startup) the tip on main, test and
  signet is rarely older than ``[clock].max_tip_age_s`` (a 2-hour gap between mainnet blocks
  happens about once in years). A host clock beyond ``tip.time + max_tip_age_s`` is *ahead* by
  at least the difference. On regtest (and the embedded chain, whose blocks this host's clock
  stamps) the chain may stand still for days: no upper bound.

The **skew** is the signed distance from the host clock to that interval (0 inside it,
negative = host behind): a lower bound on the real error, never a guess. It is logged, exported
as ``qazpool_clock_skew_seconds``, warned about beyond ``warn_s`` and refused at startup beyond
``refuse_s``. Skews smaller than the chain's resolution (minutes) are NTP's job (chrony or
systemd-timesyncd on the host; see README "Operating in production").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from poolserver.aio import cancel_and_wait
from poolserver.config import ClockConfig, ConfigError

log = logging.getLogger(__name__)

MAX_FUTURE_BLOCK_TIME_S = 2 * 60 * 60  # consensus: a block at most 2 h past the node's clock
LIVE_NETWORKS = frozenset({"main", "test", "testnet4", "signet"})


class ClockSkewError(RuntimeError):
    """The host clock is off the chain's bounds by more than ``[clock].refuse_s``."""


@dataclass(frozen=True, slots=True)
class ClockReading:
    host: float  # Unix time on this host when the node answered
    chain: str
    height: int
    tip_time: int
    median_time: int
    earliest: float  # the real time is at least this (tip time - 2 h)
    latest: float | None  # live networks: the real time is at most this (tip + max age)

    @property
    def skew_s(self) -> float:
        """Host clock minus the nearest bound: 0 inside, negative = behind, positive = ahead."""
        if self.host < self.earliest:
            return self.host - self.earliest
        if self.latest is not None and self.host > self.latest:
            return self.host - self.latest
        return 0.0

    def describe(self) -> str:
        def at(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

        skew = self.skew_s
        where = (
            "within the chain's bounds"
            if skew == 0
            else f"{abs(skew):.0f} s {'BEHIND' if skew < 0 else 'AHEAD of'} the chain's bounds"
        )
        latest = at(self.latest) if self.latest is not None else "none on " + self.chain
        return (
            f"host clock {at(self.host)} is {where} (chain {self.chain} height {self.height}: "
            f"tip time {at(self.tip_time)}, mediantime {at(self.median_time)}; real time is "
            f"after {at(self.earliest)}, before {latest})"
        )


def check_clock_config(cfg: ClockConfig) -> None:
    for name in ("check_interval_s", "max_tip_age_s", "warn_s", "refuse_s"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"clock.{name}: must be >= 0, got {getattr(cfg, name)}")
    if cfg.refuse_s and cfg.refuse_s < cfg.warn_s:
        raise ConfigError(f"clock.refuse_s: {cfg.refuse_s} is below clock.warn_s {cfg.warn_s}")


def read_clock(info: dict[str, Any], host: float, max_tip_age_s: float) -> ClockReading:
    """The bounds ``getblockchaininfo`` (``info``) puts on the real time, read at ``host``."""
    try:
        tip_time = int(info["time"])
        median = int(info["mediantime"])
        height = int(info["blocks"])
        chain = str(info["chain"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"getblockchaininfo lacks a usable {exc} field") from None
    latest = tip_time + max_tip_age_s if chain in LIVE_NETWORKS else None
    return ClockReading(host, chain, height, tip_time, median,
                        earliest=tip_time - MAX_FUTURE_BLOCK_TIME_S, latest=latest)  # fmt: skip


def verdict(reading: ClockReading, cfg: ClockConfig) -> str:
    """``ok``, ``warn`` (beyond warn_s) or ``refuse`` (beyond refuse_s; 0 = never refuse)."""
    off = abs(reading.skew_s)
    if cfg.refuse_s and off > cfg.refuse_s:
        return "refuse"
    if off > cfg.warn_s:
        return "warn"
    return "ok"


class ClockWatch:
    """Reads the chain's bounds through the node client (``rpc.call``), logs and keeps the last
    reading for the metrics. ``startup()`` raises ClockSkewError on a gross skew."""

    def __init__(
        self, rpc: Any, cfg: ClockConfig, clock: Callable[[], float] = time.time
    ) -> None:
        check_clock_config(cfg)
        self.rpc = rpc
        self.cfg = cfg
        self.clock = clock
        self.last: ClockReading | None = None
        self.checks = 0
        self.failures = 0
        self._state = "ok"
        self._task: asyncio.Task[None] | None = None

    @property
    def skew_s(self) -> float:
        return self.last.skew_s if self.last is not None else 0.0

    async def read(self) -> ClockReading:
        info = await self.rpc.call("getblockchaininfo")
        reading = read_clock(info, self.clock(), self.cfg.max_tip_age_s)
        self.last = reading
        self.checks += 1
        return reading

    async def startup(self) -> ClockReading | None:
        try:
            reading = await self.read()
        except Exception as exc:  # the node answered the startup check a moment ago
            self.failures += 1
            log.warning("clock: not checked at startup (%s); next check in %g s", exc,
                        self.cfg.check_interval_s)  # fmt: skip
            return None
        state = verdict(reading, self.cfg)
        if state == "refuse":
            raise ClockSkewError(
                f"{reading.describe()}; refusing to start beyond [clock].refuse_s = "
                f"{self.cfg.refuse_s:g} s: fix the host clock (timedatectl; chrony or "
                "systemd-timesyncd) or the node's"
            )
        self._report(reading, state, first=True)
        return reading

    def _report(self, reading: ClockReading, state: str, first: bool = False) -> None:
        extra = {"clock_skew_s": round(reading.skew_s, 3)}
        if state != "ok":
            level = logging.ERROR if state == "refuse" else logging.WARNING
            log.log(level, "clock: %s (warning beyond [clock].warn_s = %g s)",
                    reading.describe(), self.cfg.warn_s, extra=extra)  # fmt: skip
        elif first:
            log.info("clock: %s", reading.describe(), extra=extra)
        elif self._state != "ok":
            log.info("clock: back within bounds: %s", reading.describe(), extra=extra)
        else:
            log.debug("clock: %s", reading.describe())
        self._state = state

    def start(self) -> None:
        if self.cfg.check_interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.check_interval_s)
            try:
                reading = await self.read()
            except Exception as exc:  # the node is down: the template feed says so already
                self.failures += 1
                log.debug("clock: check failed: %s", exc)
                continue
            self._report(reading, verdict(reading, self.cfg))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
