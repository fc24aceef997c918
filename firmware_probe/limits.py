"""Timeouts, caps and ports of a probe (the composition root builds them from [probe])."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    connect_timeout_s: float = 1.0
    command_timeout_s: float = 5.0
    probe_timeout_s: float = 15.0
    max_response_bytes: int = MIB  # one reply; more is an error, never buffered further
    max_evidence_bytes: int = 16384  # raw text kept per reply as evidence

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "command_timeout_s", "probe_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive")
        if self.max_response_bytes < 1024:
            raise ValueError("max_response_bytes: at least 1024")
        if self.max_evidence_bytes < 0:
            raise ValueError("max_evidence_bytes: must not be negative")


@dataclass(frozen=True, slots=True)
class ApiPorts:
    """TCP port of each API (0 = do not try it). cgminer and btminer share 4028 on real
    machines, AxeOS and Vnish share 80; tests point each at its own fake."""

    cgminer: int = 4028
    btminer: int = 4028
    axeos: int = 80
    vnish: int = 80

    def __post_init__(self) -> None:
        for name in ("cgminer", "btminer", "axeos", "vnish"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} port: {port} is not 0..65535")

    @classmethod
    def all_on(cls, port: int) -> ApiPorts:
        """Every API tried on one port (``poolserver probe run HOST --port N``)."""
        return cls(port, port, port, port)
