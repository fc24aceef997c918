"""One typed configuration object, built from TOML at startup and passed down.

No other module reads files or the environment for settings. Every option has a default, so
``poolserver run`` with no file is a working pool; ``config.example.toml`` documents them all.
Each TOML table maps to one dataclass below; unknown tables or keys are refused with their
dotted name, wrong types with the expected type.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names it."""


@dataclass
class PoolConfig:
    name: str = "qazpool"
    # Written into every coinbase scriptSig (ASCII, kept within the 100-byte scriptSig limit).
    tag: str = "/qazpool/"
    # Where SQLite, spool files and found blocks live when no other path is given.
    data_dir: str = "./qazpool-data"
    # Node id (0..255) placed in the high bits of extranonce1 so several pool processes never
    # hand out the same extranonce1.
    node_id: int = 0
    log_level: str = "INFO"
    # "text" (one line, UTC+5 time) or "json" (one object per line for log shippers).
    log_format: str = "text"
    # Instances sharing one database: the node_id is leased in the database with this TTL
    # (renewed every TTL/3); a second live process with the same node_id is refused at startup,
    # a restart after kill -9 waits at most this long.
    lease_ttl_s: float = 15.0


@dataclass
class ListenerConfig:
    host: str = "0.0.0.0"
    port: int = 3333
    start_difficulty: float = 1.0
    min_difficulty: float = 1.0
    max_difficulty: float = 1e12
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class VardiffSettings:
    target_interval_s: float = 10.0
    retarget_interval_s: float = 60.0
    retarget_shares: int = 30
    variance: float = 0.3
    max_step: float = 4.0
    max_step_up: float = 64.0
    decay_window_s: float = 300.0


@dataclass
class StratumConfig:
    listeners: list[ListenerConfig] = field(default_factory=lambda: [ListenerConfig()])
    extranonce1_size: int = 4
    extranonce2_size: int = 8
    max_line_bytes: int = 16384
    version_rolling_mask: str = "1fffe000"
    # Protection and session handling (issue 5); see config.example.toml for each one.
    auth_timeout_s: float = 10.0
    idle_timeout_s: float = 900.0
    keepalive_s: float = 55.0
    max_connections_per_ip: int = 2048
    max_connections: int = 0  # 0 = automatic (open-files limit - fdlimit.HEADROOM)
    max_write_buffer_bytes: int = 131072
    ban_min_submits: int = 50
    ban_reject_ratio: float = 0.9
    ban_seconds: float = 600.0
    auth_failures_allowed: int = 5
    auth_backoff_s: float = 10.0
    auth_backoff_max_s: float = 600.0
    resume_window_s: float = 300.0
    drain_timeout_s: float = 5.0
    vardiff: VardiffSettings = field(default_factory=lambda: VardiffSettings())


@dataclass
class NodeEndpoint:
    url: str = "http://127.0.0.1:8332"
    user: str = ""
    password: str = ""
    cookie_file: str = ""
    zmq_hashblock: str = ""


@dataclass
class NodeConfig:
    # Empty list: use the embedded regtest chain (see [chain]).
    nodes: list[NodeEndpoint] = field(default_factory=list)
    rpc_timeout_s: float = 10.0
    template_refresh_s: float = 30.0
    # Wait for new blocks with getblocktemplate long polling (longpollid).
    longpoll: bool = True
    # Longest a long-poll request may stay open before it is re-issued.
    longpoll_timeout_s: float = 120.0
    # While the node is unreachable: first retry delay, doubled up to the maximum.
    retry_s: float = 1.0
    retry_max_s: float = 10.0
    # Found blocks: resubmit on transport errors for this long (per node) before giving up.
    submit_retry_window_s: float = 600.0
    # Found blocks lost between submission and record (a crash): at startup and every
    # recover_interval_s, the last recover_depth blocks of the chain are scanned for coinbases
    # paying the pool and any the database lacks is imported (0 = off).
    recover_depth: int = 144
    recover_interval_s: float = 600.0


@dataclass
class ChainConfig:
    # The embedded chain used when no node is configured. Never allowed with network="main".
    network: str = "regtest"
    # Payout address of the pool's coinbase output (must match the network).
    payout_address: str = "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua"
    # Embedded chain only. Network difficulty as compact nBits hex; "207fffff" (regtest) makes
    # every share a block. Empty = derived: a block takes about `shares_per_block` shares at
    # the lowest listener start_difficulty.
    bits: str = ""
    shares_per_block: int = 300
    # Synthetic mempool transactions in every embedded template (real serialization).
    mempool_tx_count: int = 3
    # Keep the embedded chain's blocks in <data_dir>/embedded-chain.jsonl across restarts.
    persist: bool = True
    # Embedded chain only: the rest of the network finds a block every this many seconds on
    # average (0 = never; only the pool's miners advance the chain).
    network_block_interval_s: float = 0.0


