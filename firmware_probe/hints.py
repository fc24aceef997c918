"""Passive hints: what the Stratum session already says before any API is asked.

``bmminer/2.0.0`` (Antminer stock), ``bitaxe/BM1370/v2.14.2`` (AxeOS), ``whatsminer/v1.0``,
``bosminer/...`` (Braiins OS), ``luxminer/...`` (LuxOS), ``cgminer/4.11.1`` (Avalon and others),
``cpuminer/2.5.1`` (a CPU miner: no ASIC API to ask). The hint orders which API is tried first
and, when no API answers, is recorded with ``stratum:`` as its source; it never overrides what
an API says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_ORDER = ("cgminer", "btminer", "axeos", "vnish")

# user-agent product (lower case) -> (vendor, firmware family, APIs to try first)
_AGENTS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "bmminer": ("Bitmain", "antminer_stock", ("cgminer",)),
    "antminer": ("Bitmain", "antminer_stock", ("cgminer",)),
    "bosminer": (None, "braiins_os", ("cgminer",)),
    "braiins": (None, "braiins_os", ("cgminer",)),
    "luxminer": (None, "luxos", ("cgminer",)),
    "luxos": (None, "luxos", ("cgminer",)),
    "vnish": (None, "vnish", ("vnish", "cgminer")),
    "whatsminer": ("MicroBT", "whatsminer", ("btminer",)),
    "btminer": ("MicroBT", "whatsminer", ("btminer",)),
    "bitaxe": ("Bitaxe", "axeos", ("axeos",)),
    "axeos": ("Bitaxe", "axeos", ("axeos",)),
    "esp-miner": ("Bitaxe", "axeos", ("axeos",)),
    "nerdminer": (None, "nerdminer", ()),
    "avalon": ("Canaan", "avalon", ("cgminer",)),
    "cgminer": (None, "cgminer", ("cgminer",)),
    "cpuminer": (None, "cpuminer", ()),
}
_VERSION = re.compile(r"v?\d+(?:\.\d+)+[\w.+-]*", re.IGNORECASE)
_ASIC_CHIP = re.compile(r"BM\d{4}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Hints:
    user_agent: str = ""
    vendor: str | None = None
    firmware_family: str | None = None
    firmware_version: str | None = None
    asic_chip: str | None = None  # e.g. BM1370 from a Bitaxe user agent
    version_mask: int = 0  # granted version-rolling mask (0: the miner did not ask)
    suggested_difficulty: float | None = None

    @property
    def order(self) -> tuple[str, ...]:
        first = _AGENTS.get(_product(self.user_agent), (None, "", ()))[2]
        return first + tuple(api for api in DEFAULT_ORDER if api not in first)

    def as_dict(self) -> dict[str, object]:
        return {
            "user_agent": self.user_agent,
            "version_mask": f"{self.version_mask:08x}",
            "suggested_difficulty": self.suggested_difficulty,
            "asic_chip": self.asic_chip,
        }


def _product(user_agent: str) -> str:
    return re.split(r"[/\s(]", user_agent.strip().lower(), maxsplit=1)[0] if user_agent else ""


def parse_user_agent(
    user_agent: str, version_mask: int = 0, suggested_difficulty: float | None = None
) -> Hints:
    """Pure: the hints a ``mining.subscribe`` user agent gives (unknown agents give none)."""
    ua = user_agent.strip()[:128]
    vendor, family, _ = _AGENTS.get(_product(ua), (None, None, ()))
    version = None
    chip = None
    if family is not None:
        rest = ua.split("/", 1)[1] if "/" in ua else ""
        m = _VERSION.search(rest)
        version = m.group(0) if m else None
        c = _ASIC_CHIP.search(rest)
        chip = c.group(0).upper() if c else None
    return Hints(ua, vendor, family, version, chip, version_mask, suggested_difficulty)
