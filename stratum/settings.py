"""Settings of the Stratum server, as plain dataclasses (``poolserver.app`` fills them from the
TOML config; stratum never reads configuration itself)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from stratum.vardiff import VardiffConfig


@dataclass(frozen=True, slots=True)
class PortSettings:
    host: str = "0.0.0.0"
    port: int = 3333
    start_difficulty: float = 1.0
    min_difficulty: float = 1.0
    max_difficulty: float = 1e12
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_difficulty <= self.max_difficulty:
            raise ValueError(
                f"port {self.port}: need 0 < min_difficulty ({self.min_difficulty}) "
                f"<= max_difficulty ({self.max_difficulty})"
            )
        if not self.min_difficulty <= self.start_difficulty <= self.max_difficulty:
            raise ValueError(
                f"port {self.port}: start_difficulty {self.start_difficulty} is outside "
                f"[{self.min_difficulty}, {self.max_difficulty}]"
            )

    def clamp(self, difficulty: float) -> float:
        return min(max(difficulty, self.min_difficulty), self.max_difficulty)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    ports: tuple[PortSettings, ...] = (PortSettings(),)
    extranonce2_size: int = 8
    max_line_bytes: int = 16384
    version_mask: int = 0x1FFFE000
    # A connection must subscribe and authorize within this time.
    auth_timeout_s: float = 10.0
    # Nothing received for this long: drop the connection.
    idle_timeout_s: float = 900.0
    # Send the current job again when nothing was sent for this long (cgminer: 90 s = dead pool).
    keepalive_s: float = 55.0
    # 0 = unlimited. Farms behind one NAT address need a high value.
    max_connections_per_ip: int = 2048
    # Open connections in total (0 = no cap). Connections beyond it are refused at once; open
    # sessions are never dropped for it. poolserver fills it in from [stratum].max_connections
    # (automatic: the open-files limit minus the descriptors kept for storage, nodes and logs).
    max_connections: int = 0
    # A client whose unread replies exceed this is dropped (the server's memory stays bounded).
    max_write_buffer_bytes: int = 128 * 1024
    # Invalid-share ban: after ban_min_submits submits, a reject ratio >= ban_reject_ratio closes
    # the connection and refuses its worker names from that IP for ban_seconds (stale and
    # low-difficulty shares do not count as invalid; a NAT address is not banned as a whole).
    ban_min_submits: int = 50
    ban_reject_ratio: float = 0.9
    ban_seconds: float = 600.0
    # Authorization failures: after auth_failures_allowed failures of one account from one IP
    # that account is refused there for auth_backoff_s, doubling up to auth_backoff_max_s; an IP
    # refused for more than auth_failures_allowed accounts is refused outright (a scanner).
    auth_failures_allowed: int = 5
    auth_backoff_s: float = 10.0
    auth_backoff_max_s: float = 600.0
    # How long a disconnected session's extranonce1 is kept for it to resume.
    resume_window_s: float = 300.0
    # Grace period for in-flight shares on shutdown.
    drain_timeout_s: float = 5.0
    sweep_interval_s: float = 1.0
    vardiff: VardiffConfig = field(default_factory=VardiffConfig)
    # Security log: repeated connection refusals (per-IP cap, banned IP) and backed-off logins
    # from one IP are reported as one event per this many seconds, with a count.
    flood_report_s: float = 60.0

    def __post_init__(self) -> None:
        if not 2 <= self.extranonce2_size <= 16:
            raise ValueError(
                f"extranonce2_size must be 2..16 (cgminer), got {self.extranonce2_size}"
            )
        if self.max_connections < 0:
            raise ValueError(
                f"max_connections must be >= 0 (0 = no cap), got {self.max_connections}"
            )
        if self.max_line_bytes < 512:
            raise ValueError(f"max_line_bytes must be >= 512, got {self.max_line_bytes}")
        if not 0 <= self.version_mask <= 0xFFFFFFFF:
            raise ValueError(f"version_mask must be a uint32, got {self.version_mask:#x}")
