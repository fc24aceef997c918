"""Protocol abuse: well-formed requests at the wrong time or with forged content. Every forged
share must be refused with the right reason and never reach the journal."""

from __future__ import annotations

import asyncio
import time

from poolserver.security_suite.checks import not_credited, refused, request_refused
from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation, family
from poolserver.security_suite.wire import Conn, Job, Share, meets
from stratum.difficulty import DIFF1, target_from_nbits

case = family("protocol_abuse")
CASES = case.cases


async def _forged(ctx: Context, obs: Observation, what: str, codes: tuple[int, ...],
                  make: object, *, rolling: bool = False) -> None:  # fmt: skip
    """Log in as the attacker, build a forged submit with ``make(conn, job) -> (params,
    share)``, and require it refused and absent from the journal."""
    c = await ctx.attacker(rolling=rolling)
    try:
        assert c.job is not None
        params, share = make(c, c.job)  # type: ignore[operator]
        reply = await c.request("mining.submit", params)
        refused(obs, reply, what, codes)
        await not_credited(ctx, obs, share.hash, 0, what)
    finally:
        await c.close()


@case("PA-01", "Submit before subscribe", quick=True,
      sends="mining.submit of a share ground for an empty extranonce1 on a fresh connection",
      expected="error 25 'Not subscribed'; nothing hashed or credited")
async def pa01(ctx: Context, obs: Observation) -> None:
    owner = await ctx.attacker()
    c = await ctx.conn()
    try:
        assert owner.job is not None
        c.extranonce2_size = owner.extranonce2_size
        share = c.grind(owner.job, difficulty=owner.difficulty, extranonce1=b"")
        reply = await c.request("mining.submit", share.params(ctx.worker("a9"), owner.job.job_id))
        refused(obs, reply, "submit before subscribe", (25, 24))
        await not_credited(ctx, obs, share.hash, 0, "the share")
    finally:
        await c.close()
        await owner.close()


@case("PA-02", "Submit after subscribe, before authorize",
      sends="subscribe, then a valid share for its extranonce1 under the attacker's worker name",
      expected="error 24 'Unauthorized worker'; nothing credited")
async def pa02(ctx: Context, obs: Observation) -> None:
    owner = await ctx.attacker()
    c = await ctx.conn()
    try:
        await c.subscribe()
        assert owner.job is not None
        share = c.grind(owner.job, difficulty=owner.difficulty)
        reply = await c.request("mining.submit", share.params(ctx.worker("a9"), owner.job.job_id))
        refused(obs, reply, "submit before authorize", (24,))
        await not_credited(ctx, obs, share.hash, 0, "the share")
    finally:
        await c.close()
        await owner.close()


@case("PA-03", "Unknown job id",
      sends="a share ground for the current job but submitted under job id 'deadbeef'",
      expected="error 21 'Job not found'; nothing credited")
async def pa03(ctx: Context, obs: Observation) -> None:
    def make(c: Conn, job: Job) -> tuple[list[str], Share]:
        s = c.grind(job)
        return s.params(ctx.worker(), "deadbeef"), s

    await _forged(ctx, obs, "unknown job id", (21,), make)


def _network_difficulty(job: Job) -> float:
    return DIFF1 / target_from_nbits(job.nbits)


@case("PA-04", "Stale share (job of a replaced block)",
      sends="a share ground for a job, kept until a new block replaced the job, then submitted",
      expected="error 21 (stale / job not found); nothing credited")
