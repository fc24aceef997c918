"""The firmware probe in the running pool (issue 15): who is probed, when, and what happens to
the result.

``StratumServer(on_authorized=service.on_authorized)`` hands over (peer, user agent, account,
worker, mask, suggested difficulty) when a worker's authorize succeeds. ``on_authorized`` only
decides and enqueues (no I/O, no await): the share path never waits for a probe. Worker tasks
(``[probe].concurrency``) probe, compare with the hardware register and store the result.

Rules: only addresses inside ``[probe].allow``; at most one probe per address queued or in
flight; an address is probed again after ``ttl_s`` or at once when its user agent changes; a
full queue drops (counted), it never blocks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from firmware_probe import ApiPorts, Outcome, ProbeLimits, ProbeResult, parse_user_agent, probe_host
from firmware_probe.hints import Hints
from poolserver.aio import cancel_and_wait
from poolserver.config import ConfigError, ProbeConfig
from poolserver.probe_store import ProbeStore, machine_key
from poolserver.probe_verdict import Verdict, judge
from poolserver.register.hardware import Finding
from stratum.interfaces import AuthorizedMiner

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SKIP_REASONS = ("outside_allow_list", "in_flight", "fresh", "queue_full")
Prober = Callable[[str, ApiPorts, ProbeLimits, Hints], Awaitable[ProbeResult]]


def parse_allow(cidrs: Sequence[str], field_name: str = "probe.allow") -> tuple[Network, ...]:
    nets = []
    for i, text in enumerate(cidrs):
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{field_name}[{i}]: not a CIDR ({exc})") from None
    return tuple(nets)


def allowed(host: str, nets: Sequence[Network]) -> bool:
    """Whether ``host`` (an IP address, IPv4-mapped IPv6 included) is inside the allow-list."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in nets)


def limits_from(cfg: ProbeConfig) -> ProbeLimits:
    try:
        return ProbeLimits(
            connect_timeout_s=cfg.connect_timeout_s,
            command_timeout_s=cfg.command_timeout_s,
            probe_timeout_s=cfg.probe_timeout_s,
            max_response_bytes=cfg.max_response_bytes,
            max_evidence_bytes=cfg.max_evidence_bytes,
        )
    except ValueError as exc:
        raise ConfigError(f"probe.{exc}") from None


def ports_from(cfg: ProbeConfig) -> ApiPorts:
    try:
        return ApiPorts(cfg.cgminer_port, cfg.btminer_port, cfg.axeos_port, cfg.vnish_port)
    except ValueError as exc:
        raise ConfigError(f"probe.{str(exc).replace(' port', '_port')}") from None


def check_probe_config(cfg: ProbeConfig) -> None:
    parse_allow(cfg.allow)
    limits_from(cfg)
    ports_from(cfg)
    if cfg.concurrency < 1:
        raise ConfigError("probe.concurrency: at least 1")
    if cfg.queue_size < 1:
        raise ConfigError("probe.queue_size: at least 1")
    if cfg.ttl_s < 0:
        raise ConfigError("probe.ttl_s: must not be negative")
    if cfg.keep_days < 1:
        raise ConfigError("probe.keep_days: at least 1")


@dataclass
class ProbeStats:
    """For the metrics (bounded labels: Outcome, SKIP_REASONS, Finding)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    store_failures: int = 0
    in_flight: int = 0
    queued: int = 0
    # latest verdict per machine: machine_key -> (findings, serial known)
    machines: dict[str, tuple[frozenset[str], bool]] = field(default_factory=dict)

    def findings(self) -> dict[str, int]:
        counts = {f.value: 0 for f in Finding}
        for found, _ in self.machines.values():
            for f in found:
                counts[f] = counts.get(f, 0) + 1
        return counts

    def serial_unknown(self) -> int:
        return sum(1 for _, known in self.machines.values() if not known)


class RegisterView:
    """The hardware register as the verdict needs it (all machines by serial)."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo

    async def by_serial(self) -> dict[str, Any]:
        return {m.serial: m for m in await self.repo.machines()}


async def _probe(host: str, ports: ApiPorts, limits: ProbeLimits, hints: Hints) -> ProbeResult:
    return await probe_host(host, ports, limits, hints)


