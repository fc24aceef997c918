"""Runs cases one after another and adds the checks every case shares.

Around each case: the pool's RSS is sampled (peak growth bounded), the honest miners' accepted
share rate over the case's window is compared with their rate before the attacks (>= 90%),
the journal must hold at least every share the honest miners were acknowledged (nothing lost),
the attacker's account gains no journaled share beyond what the case itself legitimately got
accepted, and a fresh connection from another address must still be answered. A case holds
only if its own observation and all of these hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poolserver.aio import wait_event
from poolserver.security_suite.context import Context
from poolserver.security_suite.honest import MAX_ACK_S
from poolserver.security_suite.model import (
    ERROR,
    FAILED,
    HELD,
    NOT_APPLICABLE,
    Case,
    Observation,
    Result,
)

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    rss_growth_bytes: int = 96 * MIB  # peak RSS over the case's start
    honest_ratio: float = 0.9  # honest accepted-share rate during the case / before attacks
    min_window_s: float = 3.0  # every case's measuring window is at least this long
    case_timeout_s: float = 180.0


@dataclass
class Baseline:
    honest_rate: float = 0.0  # accepted shares per second before the attacks
    honest_offered: float = 0.0  # shares per second the honest miners submitted then
    honest_fraction: float = 0.0  # of their shares accepted within MAX_ACK_S then
    honest_start: int = 0  # the honest account's journaled shares before the fleet started
    rss: int = 0
    notes: list[str] = field(default_factory=list)


ProgressFn = Callable[[str, Case | None, Result | None, int, int], None]


async def _sample_rss(ctx: Context, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak[0] = max(peak[0], ctx.rss())
        await wait_event(stop, 0.1)


async def measure_baseline(ctx: Context, seconds: float) -> Baseline:
    base = Baseline(rss=ctx.rss())
    fleet = ctx.fleet
    if fleet is None:
        return base
    deadline = time.monotonic() + 30
    while fleet.total_acked == 0 and time.monotonic() < deadline:
        if fleet.proc is not None and fleet.proc.returncode is not None:
            break
        await asyncio.sleep(0.2)
    if fleet.total_acked == 0:
        base.notes.append(f"honest miners got no share accepted: {fleet.last}")
        return base
    await asyncio.sleep(1.0)  # warm-up: connected, vardiff settled
    t0 = time.time()
    await asyncio.sleep(seconds)
    t1 = time.time()
    await fleet.settled(t1)
    w = fleet.window(t0, t1)
    base.honest_rate, base.honest_offered, base.honest_fraction = (
        w.kept_rate, w.sent_rate, w.fraction)
    base.notes.append(f"honest miners: {len(fleet.workers)} x {fleet.rate:g} shares/s paced; "
                      f"before the attacks {w.sent_rate:.1f} sent/s, {w.kept_rate:.1f} "
                      f"accepted/s within {MAX_ACK_S:g} s ({w.fraction:.1%}) over {seconds:g} s")
    return base


async def run_case(ctx: Context, case: Case, base: Baseline, limits: Limits) -> Result:
    ctx.source = ctx.new_source()
    obs = Observation(True)
    started = datetime.now(UTC)
    attacker0 = await ctx.shares_of(ctx.ids.attacker)
    rss0 = ctx.rss()
    peak = [rss0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(ctx, peak, stop))
    t0 = time.time()
    m0 = time.monotonic()
    verdict = HELD
    try:
        await asyncio.wait_for(case.body(ctx, obs), limits.case_timeout_s)
    except TimeoutError:
        obs.require(False, f"the case did not finish within {limits.case_timeout_s:g} s")
    except Exception as exc:  # the tester's side failed: recorded, never hidden
        verdict = ERROR
        obs.fact(f"ERROR running the case: {type(exc).__name__}: {exc}")
        obs.fact(traceback.format_exc(limit=3).strip().splitlines()[-1])
    remaining = limits.min_window_s - (time.monotonic() - m0)
    if remaining > 0:
        await asyncio.sleep(remaining)
    t1 = time.time()
    stop.set()
    await sampler
    checks: dict[str, Any] = {}
    # the server still answers
    answering, how = await ctx.answering()
    checks["answering"] = answering
    obs.require(answering, f"the pool still answers a new connection ({how})")
    # memory
    growth = peak[0] - rss0
    checks["rss_start_bytes"], checks["rss_peak_bytes"] = rss0, peak[0]
    obs.require(growth <= limits.rss_growth_bytes,
                f"pool RSS {rss0 / MIB:.1f} MiB -> peak {peak[0] / MIB:.1f} MiB "
                f"(+{growth / MIB:.1f}, bound +{limits.rss_growth_bytes / MIB:.0f} MiB)")
    # honest miners
    fleet = ctx.fleet
    if fleet is not None:
        await fleet.settled(t1)
        w = fleet.window(t0, t1)
        # Judged on what the honest miners sent (they share the host's CPU with the tester and
        # the pool, so they may send less): the share of their shares accepted within
        # MAX_ACK_S, against the same figure before the attacks.
        kept = w.fraction / base.honest_fraction if base.honest_fraction else 0.0
        checks["honest_sent"], checks["honest_accepted"] = w.sent, w.kept
        checks["honest_stale"] = w.stale
        checks["honest_kept"] = round(kept, 3)
        checks["honest_max_latency_s"] = round(w.max_latency, 3)
        checks["honest_sent_ratio"] = round(w.sent_rate / base.honest_offered, 3) \
            if base.honest_offered else 0.0
        obs.require(w.sent > 0 and kept >= limits.honest_ratio,
                    f"honest miners: {w.kept} of {w.sent} shares sent during the case (and not "
                    f"made stale by a block: {w.stale} were) accepted "
                    f"within {MAX_ACK_S:g} s ({w.fraction:.1%}; before the attacks "
                    f"{base.honest_fraction:.1%}): {kept:.0%} kept, slowest reply "
                    f"{w.max_latency:.2f} s")
        acked = fleet.total_acked
        journaled = await ctx.shares_of(ctx.ids.honest) - base.honest_start
        checks["honest_acked"], checks["honest_journaled"] = acked, journaled
        obs.require(journaled >= acked, f"journal holds {journaled} honest share(s) of the "
                    f"{acked} acknowledged so far (nothing lost)")
    # nothing of the attacker's credited beyond the case's own legitimate shares
    gained = await ctx.shares_of(ctx.ids.attacker) - attacker0
    checks["attacker_journaled"] = gained
    obs.require(gained <= obs.credited_allowed,
                f"attacker's journaled shares +{gained} (legitimate: {obs.credited_allowed})")
    if verdict != ERROR:
        verdict = HELD if obs.held else FAILED
        if obs.held and obs.not_applicable:
            verdict = NOT_APPLICABLE
    return Result(case, verdict, obs.facts, started.isoformat(timespec="seconds"),
                  time.monotonic() - m0, checks)


async def run_all(ctx: Context, cases: list[Case], base: Baseline, limits: Limits,
                  progress: ProgressFn) -> list[Result]:  # fmt: skip
    results: list[Result] = []
    for i, case in enumerate(cases):
        progress("start", case, None, i, len(cases))
        result = await run_case(ctx, case, base, limits)
        results.append(result)
        progress("done", case, result, i + 1, len(cases))
    return results
