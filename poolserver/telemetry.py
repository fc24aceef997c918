"""Figures the metrics exporter needs that no component keeps by itself (I/O edge, loop side).

- ``RpcStats`` + ``InstrumentedRpc``: per-node RPC latency, errors and up, recorded around each
  ``NodeClient.call`` (the wrapper keeps ``name``/``call``/``close``, so ``NodeGroup`` and the
  block submitter use it unchanged).
- ``LoopSampler``: one task on the event loop that measures the loop's lag (how late a short
  sleep wakes up) and copies loop-owned state the HTTP thread must not iterate (authorized
  workers by firmware family, spool size).
- ``DbPoller``: ledger balances, payments, found blocks, licenses and the PPLNS window fill read
  from the database every ``interval_s`` (never on a scrape) into a ``DbSnapshot``.
- ``firmware_family``: the bounded label for a Stratum user agent (pure).

The exporter (``poolserver.metrics``) only reads these objects; everything here is written on the
event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from poolserver.aio import cancel_and_wait
from stratum.stats import Histogram as Histogram  # re-exported: the one histogram type

log = logging.getLogger(__name__)

# Histogram buckets (seconds) for node RPCs: a getblocktemplate on mainnet takes 10-500 ms.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
NOTIFY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The RPC methods the pool calls; anything else is counted as "other" (bounded label values).
RPC_METHODS = frozenset(
    {
        "getblocktemplate", "submitblock", "getblockchaininfo", "getblock", "getblockhash",
        "getbestblockhash", "getnetworkinfo", "validateaddress", "getaddressinfo", "sendmany",
        "gettransaction", "listtransactions", "getbalances", "getbalance", "listsinceblock",
        "getwalletinfo", "estimatesmartfee", "getmininginfo",
    }
)  # fmt: skip
EXPIRY_DAYS = (60, 30, 7)


# ---- node RPC ------------------------------------------------------------------------------


@dataclass
class NodeRpcStats:
    up: bool = False  # the last call got an answer (an RPC error object counts as an answer)
    calls: Counter[str] = field(default_factory=Counter)  # method -> calls
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, kind) -> count
    latency: dict[str, Histogram] = field(default_factory=dict)  # method -> histogram
    last_success_at: float = 0.0


@dataclass
class RpcStats:
    nodes: dict[str, NodeRpcStats] = field(default_factory=dict)

    def node(self, name: str) -> NodeRpcStats:
        if name not in self.nodes:
            self.nodes[name] = NodeRpcStats()
        return self.nodes[name]


def error_kind(exc: BaseException) -> str:
    """Bounded label for an RPC failure (class names of poolserver.bitcoin.node, by name so this
    module does not import the node client)."""
    names = {c.__name__ for c in type(exc).__mro__}
    for kind, cls in (
        ("timeout", "RpcTimeout"),
        ("auth", "RpcAuthError"),
        ("unavailable", "NodeUnavailable"),
        ("transient", "RpcTransientError"),
        ("rpc_error", "RpcError"),
    ):
        if cls in names:
            return kind
    return "other"


class InstrumentedRpc:
    """Wraps one node's ``Rpc`` and records each call in ``RpcStats`` under the node's name."""

    def __init__(self, inner: Any, stats: RpcStats) -> None:
        self.inner = inner
        self.name: str = inner.name
        self._stats = stats.node(self.name)

    def __getattr__(self, attr: str) -> Any:  # url, timeout, ... of the wrapped client
        return getattr(self.inner, attr)

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        label = method if method in RPC_METHODS else "other"
        s = self._stats
        start = time.perf_counter()
        try:
            result = await self.inner.call(method, *params, timeout=timeout)
        except Exception as exc:
            kind = error_kind(exc)
            s.errors[(label, kind)] += 1
            s.up = kind in ("rpc_error", "transient")  # the node answered, with an error
            raise
        finally:
            s.calls[label] += 1
            s.latency.setdefault(label, Histogram(RPC_BUCKETS)).observe(time.perf_counter() - start)
        s.up = True
        s.last_success_at = time.time()
        return result

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()


def instrument_nodes(rpc: Any, stats: RpcStats) -> Any:
    """Wrap every member of a ``NodeGroup`` in place (returns ``rpc``); other sources (the
    embedded chain) are returned unchanged: they have no network to measure."""
    members = getattr(rpc, "members", None)
    if isinstance(members, list):
        rpc.members = [m if isinstance(m, InstrumentedRpc) else InstrumentedRpc(m, stats)
                       for m in members]  # fmt: skip
    return rpc


# ---- firmware family ---------------------------------------------------------------------------

# (substring of the lower-cased user agent, family); first match wins. Bounded label values.
FIRMWARE_FAMILIES = (
    ("bosminer", "braiins"),
    ("braiins", "braiins"),
    ("luxos", "luxos"),
    ("luxminer", "luxos"),
    ("vnish", "vnish"),
    ("whatsminer", "whatsminer"),
    ("btminer", "whatsminer"),
    ("bitaxe", "bitaxe"),
    ("esp-miner", "bitaxe"),
    ("nerdminer", "nerdminer"),
    ("bmminer", "antminer"),
    ("antminer", "antminer"),
    ("avalon", "avalon"),
    ("cgminer", "cgminer"),
    ("bfgminer", "bfgminer"),
    ("cpuminer", "cpuminer"),
    ("nicehash", "nicehash"),
)
FIRMWARE_LABELS = (*dict.fromkeys(f for _, f in FIRMWARE_FAMILIES), "other", "unknown")


def firmware_family(user_agent: str) -> str:
    """``cgminer/4.11.1`` -> ``cgminer``; empty -> ``unknown``; unrecognised -> ``other``."""
    agent = user_agent.strip().lower()
    if not agent:
        return "unknown"
    for needle, family in FIRMWARE_FAMILIES:
        if needle in agent:
            return family
    return "other"


# ---- loop sampler ---------------------------------------------------------------------------


@dataclass
class LoopSnapshot:
    lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))
    last_lag_seconds: float = 0.0
    workers_by_firmware: dict[str, int] = field(default_factory=dict)
    spool_bytes: int = 0
    spool_files: int = 0
    sampled_at: float = 0.0


class LoopSampler:
    """Every ``interval_s``: loop lag (a sleep's overshoot) and loop-owned state copied for the
    exporter's thread. ``sessions()`` returns the server's sessions (anything with
    ``authorized``/``user_agent``); ``spool_dir`` is the journal's spool directory, if any."""

    def __init__(
        self,
        *,
        sessions: Callable[[], Iterable[Any]] = tuple,
        spool_dir: Path | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.snapshot = LoopSnapshot()
        self.sessions = sessions
        self.spool_dir = spool_dir
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._spool_every = max(1, int(5.0 / interval_s))  # disk look-up every ~5 s

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def sample_sessions(self) -> None:
        families: Counter[str] = Counter()
        for s in list(self.sessions()):
            if getattr(s, "workers", None):  # authorized at least one worker
                families[firmware_family(getattr(s, "user_agent", "") or "")] += 1
        self.snapshot.workers_by_firmware = dict(families)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - start - self.interval_s)
            self.snapshot.lag.observe(lag)
            self.snapshot.last_lag_seconds = lag
            try:
                self.sample_sessions()
                if self.spool_dir is not None and n % self._spool_every == 0:
                    size, files = await asyncio.to_thread(spool_usage, self.spool_dir)
                    self.snapshot.spool_bytes, self.snapshot.spool_files = size, files
            except Exception:  # telemetry must never take the pool down
                log.exception("metrics sampler failed")
            self.snapshot.sampled_at = time.time()
            n += 1


def spool_usage(directory: Path) -> tuple[int, int]:
    """(bytes, files) of the journal spool: shares acknowledged but not yet in the database."""
    if not directory.exists():
        return 0, 0
    size = files = 0
    for p in directory.glob("*.jsonl"):
        with contextlib.suppress(OSError):
            st = p.stat()
            if st.st_size > 0:
                size += st.st_size
                files += 1
    return size, files


# ---- database poller ------------------------------------------------------------------------


@dataclass
class DbSnapshot:
    """Figures read from the database; ``ok`` is False until the first successful poll."""

    ok: bool = False
    ledger_satoshis: dict[str, int] = field(default_factory=dict)  # state -> satoshis
    payments: dict[str, int] = field(default_factory=dict)  # status -> count
    payment_satoshis: dict[str, int] = field(default_factory=dict)  # status -> satoshis
    found_blocks: dict[str, int] = field(default_factory=dict)  # status -> count
    miners_by_license_state: dict[str, int] = field(default_factory=dict)
    licenses_expiring: dict[int, int] = field(default_factory=dict)  # days -> miners
    pplns_window_difficulty: float = 0.0  # N = k x network difficulty
    pplns_window_work_difficulty: float = 0.0  # share difficulty present in the window
    payment_fees_satoshis: int = 0  # network fees of every sent payment tx (payments.fee_sats)
    polled_at: float = 0.0
    poll_seconds: float = 0.0
    errors: int = 0
    polls: int = 0


def pplns_fill(work: Fraction | float, window: Fraction | float) -> float:
    """Fill ratio of the PPLNS window in [0, 1]; 0 when the window is unknown."""
    if window <= 0:
        return 0.0
    return float(min(Fraction(1), Fraction(work) / Fraction(window)))


def expiring_counts(
    expiry_by_account: dict[str, datetime], now: datetime, days: Iterable[int] = EXPIRY_DAYS
) -> dict[int, int]:
    """Accounts whose active license (the latest-expiring one) ends within each horizon."""
    return {
        d: sum(1 for at in expiry_by_account.values() if now <= at <= now + timedelta(days=d))
        for d in days
    }


class DbPoller:
    """Runs ``read()`` (an async function returning a ``DbSnapshot`` body) every ``interval_s``.
    A failed read keeps the last figures and counts an error (the exporter shows their age)."""

    def __init__(
        self, read: Callable[[], Awaitable[DbSnapshot]], *, interval_s: float = 15.0
    ) -> None:
        self.read = read
        self.interval_s = interval_s
        self.snapshot = DbSnapshot()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def poll_once(self) -> None:
        start = time.perf_counter()
        try:
            fresh = await self.read()
        except Exception as exc:
            self.snapshot.errors += 1
            log.warning("metrics: database read failed: %s", exc)
            return
        fresh.errors = self.snapshot.errors
        fresh.polls = self.snapshot.polls + 1
        fresh.ok = True
        fresh.polled_at = time.time()
        fresh.poll_seconds = time.perf_counter() - start
        self.snapshot = fresh

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)


def utcnow() -> datetime:
    return datetime.now(UTC)