class ProbeService:
    def __init__(
        self,
        cfg: ProbeConfig,
        store: ProbeStore,
        register: RegisterView,
        *,
        capacity_limit_pct: int = 110,
        prober: Prober = _probe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_probe_config(cfg)
        self.cfg = cfg
        self.nets = parse_allow(cfg.allow)
        self.limits = limits_from(cfg)
        self.ports = ports_from(cfg)
        self.store = store
        self.register = register
        self.capacity_limit_pct = capacity_limit_pct
        self.prober = prober
        self.clock = clock
        self.stats = ProbeStats()
        self._queue: asyncio.Queue[AuthorizedMiner] = asyncio.Queue(cfg.queue_size)
        self._pending: set[str] = set()  # queued or in flight
        self._last: dict[str, tuple[float, str]] = {}  # ip -> (monotonic time, user agent)
        self._workers: list[asyncio.Task[None]] = []
        self.done = asyncio.Condition()  # notified after each stored probe (tests, CLI)

    # ---- the share path's side: decide and enqueue, nothing else -----------------------

    def on_authorized(self, m: AuthorizedMiner) -> None:
        ip = m.peer
        if not allowed(ip, self.nets):
            self.stats.skipped["outside_allow_list"] += 1
            return
        if ip in self._pending:
            self.stats.skipped["in_flight"] += 1
            return
        last = self._last.get(ip)
        if last is not None and last[1] == m.user_agent and self.clock() - last[0] < self.cfg.ttl_s:
            self.stats.skipped["fresh"] += 1
            return
        try:
            self._queue.put_nowait(m)
        except asyncio.QueueFull:
            self.stats.skipped["queue_full"] += 1
            return
        self._pending.add(ip)
        self.stats.queued = self._queue.qsize()

    # ---- background ----------------------------------------------------------------------

    async def start(self) -> None:
        try:
            for p in await self.store.latest():
                self._remember(p.machine_key, p.findings, p.result.serial is not None,
                               p.result.outcome)  # fmt: skip
        except Exception:
            log.exception("probe: could not read earlier results (metrics start empty)")
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._worker(), name=f"probe-{i}") for i in range(self.cfg.concurrency)
        ]
        self._workers.append(loop.create_task(self._prune_daily(), name="probe-prune"))
        log.info(
            "firmware probe ON: %s, %d at once, TTL %gs",
            ", ".join(str(n) for n in self.nets) or "nothing allowed",
            self.cfg.concurrency,
            self.cfg.ttl_s,
        )

    async def stop(self) -> None:
        for t in self._workers:
            t.cancel()
        for t in self._workers:
            await cancel_and_wait(t)
        self._workers = []

    async def _prune_daily(self) -> None:
        while True:
            try:
                cutoff = datetime.now(UTC) - timedelta(days=self.cfg.keep_days)
                n = await self.store.prune(cutoff)
                if n:
                    log.info("probe: deleted %d result(s) older than %d days", n,
                             self.cfg.keep_days)  # fmt: skip
            except Exception:
                log.exception("probe: pruning old results failed (retried tomorrow)")
            expired = self.clock() - self.cfg.ttl_s
            for ip in [ip for ip, (at, _) in self._last.items() if at < expired]:
                del self._last[ip]  # would be probed again anyway
            await asyncio.sleep(86400)

    async def _worker(self) -> None:
        while True:
            m = await self._queue.get()
            self.stats.queued = self._queue.qsize()
            self.stats.in_flight += 1
            try:
                await self.probe_and_store(m)
                # only a stored result counts as probed: a database error retries next authorize
                self._last[m.peer] = (self.clock(), m.user_agent)
            except Exception:
                log.exception("probe of %s failed", m.peer)
            finally:
                self.stats.in_flight -= 1
                self._pending.discard(m.peer)
                async with self.done:
                    self.done.notify_all()

    async def probe_and_store(self, m: AuthorizedMiner) -> tuple[ProbeResult, Verdict]:
        hints = parse_user_agent(m.user_agent, m.version_mask, m.suggested_difficulty)
        result = await self.prober(m.peer, self.ports, self.limits, hints)
        self.stats.outcomes[result.outcome.value] += 1
        register = await self.register.by_serial()
        observed = None
        if result.hashrate:
            # the account's other machines (latest probe of each) plus this one
            key = machine_key(result)
            others = [p for p in await self.store.latest(m.account) if p.machine_key != key]
            observed = result.hashrate + sum(
                p.result.hashrate or 0
                for p in others
                if p.result.outcome in (Outcome.IDENTIFIED, Outcome.PARTIAL)
            )
        verdict = judge(result, m.account, register, observed, self.capacity_limit_pct)
        try:
            await self.store.save(
                result, verdict, account=m.account, worker=m.worker, user_agent=m.user_agent
            )
        except Exception:
            self.stats.store_failures += 1
            raise
        self.stats.stored += 1
        self._remember(machine_key(result), verdict.as_json(), verdict.serial_known,
                       result.outcome)  # fmt: skip
        log.info(
            "probe %s (%s.%s, %r): %s %s %s, register: %s",
            m.peer,
            m.account,
            m.worker,
            m.user_agent,
            result.outcome.value,
            result.model or "-",
            result.firmware_family or "-",
            verdict.summary,
        )
        return result, verdict

    def _remember(self, key: str, findings: list[dict[str, Any]], serial_known: bool,
                  outcome: Outcome) -> None:  # fmt: skip
        if outcome not in (Outcome.IDENTIFIED, Outcome.PARTIAL):
            return
        self.stats.machines[key] = (frozenset(str(f["finding"]) for f in findings), serial_known)
