"""One probe of one host: the readers in the hinted order, bounded by the whole-probe timeout,
folded into a ``ProbeResult``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from firmware_probe import normalise
from firmware_probe.hints import Hints
from firmware_probe.limits import ApiPorts, ProbeLimits
from firmware_probe.net import NetError
from firmware_probe.outcome import FAILURE_RANK, Outcome
from firmware_probe.readers import (
    AXEOS_PATHS,
    VNISH_PATHS,
    ApiReplies,
    read_axeos,
    read_btminer,
    read_cgminer,
    read_vnish,
)
from firmware_probe.result import ProbeResult

Reader = Callable[[str, int, ProbeLimits, ApiReplies], Awaitable[ApiReplies]]
READERS: dict[str, Reader] = {
    "cgminer": read_cgminer,
    "btminer": read_btminer,
    "axeos": read_axeos,
    "vnish": read_vnish,
}
# Facts from the more specific API win: the HTTP APIs and btminer name the firmware itself,
# while a cgminer-compatible API on a Vnish machine still calls itself bmminer.
PRIORITY = ("vnish", "axeos", "btminer", "cgminer")


def _facts(r: ApiReplies) -> list[normalise.Fact]:
    if r.api == "cgminer":
        return normalise.from_cgminer(r.replies)
    if r.api == "btminer":
        return normalise.from_btminer(r.replies)
    if r.api == "axeos":
        return normalise.from_axeos(r.replies[AXEOS_PATHS[0]], r.replies.get(AXEOS_PATHS[1]))
    return normalise.from_vnish(r.replies[VNISH_PATHS[0]])


def _evidence(results: list[ApiReplies], cap: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in results:
        for name, data in r.raw.items():
            text = data.decode("utf-8", errors="backslashreplace")
            if len(text) > cap:
                text = text[:cap] + f"... [{len(data)} bytes, cut at {cap}]"
            out[f"{r.api}:{name}"] = text
    return out


def fold(host: str, results: list[ApiReplies], hints: Hints, limits: ProbeLimits,
         timed_out: bool = False) -> ProbeResult:  # fmt: skip
    """Pure: the readers' replies (in the order asked) -> one result with its outcome."""
    answered = sorted((r for r in results if r.answered), key=lambda r: PRIORITY.index(r.api))
    lists = [_facts(r) for r in answered]
    lists.append(normalise.from_hints(hints.vendor, hints.firmware_family, hints.firmware_version))
    values, sources = normalise.merge(lists)
    failures = [r.failure for r in results if r.failure is not None]
    api_sources = {k for k, v in sources.items() if not v.startswith("stratum:")}
    if answered:
        if {"model", "firmware_family", "firmware_version"} <= api_sources:
            outcome = Outcome.IDENTIFIED
        elif api_sources & {"vendor", "model", "firmware_family"}:
            outcome = Outcome.PARTIAL
        else:
            outcome = Outcome.UNKNOWN_FIRMWARE
    elif failures:
        outcome = min((f.outcome for f in failures), key=FAILURE_RANK.index)
    elif timed_out:
        outcome = Outcome.TIMEOUT
    else:
        # only absent APIs: something answered, but none of the protocols we know
        outcome = Outcome.UNKNOWN_FIRMWARE if results else Outcome.REFUSED
    # With an answer, a port that refused is just an API this machine does not run.
    quiet = (Outcome.REFUSED, Outcome.UNREACHABLE) if answered else ()
    details = [f.detail for f in failures if f.outcome not in quiet]
    if timed_out:
        details.append(f"whole probe stopped at {limits.probe_timeout_s} s")
    if outcome is Outcome.UNKNOWN_FIRMWARE and not details:
        details.append("an API answered, but named no model or firmware we know")
    if outcome is Outcome.IDENTIFIED and "serial" not in values:
        details.append("serial not exposed by its read-only API (unknown, not guessed)")
    if not results and not timed_out:
        details.append("no API port to try")
    return ProbeResult(
        host=host,
        outcome=outcome,
        detail="; ".join(details)[:1000],
        apis=tuple(r.api for r in answered),
        sources=sources,
        repairs=tuple(x for r in results for x in r.repairs),
        evidence=_evidence(results, limits.max_evidence_bytes),
        hints=hints.as_dict(),
        **values,
    )


async def probe_host(
    host: str,
    ports: ApiPorts | None = None,
    limits: ProbeLimits | None = None,
    hints: Hints | None = None,
) -> ProbeResult:
    """Ask every API of ``host`` (hinted ones first) within the limits; never raises for
    anything the host does."""
    ports = ports or ApiPorts()
    limits = limits or ProbeLimits()
    hints = hints or Hints()
    results: list[ApiReplies] = []
    dead: dict[int, NetError] = {}  # port -> the connection failure seen there
    timed_out = False
    try:
        async with asyncio.timeout(limits.probe_timeout_s):
            for api in hints.order:
                port = getattr(ports, api)
                if not port:
                    continue
                if port in dead:
                    continue  # refused / silent / closed: the other API on it would be too
                if any(r.port == port and r.answered for r in results):
                    continue  # one port, one API: the one that answered there
                r = ApiReplies(api, port)
                results.append(r)  # before reading: a whole-probe timeout keeps what it got
                await READERS[api](host, port, limits, r)
                if r.failure is not None and not r.raw:
                    dead[port] = r.failure
    except TimeoutError:
        timed_out = True
    return fold(host, results, hints, limits, timed_out)
