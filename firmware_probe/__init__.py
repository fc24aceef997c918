"""Identifying ASIC miners through their read-only management APIs (issue 15).

Imports nothing of the project. ``probe_host`` talks to one address (cgminer/bmminer RPC,
Whatsminer btminer, AxeOS and Vnish HTTP; never a write command, never a password) and returns a
``ProbeResult``: an ``Outcome``, the normalised identity with the source of each field, and the
raw replies (size-capped) as evidence. See README.md here for the formats and why not pyasic.
"""

from firmware_probe.hints import Hints, parse_user_agent
from firmware_probe.limits import ApiPorts, ProbeLimits
from firmware_probe.outcome import Outcome
from firmware_probe.probe import probe_host
from firmware_probe.result import ProbeResult

__all__ = [
    "ApiPorts",
    "Hints",
    "Outcome",
    "ProbeLimits",
    "ProbeResult",
    "parse_user_agent",
    "probe_host",
]