async def pa04(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        assert c.job is not None
        old = c.job
        share = c.grind(old)
        deadline = time.monotonic() + (30 if ctx.quick else 90)
        # Wait for the next block (honest miners find them); on a slow pool, mine one: a block
        # solve on the current job, credited as the attacker's one legitimate share.
        while time.monotonic() < deadline:
            job = await c.wait_job(1.0, newer_than=c.job.job_id if c.job else None)
            if c.job is not None and c.job.prevhash != old.prevhash:
                break
            if job is None and c.job is not None and c.job.prevhash == old.prevhash:
                cur = c.job
                try:
                    block = await asyncio.to_thread(
                        c.grind, cur, difficulty=_network_difficulty(cur), max_tries=1 << 21,
                        avoid_block=False)
                except RuntimeError:  # no solve in this stretch of nonces: wait or try again
                    continue
                if c.job.prevhash != old.prevhash:
                    break
                r = await c.submit(ctx.worker(), cur, block)
                if r.ok:
                    obs.credited_allowed += 1
                    obs.fact("mined a block on the current job to replace it")
        new_tip = c.job is not None and c.job.prevhash != old.prevhash
        if not obs.require(new_tip, "a new block replaced the job"):
            return
        reply = await c.submit(ctx.worker(), old, share)
        refused(obs, reply, "stale share", (21,))
        await not_credited(ctx, obs, share.hash, 0, "the stale share")
    finally:
        await c.close()


@case("PA-05", "The same share twice on one connection", quick=True,
      sends="a valid share, then exactly the same submit again",
      expected="first accepted, second error 22 'Duplicate share' (21 if a new block came "
               "between them); the journal holds it once")
async def pa05(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        assert c.job is not None
        share = c.grind(c.job)
        first = await c.submit(ctx.worker(), c.job, share)
        obs.require(first.ok, f"first submit: {first.describe()}")
        obs.credited_allowed = 1 if first.ok else 0
        second = await c.submit(ctx.worker(), c.job, share)
        refused(obs, second, "second submit", (22, 21))
        await not_credited(ctx, obs, share.hash, 1, "the share")
    finally:
        await c.close()


@case("PA-06", "Forged share: hash above the target", quick=True,
      sends="a share whose header hash misses the connection's share target",
      expected="error 23 'Low difficulty share'; nothing credited")
async def pa06(ctx: Context, obs: Observation) -> None:
    def make(c: Conn, job: Job) -> tuple[list[str], Share]:
        s = c.grind(job, want_share=False)
        return s.params(ctx.worker(), job.job_id), s

    await _forged(ctx, obs, "low-difficulty share", (23,), make)


@case("PA-07", "Share ground for another session's extranonce1", quick=True,
      sends="a share valid for session B's extranonce1, submitted on session A (where its "
            "hash misses the target)",
      expected="refused (23, the pool hashes with A's extranonce1); nothing credited")
async def pa07(ctx: Context, obs: Observation) -> None:
    a = await ctx.attacker("a1")
    b = await ctx.attacker("a2")
    try:
        assert a.job is not None and b.job is not None
        job = a.job
        while True:  # valid for B's extranonce1, invalid for A's (same extranonce2)
            s = a.grind(job, extranonce1=b.extranonce1)
            if not meets(job, a.extranonce1, s, a.difficulty, a.version_mask):
                break
        reply = await a.submit(ctx.worker("a1"), job, s)
        refused(obs, reply, "B's share on A", (23, 22))
        await not_credited(ctx, obs, s.hash, 0, "B's share")
    finally:
        await a.close()
        await b.close()


def _en2_case(case_id: str, title: str, delta: int) -> None:
    @case(case_id, title, sends=f"a share ground with an extranonce2 {abs(delta)} byte(s) "
          f"{'shorter' if delta < 0 else 'longer'} than the subscribe said",
          expected="error 20 'Invalid extranonce2'; nothing credited", quick=False)
    async def body(ctx: Context, obs: Observation) -> None:
        def make(c: Conn, job: Job) -> tuple[list[str], Share]:
            en2 = bytes(max(0, c.extranonce2_size + delta))
            s = c.grind(job, extranonce2=en2)
            return s.params(ctx.worker(), job.job_id), s

        await _forged(ctx, obs, title, (20,), make)


_en2_case("PA-08", "Extranonce2 too short", -1)
_en2_case("PA-09", "Extranonce2 too long", +2)


def _ntime_case(case_id: str, title: str, shift: int, sends: str) -> None:
    @case(case_id, title, sends=sends, quick=shift > 0,
          expected="error 20 'Ntime out of range'; nothing credited")
    async def body(ctx: Context, obs: Observation) -> None:
        def make(c: Conn, job: Job) -> tuple[list[str], Share]:
            s = c.grind(job, ntime=(job.ntime + shift) & 0xFFFFFFFF)
            return s.params(ctx.worker(), job.job_id), s

        await _forged(ctx, obs, title, (20,), make)


_ntime_case("PA-10", "ntime 3 hours in the future", 3 * 3600, "a share with ntime = job + 3 h")
_ntime_case("PA-11", "ntime a day in the past", -86400, "a share with ntime = job - 24 h")


@case("PA-12", "Version bits outside the negotiated mask", quick=True,
      sends="configure version-rolling, then a share rolling bit 0x00000001 (outside the mask)",
      expected="error 20 'Invalid version mask'; nothing credited")
async def pa12(ctx: Context, obs: Observation) -> None:
    def make(c: Conn, job: Job) -> tuple[list[str], Share]:
        s = c.grind(job, version_bits=0x00000001 | (c.version_mask & 0x2000))
        return s.params(ctx.worker(), job.job_id), s

    await _forged(ctx, obs, "version bits outside the mask", (20,), make, rolling=True)


def _diff_case(case_id: str, title: str, value: object, refuse: bool, quick: bool = False
               ) -> None:  # fmt: skip
    @case(case_id, title, sends=f"mining.suggest_difficulty [{value!r}] after login",
          expected=("an error reply; the difficulty stays within the listener's bounds"
                    if refuse else "clamped into the listener's [min, max] difficulty"),
          quick=quick)  # fmt: skip
    async def body(ctx: Context, obs: Observation) -> None:
        c = await ctx.attacker()
        try:
            lst = ctx.listener
            if refuse:
                await request_refused(obs, c, "mining.suggest_difficulty", [value], title, (20,))
            else:
                reply = await c.request("mining.suggest_difficulty", [value])
                obs.fact(f"reply: {reply.describe()}")
            await c.request("mining.ping", [])
            await asyncio.sleep(0.2)
            diffs = [float(n["params"][0]) for n in c.notes
                     if n.get("method") == "mining.set_difficulty"]  # fmt: skip
            ok = all(lst.min_difficulty <= d <= lst.max_difficulty for d in diffs)
            obs.require(ok, f"difficulties sent {diffs or '(none after the suggestion)'} within "
                        f"[{lst.min_difficulty:g}, {lst.max_difficulty:g}]")  # fmt: skip
            obs.require(lst.min_difficulty <= c.difficulty <= lst.max_difficulty,
                        f"difficulty in force {c.difficulty:g}")  # fmt: skip
            internal = [n for n in c.error_notes() if "Internal error" in n]
            obs.require(not internal, f"no internal error: {internal[:1] or 'none'}")
        finally:
            await c.close()


_diff_case("PA-13", "suggest_difficulty 0", 0, True, quick=True)
_diff_case("PA-14", "suggest_difficulty negative", -5, True)
_diff_case("PA-15", "suggest_difficulty 1e-30", 1e-30, False, quick=True)
_diff_case("PA-16", "suggest_difficulty 1e300", 1e300, False)


@case("PA-17", "Low-difficulty shares after suggesting 1e-30",
      sends="suggest_difficulty 1e-30, then a share that meets only a 1e-30 difficulty",
      expected="refused 23 at the listener's minimum; nothing credited")
async def pa17(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        await c.request("mining.suggest_difficulty", [1e-30])
        await asyncio.sleep(0.2)
        assert c.job is not None
        s = c.grind(c.job, want_share=False, difficulty=ctx.listener.min_difficulty)
        reply = await c.submit(ctx.worker(), c.job, s)
        refused(obs, reply, "share below the listener minimum", (23,))
        await not_credited(ctx, obs, s.hash, 0, "the share")
    finally:
        await c.close()


def _mask_case(case_id: str, title: str, mask: object) -> None:
    @case(case_id, title, sends=f"mining.configure version-rolling with mask {mask!r}",
          expected="the granted mask is inside the pool's [stratum].version_rolling_mask "
                   "(or an error); no crash")
    async def body(ctx: Context, obs: Observation) -> None:
        c = await ctx.conn()
        try:
            reply = await c.request("mining.configure",
                                    [["version-rolling"], {"version-rolling.mask": mask}])
            pool_mask = int(ctx.stratum.version_rolling_mask, 16)
            res = reply.msg.get("result") if reply.msg else None
            if isinstance(res, dict) and res.get("version-rolling") is True:
                granted = int(str(res.get("version-rolling.mask")), 16)
                obs.require(granted & ~pool_mask == 0,
                            f"granted mask {granted:08x} within the pool's {pool_mask:08x}")
            else:
                obs.require(reply.error is not None or isinstance(res, dict),
                            f"configure: {reply.describe()}")  # fmt: skip
            ping = await c.request("mining.ping", [])
            obs.require(ping.msg is not None, f"still answering: {ping.describe()}")
        finally:
            await c.close()


_mask_case("PA-18", "configure mask ffffffff", "ffffffff")
_mask_case("PA-19", "configure mask of 40 hex digits", "f" * 40)
_mask_case("PA-20", "configure mask not hex", "zzzz")
_mask_case("PA-21", "configure mask as a number", -1)