@dataclass
class StorageConfig:
    # SQLAlchemy async URL; empty = sqlite+aiosqlite:///<data_dir>/qazpool.sqlite3
    url: str = ""
    # Share journal group commit: a batch is committed when it holds batch_size shares or when
    # its oldest share has waited flush_interval_ms, whichever comes first.
    flush_interval_ms: float = 5.0
    batch_size: int = 2000
    # Append-only fsync'd spool used while the database is unreachable; empty = <data_dir>/spool.
    spool_dir: str = ""
    # Seconds between reconnection attempts (and spool replays) while the database is down.
    retry_interval_s: float = 2.0
    # Raw shares older than this are rolled up into exact per-miner hourly sums.
    retention_days: int = 30
    # What a report or an inspection needs (hourly sums, allocations, ledger, payments, audit
    # and security logs, filed reports) is kept at least this many years and never rolled away.
    legal_retention_years: int = 5
    # SQLite only: PRAGMA synchronous. FULL fsyncs the WAL at every commit (survives power loss).
    sqlite_synchronous: str = "FULL"
    # Connections kept open by the engine (PostgreSQL); SQLite uses one writer connection.
    pool_size: int = 5


@dataclass
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9108
    enabled: bool = True
    # Ledger, payments, licenses and PPLNS fill are read from the database this often (seconds),
    # never on a scrape; 0 = not at all (e.g. on all but one of several instances on a database).
    db_poll_interval_s: float = 15.0


@dataclass
class PayoutsConfig:
    # PPLNS window N = pplns_k x network difficulty of the block. A decimal string, read exactly
    # ("2", "1.5"); never a float, so the window is the same on every machine.
    pplns_k: str = "2"
    # Underfilled window (less work than N exists): "normalise" shares the whole reward among the
    # work present; "pool_remainder" pays weight/N and books the rest to the pool.
    underfill_policy: str = "normalise"
    # Confirmations before a block's allocation is credited to the ledger (coinbase maturity).
    maturity_confirmations: int = 100
    # Pool fee in basis points applied from the pool's start when the register has no dated rate.
    pool_fee_bps: int = 100
    # Bonus to the block finder, in basis points of the block reward, before the PPLNS split.
    finder_bonus_bps: int = 0
    # Smallest balance paid out; smaller balances wait.
    min_payout_sats: int = 100_000
    # Outputs per payment transaction (one sendmany per batch).
    max_outputs_per_batch: int = 100
    # Confirmations after which a payment batch counts as confirmed.
    payment_confirmations: int = 1
    # Who pays a payout transaction's network fee: "pool" (a tx_fee ledger entry on @pool) or
    # "miners" (subtracted from the outputs; each payment row shows the miner's share).
    fee_policy: str = "pool"
    # Embedded wallet only: fee rate in sat/vB (the fee is this x the transaction's vsize).
    fee_rate_sat_vb: int = 2
    # fee_policy "pool": satoshis kept back from the spendable balance per batch for its fee.
    fee_reserve_sats: int = 20_000
    # Payout service (block -> allocation -> ledger -> payments); see config.example.toml.
    enabled: bool = True
    tick_interval_s: float = 60.0
    allocation_delay_s: float = 30.0
    wallet: str = "auto"
    wallet_name: str = ""
    wallet_minconf: int = 1
    payments_enabled: bool = True
    payment_retry_after_s: float = 3600.0
    retention_interval_s: float = 86400.0
    # Hot-wallet caps (0 = off): a batch with an output above max_payment_sats, or that would
    # take the day's (UTC+5) payments above max_daily_sats, waits in "awaiting_approval" until
    # `poolserver payouts approve BATCH`.
    max_payment_sats: int = 0
    max_daily_sats: int = 0
    # Low-balance warning: logged and exported when the wallet's spendable balance is below what
    # the next payment run needs (payable balances + fee_reserve_sats per batch) or below this
    # floor (0 = only the first).
    low_balance_warning_sats: int = 0
    # Several instances on one database: one payout/maturity leader holds a lease of this many
    # seconds (renewed every third); the others try to take it every leader_retry_s.
    leader_ttl_s: float = 10.0
    leader_retry_s: float = 1.0


@dataclass
class SecurityConfig:
    # The security event log (refused logins, bans, connection floods, operator CLI actions,
    # config changes): events wait in a queue of this many (more are dropped and counted) and
    # are written in batches every flush_interval_s.
    queue_size: int = 10000
    flush_interval_s: float = 0.5
    # Repeated connection refusals / backed-off logins from one IP: one event per this many
    # seconds, with a count.
    flood_report_s: float = 60.0


