"""A probe result against the hardware register, through its existing comparison.

``compare_machines`` and ``capacity_check`` (poolserver.register.hardware) decide; this module
only adds what the probe brings: a machine whose read-only API exposes no serial is recorded as
``serial unknown`` (nothing is guessed, and it is not called unregistered for that alone), and
the capacity check adds up what the account's probed machines report themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from firmware_probe import Outcome, ProbeResult
from poolserver.register.hardware import (
    Discrepancy,
    Finding,
    Machine,
    Observation,
    capacity_check,
    compare_machines,
)

OBSERVED = (Outcome.IDENTIFIED, Outcome.PARTIAL)


@dataclass(frozen=True, slots=True)
class Verdict:
    findings: tuple[Discrepancy, ...]
    compared: bool  # False: nothing identified, so nothing to compare
    serial_known: bool

    @property
    def summary(self) -> str:
        if not self.compared:
            return "not compared"
        parts = [d.finding.value for d in self.findings]
        if not self.serial_known:
            parts.append("serial unknown")
        return ", ".join(dict.fromkeys(parts)) or "registered"

    def as_json(self) -> list[dict[str, str | None]]:
        return [
            {"finding": d.finding.value, "serial": d.serial, "detail": d.detail}
            for d in self.findings
        ]


def judge(
    result: ProbeResult,
    account: str,
    register: Mapping[str, Machine],
    account_hashrate: int | None,
    limit_pct: int,
) -> Verdict:
    """``account`` "" (a CLI probe with no miner named): ownership is not judged.
    ``account_hashrate``: what the account's probed machines report in total (None: skip)."""
    if result.outcome not in OBSERVED:
        return Verdict((), False, result.serial is not None)
    findings: list[Discrepancy] = []
    if result.serial is not None:
        obs = Observation(
            serial=result.serial,
            model=result.model,
            hashrate=result.hashrate,
            firmware=result.firmware_family,
            where=result.host,
        )
        found = compare_machines(account, register, [obs])
        findings += [d for d in found if account or d.finding is not Finding.OTHER_OWNER]
    if account and account_hashrate:
        owned: Iterable[Machine] = (m for m in register.values() if m.owner == account)
        over = capacity_check(account, owned, account_hashrate, limit_pct)
        if over is not None:
            findings.append(over)
    return Verdict(tuple(findings), True, result.serial is not None)
