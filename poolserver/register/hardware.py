"""Hardware register rules: what a machine is, and how observations compare with the register.

Hashrates are integers in H/s (an S21 at 200 TH/s is 2e14, well inside a 64-bit integer); power
in watts. The firmware-probe issue supplies observations; this module only compares:
unregistered machine, model mismatch, machine registered to another miner, and a miner whose
observed hashrate exceeds its registered capacity by more than the limit (default 110 %).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from poolserver.register.errors import RegisterError

SERIAL_MAX = 64
_SERIAL_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]?)(?:H/?S|H)?\s*", re.IGNORECASE)
DEFAULT_CAPACITY_LIMIT_PCT = 110


class Finding(enum.StrEnum):
    """What a comparison found (metric label values)."""

    UNREGISTERED = "unregistered"
    MODEL_MISMATCH = "model_mismatch"
    OTHER_OWNER = "other_owner"
    OVER_CAPACITY = "over_capacity"


@dataclass(frozen=True, slots=True)
class Machine:
    serial: str
    manufacturer: str
    model: str
    rated_hashrate: int  # H/s
    power_w: int
    owner: str  # the owner miner's Stratum account
    data_centre: str
    registry_number: str = ""
    registry_date: date | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What the firmware probe saw on a machine (any field may be unknown)."""

    serial: str | None
    model: str | None = None
    hashrate: int | None = None  # H/s
    firmware: str | None = None
    where: str = ""  # e.g. the peer address or worker name


@dataclass(frozen=True, slots=True)
class Discrepancy:
    finding: Finding
    serial: str | None
    detail: str


def validate_serial(value: str, field: str = "serial") -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise RegisterError(field, "must not be empty")
    if len(text) > SERIAL_MAX:
        raise RegisterError(field, f"{len(text)} characters, at most {SERIAL_MAX} allowed")
    if not _SERIAL_OK.fullmatch(text):
        raise RegisterError(field, "only letters, digits and . _ / - are allowed")
    return text


def parse_hashrate(text: str | int, field: str = "rated_hashrate") -> int:
    """``"110T"``, ``"110 TH/s"``, ``"95.5 TH/s"``, ``"500G"`` or an integer H/s -> int H/s."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _RATE.fullmatch(str(text))
        if not m:
            raise RegisterError(field, f"not a hashrate (e.g. 110T, 110 TH/s): {str(text)[:20]!r}")
        try:
            value_d = Decimal(m.group(1)) * _UNITS[m.group(2).upper()]
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise RegisterError(field, "not a number") from None
        if value_d != value_d.to_integral_value():
            raise RegisterError(field, "finer than 1 H/s")
        value = int(value_d)
    if value <= 0:
        raise RegisterError(field, "must be positive")
    if value >= 2**63:
        raise RegisterError(field, "implausibly large")
    return value


def format_hashrate(hs: int) -> str:
    for unit in ("E", "P", "T", "G", "M", "K"):
        if hs >= _UNITS[unit]:
            return f"{Decimal(hs) / _UNITS[unit]:.2f} {unit}H/s"
    return f"{hs} H/s"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.casefold())


def same_model(machine: Machine, observed: str) -> bool:
    """``S19 Pro`` matches ``Antminer S19 Pro`` / ``s19pro``: case, spaces and punctuation aside,
    the observed name equals the model, optionally prefixed by manufacturer or product line."""
    got, want = _norm(observed), _norm(machine.model)
    return bool(want) and (got == want or (got.endswith(want) and len(got) - len(want) <= 16))


def compare_machines(
    account: str, register: Mapping[str, Machine], observations: Iterable[Observation]
) -> list[Discrepancy]:
    """Each observed machine of ``account`` against the register (keyed by serial)."""
    found: list[Discrepancy] = []
    for obs in observations:
        where = f" at {obs.where}" if obs.where else ""
        if not obs.serial:
            found.append(
                Discrepancy(Finding.UNREGISTERED, None, f"machine{where} reports no serial")
            )
            continue
        machine = register.get(obs.serial)
        if machine is None:
            found.append(
                Discrepancy(
                    Finding.UNREGISTERED,
                    obs.serial,
                    f"serial {obs.serial}{where} is not registered",
                )
            )
            continue
        if machine.owner != account:
            found.append(
                Discrepancy(
                    Finding.OTHER_OWNER,
                    obs.serial,
                    f"serial {obs.serial}{where} is registered to another miner",
                )
            )
        if obs.model and not same_model(machine, obs.model):
            found.append(
                Discrepancy(
                    Finding.MODEL_MISMATCH,
                    obs.serial,
                    f"serial {obs.serial}{where}: registered as {machine.model}, "
                    f"reports {obs.model[:64]}",
                )
            )
    return found


def registered_capacity(machines: Iterable[Machine], account: str) -> int:
    return sum(m.rated_hashrate for m in machines if m.owner == account)


def capacity_check(
    account: str,
    machines: Iterable[Machine],
    observed_hashrate: int,
    limit_pct: int = DEFAULT_CAPACITY_LIMIT_PCT,
) -> Discrepancy | None:
    """Flag ``observed > limit_pct % of registered capacity`` (exact integer comparison)."""
    capacity = registered_capacity(machines, account)
    if observed_hashrate * 100 <= capacity * limit_pct:
        return None
    return Discrepancy(
        Finding.OVER_CAPACITY,
        None,
        f"{account}: observed {format_hashrate(observed_hashrate)} exceeds {limit_pct} % of the "
        f"registered capacity {format_hashrate(capacity)}",
    )