@dataclass
class RegisterConfig:
    # License enforcement at mining.authorize: "on" (only miners with a license in force),
    # "off" (any well-formed account.worker gets work), "auto" (on with a real node, off on the
    # embedded regtest chain so a new user trying the pool gets work at once).
    enforce: str = "auto"
    # Network payout addresses are checked against; empty = [chain].network.
    network: str = ""
    # Seconds between the running pool's checks for register changes (suspensions made with the
    # CLI cut off live sessions within this time).
    poll_interval_s: float = 1.0
    # Licenses expiring within these many days are logged and counted for the metrics.
    expiry_warning_days: list[int] = field(default_factory=lambda: [60, 30, 7])
    # A miner is flagged when its observed hashrate exceeds this % of its registered capacity.
    capacity_limit_pct: int = 110
    # Name recorded as "who" in the audit log for CLI changes; empty = the OS user name.
    operator: str = ""


@dataclass
class ReportsConfig:
    # Column-header language of `poolserver report ...` files: "kk", "ru" or "en" (--lang wins).
    language: str = "ru"
    # The previous month's reports are due on this day (1..31, clamped to the month's end) of
    # the following month, Kazakhstan time; the running pool logs and exports the deadline.
    deadline_day: int = 10
    # Ed25519 signing key; empty = <data_dir>/report-signing.key (--key wins).
    key_file: str = ""
    # Where reports are written (one directory per report and period); empty = <data_dir>/reports.
    # The running pool counts the period's miners' report as generated when
    # <out_dir>/miners-income_<period>/manifest.json exists (--out elsewhere is not seen).
    out_dir: str = ""
    # Seconds between the running pool's deadline log lines (0 = only at startup).
    reminder_interval_s: float = 86400.0


@dataclass
class ClockConfig:
    # Host clock against the chain (poolserver/bitcoin/clock.py): at startup and this often
    # (seconds; 0 = only at startup).
    check_interval_s: float = 600.0
    # main/test/signet: a tip older than this by the host clock means the host is ahead.
    max_tip_age_s: float = 7200.0
    # Warn when the host clock is this far outside the chain's bounds; refuse to start beyond
    # refuse_s (0 = never refuse).
    warn_s: float = 60.0
    refuse_s: float = 3600.0


@dataclass
class ProbeConfig:
    # Firmware probe (issue 15): after mining.authorize, ask the miner's own read-only API what
    # machine it is and compare it with the hardware register. Off unless enabled.
    enabled: bool = False
    # Only addresses inside these CIDRs are ever probed (the pool's own farm networks); empty
    # = none, even when enabled. `poolserver probe run` obeys the same list.
    allow: list[str] = field(default_factory=list)
    concurrency: int = 8
    # Re-probe an address after this long, or at once when its Stratum user agent changes.
    ttl_s: float = 86400.0
    connect_timeout_s: float = 1.0
    command_timeout_s: float = 5.0
    probe_timeout_s: float = 15.0
    max_response_bytes: int = 1048576
    # Raw reply text kept per command as evidence.
    max_evidence_bytes: int = 16384
    # Port of each API (0 = never try it).
    cgminer_port: int = 4028
    btminer_port: int = 4028
    axeos_port: int = 80
    vnish_port: int = 80
    # Addresses waiting for a probe beyond this are dropped (counted), never the share path.
    queue_size: int = 1024
    # Stored results older than this are deleted daily, except each machine's latest.
    keep_days: int = 90


@dataclass
class WebConfig:
    # The pool web page and read-only JSON API (issue 16), served by `poolserver run`.
    enabled: bool = True
    # Bind address; keep 127.0.0.1 and put a TLS reverse proxy in front (README).
    host: str = "127.0.0.1"
    port: int = 8080
    # Per client IP: a token bucket of `rate_limit_burst` requests refilled at this rate.
    rate_limit_per_minute: int = 120
    rate_limit_burst: int = 30
    # Peers allowed to name the client in X-Forwarded-For (the reverse proxy, e.g. "127.0.0.1");
    # empty = the TCP peer is the client.
    trusted_proxies: list[str] = field(default_factory=list)
    # SHA-256 (hex) of the regulator's read token (`poolserver web regulator-token` makes one);
    # empty = the regulator view is off.
    regulator_token_sha256: str = ""
    # Page languages offered, first = default ("kk", "ru", "en").
    languages: list[str] = field(default_factory=lambda: ["kk", "ru", "en"])
    # Hashrate shown on the page and per worker: accepted difficulty over this many seconds.
    hashrate_window_s: int = 600
    # Workers listed for an account: those with a share in this many hours.
    worker_history_h: int = 24


@dataclass
class Config:
    pool: PoolConfig = field(default_factory=PoolConfig)
    stratum: StratumConfig = field(default_factory=StratumConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    payouts: PayoutsConfig = field(default_factory=PayoutsConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    web: WebConfig = field(default_factory=WebConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.pool.data_dir)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"{name}: unknown option (known: {', '.join(sorted(known))})")
        kwargs[key] = _convert(hints[key], value, name)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {type(value).__name__}")
        return [_convert(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _convert(option, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{name}: expected nothing")
        return None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{name}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def load_config(path: str | Path | None = None) -> Config:
    """The embedded defaults, overridden by the TOML file at ``path`` if given."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {p}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "")
