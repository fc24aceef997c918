"""What one probe found: outcome, identity (each field with its source), evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware_probe.outcome import Outcome

# Identity fields, in display order. ``sources[name]`` says where each value came from, e.g.
# ``cgminer:version.Type`` or ``stratum:user_agent``.
FIELDS = (
    "vendor",
    "model",
    "firmware_family",
    "firmware_version",
    "serial",
    "board_serials",
    "psu_serial",
    "mac",
    "rated_hashrate",
    "hashrate",
    "power_w",
    "uptime_s",
)


@dataclass(slots=True)
class ProbeResult:
    host: str
    outcome: Outcome
    detail: str = ""  # why, for every outcome but identified
    apis: tuple[str, ...] = ()  # APIs that answered, e.g. ("cgminer", "vnish")
    vendor: str | None = None
    model: str | None = None  # normalised, e.g. "Antminer S19 Pro"
    firmware_family: str | None = None  # e.g. "antminer_stock", "braiins_os", "axeos"
    firmware_version: str | None = None
    serial: str | None = None  # None = not exposed (never guessed)
    board_serials: tuple[str, ...] = ()
    psu_serial: str | None = None
    mac: str | None = None  # lower-case, colon-separated
    rated_hashrate: int | None = None  # H/s
    hashrate: int | None = None  # H/s, observed by the machine itself
    power_w: int | None = None
    uptime_s: int | None = None
    sources: dict[str, str] = field(default_factory=dict)
    repairs: tuple[str, ...] = ()  # "cgminer:stats:missing_comma", ...
    evidence: dict[str, str] = field(default_factory=dict)  # "cgminer:stats" -> raw (capped)
    hints: dict[str, Any] = field(default_factory=dict)  # passive: user agent, mask, difficulty

    def identity(self) -> dict[str, Any]:
        return {
            name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in FIELDS
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "apis": list(self.apis),
            **self.identity(),
            "sources": dict(self.sources),
            "repairs": list(self.repairs),
            "hints": dict(self.hints),
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        kwargs = {name: data.get(name) for name in FIELDS}
        kwargs["board_serials"] = tuple(data.get("board_serials") or ())
        return cls(
            host=data["host"],
            outcome=Outcome(data["outcome"]),
            detail=data.get("detail", ""),
            apis=tuple(data.get("apis") or ()),
            sources=dict(data.get("sources") or {}),
            repairs=tuple(data.get("repairs") or ()),
            hints=dict(data.get("hints") or {}),
            evidence=dict(data.get("evidence") or {}),
            **kwargs,
        )
