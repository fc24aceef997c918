"""Credit fraud: the same work submitted again in every form a miner controls, work credited to
another miner, and shares after a suspension. Checked in the journal, not only in the replies:
the header hash is stored at most once and nothing lands on an account that did not earn it."""

from __future__ import annotations

import asyncio
import json
import time

from poolserver.security_suite.checks import not_credited, refused
from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation, family
from poolserver.security_suite.wire import Conn, Share

case = family("credit")
CASES = case.cases


async def _accepted(ctx: Context, obs: Observation, c: Conn, worker: str | None = None,
                    **grind: object) -> Share:  # fmt: skip
    """Grind and submit one legitimate share (the attacker's one allowed credit); again if a
    new block made it stale on the way."""
    for _ in range(5):
        assert c.job is not None
        share = c.grind(c.job, **grind)  # type: ignore[arg-type]
        reply = await c.submit(worker or ctx.worker(), c.job, share)
        if not (reply.error and reply.error[0] == 21):
            break
    obs.require(reply.ok, f"the original share: {reply.describe()}")
    obs.credited_allowed += 1 if reply.ok else 0
    return share


async def _again(ctx: Context, obs: Observation, c: Conn, params: list[str], what: str,
                 share: Share, codes: tuple[int, ...] = ()) -> None:  # fmt: skip
    reply = await c.request("mining.submit", params)
    refused(obs, reply, what, codes)
    await not_credited(ctx, obs, share.hash, 1, what)


@case("CR-01", "The same share in upper-case hex", quick=True,
      sends="an accepted share again with extranonce2, ntime and nonce in upper case",
      expected="error 22 'Duplicate share' (21 if a new block came first); the journal holds "
               "the hash once")
async def cr01(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        s = await _accepted(ctx, obs, c)
        assert c.job is not None
        p = [ctx.worker(), s.job_id, s.extranonce2.upper(), s.ntime.upper(), s.nonce.upper()]
        await _again(ctx, obs, c, p, "upper-case resubmission", s, (22, 21))
    finally:
        await c.close()


@case("CR-02", "The same share under another worker of the account",
      sends="an accepted share again under a second authorized worker on the same connection",
      expected="error 22; credited once")
async def cr02(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker("a1")
    try:
        r = await c.request("mining.authorize", [ctx.worker("a2"), "x"])
        obs.require(r.ok, f"second worker authorized: {r.describe()}")
        s = await _accepted(ctx, obs, c, ctx.worker("a1"))
        assert c.job is not None
        await _again(ctx, obs, c, s.params(ctx.worker("a2"), s.job_id),
                     "resubmission under worker a2", s, (22, 21))  # fmt: skip
    finally:
        await c.close()


@case("CR-03", "The same share on a resumed session", quick=True,
      sends="an accepted share; disconnect; reconnect resuming the session id (same "
            "extranonce1); submit it again",
      expected="error 22 (duplicates are keyed by the header hash, not the connection)")
async def cr03(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    s = await _accepted(ctx, obs, c)
    job, sid, en1 = c.job, c.session_id, c.extranonce1
    await c.close()
    await asyncio.sleep(0.3)
    d = await ctx.attacker(resume=sid)
    try:
        assert job is not None
        obs.fact(f"resumed extranonce1 {d.extranonce1.hex()} (was {en1.hex()})")
        await _again(ctx, obs, d, s.params(ctx.worker(), s.job_id),
                     "resubmission on the resumed session", s)  # fmt: skip
    finally:
        await d.close()


@case("CR-04", "Resuming a live session's id from another connection",
      sends="session B subscribes with session A's id while A is connected, then submits A's "
            "accepted share",
      expected="B gets another extranonce1; the share is refused; credited once")
async def cr04(ctx: Context, obs: Observation) -> None:
    a = await ctx.attacker("a1")
    b = None
    try:
        s = await _accepted(ctx, obs, a, ctx.worker("a1"))
        b = await ctx.attacker("a2", resume=a.session_id)
        obs.require(b.extranonce1 != a.extranonce1,
                    f"B's extranonce1 {b.extranonce1.hex()} differs from live A's "
                    f"{a.extranonce1.hex()}")  # fmt: skip
        assert a.job is not None
        await _again(ctx, obs, b, s.params(ctx.worker("a2"), s.job_id),
                     "A's share on B", s)  # fmt: skip
    finally:
        await a.close()
        if b is not None:
            await b.close()


@case("CR-05", "The same share pipelined ten times at once", quick=True,
      sends="one valid share submitted 10 times in a single TCP write",
      expected="exactly one accepted, nine refused as duplicates; the journal holds it once")
async def cr05(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        assert c.job is not None
        s = c.grind(c.job)
        msgs = [c.message("mining.submit", s.params(ctx.worker(), s.job_id))
                for _ in range(10)]  # fmt: skip
        futs = []
        for m in msgs:
            fut = asyncio.get_running_loop().create_future()
            c.pending[m["id"]] = fut
            futs.append(fut)
        await c.send(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
        replies = await asyncio.wait_for(asyncio.gather(*futs), 10)
        ok = sum(1 for r in replies if r.get("result") is True)
        obs.require(ok == 1, f"{ok} of 10 identical pipelined submits accepted")
        obs.credited_allowed = min(ok, 1)
        await not_credited(ctx, obs, s.hash, 1, "the share")
    finally:
        await c.close()


@case("CR-06", "The same share under another job id",
      sends="an accepted share again under every other job id the connection was sent, and "
            "under an unknown one",
      expected="refused (another job hashes to another header, or the job is unknown)")
async def cr06(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        s = await _accepted(ctx, obs, c)
        assert c.job is not None
        ids = {str(n["params"][0]) for n in c.notes if n.get("method") == "mining.notify"}
        ids.discard(s.job_id)
        for job_id in [*sorted(ids)[:5], "ffffffff"]:
            await _again(ctx, obs, c, s.params(ctx.worker(), job_id),
                         f"resubmission under job {job_id}", s)  # fmt: skip
    finally:
        await c.close()


@case("CR-07", "The same share with version bits outside the mask",
      sends="an accepted version-rolling share again with bit 0x00000002 added (outside the "
            "negotiated mask)",
      expected="refused (error 20 version mask); credited once")
async def cr07(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker(rolling=True)
    try:
        vb = c.version_mask & 0x00002000
        s = await _accepted(ctx, obs, c, version_bits=vb)
        assert c.job is not None
        p = s.params(ctx.worker(), s.job_id)
        p[5] = f"{vb | 0x00000002:08x}"
        await _again(ctx, obs, c, p, "resubmission with an outside bit", s, (20, 21, 22))
    finally:
        await c.close()


@case("CR-08", "The same share with a short nonce",
      sends="an accepted share again with its nonce written without leading zeros "
            "(e.g. 'abc' for '00000abc') and with its ntime likewise",
      expected="refused (error 20: exactly 8 hex digits); credited once")
async def cr08(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        assert c.job is not None
        s = await _accepted(ctx, obs, c)
        p = s.params(ctx.worker(), s.job_id)
        p[4] = "0" + p[4]  # 9 digits, same value
        await _again(ctx, obs, c, p, "resubmission with a 9-digit nonce", s, (20, 21, 22))
    finally:
        await c.close()


@case("CR-09", "Work credited to another miner", quick=True,
      sends="on the attacker's authorized connection, a valid share under the victim "
            "account's worker name (never authorized there)",
      expected="error 24 'Unauthorized worker'; the victim's and the attacker's journal "
               "counts do not move")
async def cr09(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker()
    try:
        before = await ctx.shares_of(ctx.ids.victim)
        assert c.job is not None
        s = c.grind(c.job)
        reply = await c.submit(ctx.worker("w1", ctx.ids.victim), c.job, s)
        refused(obs, reply, "share under the victim's name", (24,))
        await not_credited(ctx, obs, s.hash, 0, "the share")
        after = await ctx.shares_of(ctx.ids.victim)
        obs.require(after == before, f"victim's journal shares {before} -> {after}")
    finally:
        await c.close()


async def _suspension_reset(ctx: Context, obs: Observation) -> None:
    """Lift a suspension a previous, interrupted run may have left (through the CLI)."""
    rc, _ = await ctx.cli("licenses", "lift", ctx.ids.license_of(ctx.ids.suspend),
                            "--who", "security-suite")  # fmt: skip
    if rc == 0:
        obs.fact("lifted a suspension left by an earlier run")
        await asyncio.sleep(ctx.config.register.poll_interval_s + 0.5)


@case("CR-10", "Shares after a suspension", quick=True,
      sends="a licensed test miner mines; its license is suspended through `poolserver "
            "licenses suspend`; it keeps submitting and reconnects",
      expected="its live session is closed within [register].poll_interval_s; no share of it "
               "is journaled after the suspension; a new login is refused (the suspension is "
               "lifted again through the CLI afterwards)")
async def cr10(ctx: Context, obs: Observation) -> None:
    ids = ctx.ids
    number = ids.license_of(ids.suspend)
    await _suspension_reset(ctx, obs)
    c = await ctx.conn()
    worker = f"{ids.suspend}.s1"
    reply = await c.login(worker)
    if not obs.require(reply.ok and c.job is not None, f"test miner login: {reply.describe()}"):
        await c.close()
        return
    try:
        before = await ctx.shares_of(ids.suspend)
        rc, out = await ctx.cli("licenses", "suspend", number, "--months", "1", "--reason",
                                "security suite: shares after a suspension", "--who",
                                "security-suite")  # fmt: skip
        if not obs.require(rc == 0, f"`poolserver licenses suspend {number}`: {out[-200:]}"):
            return
        t_susp = time.monotonic()
        limit = ctx.config.register.poll_interval_s + 3.0
        accepted_after = 0
        unanswered = 0  # sent, no reply: in flight when the pool cut the session (or late)
        while not c.closed and time.monotonic() - t_susp < limit:
            assert c.job is not None
            s = c.grind(c.job)
            r = await c.submit(worker, c.job, s, timeout=2.0)
            if r.ok:
                accepted_after += 1
            elif r.msg is None:
                unanswered += 1
            await asyncio.sleep(0.1)
        took = time.monotonic() - t_susp
        obs.require(c.closed, f"the live session was closed {took:.1f} s after the suspension"
                    if c.closed else f"the live session was still open after {took:.1f} s")
        obs.fact(f"{accepted_after} share(s) acknowledged between the CLI call and the cut-off "
                 "(the pool learns of it at its next register poll), "
                 f"{unanswered} submitted without a reply (in flight at the cut-off)")
        again = await ctx.conn()
        try:
            r2 = await again.login(worker)
            refused(obs, r2, "a new login of the suspended miner", (24,))
            if again.job is not None and not again.closed:
                s2 = again.grind(again.job)
                r3 = await again.submit(worker, again.job, s2)
                refused(obs, r3, "a share on the refused login", (24, 25))
        finally:
            await again.close()
        after = await ctx.shares_of(ids.suspend)
        journaled = after - before
        # A share submitted before the cut-off may be stored and its ack lost in the close (or
        # arrive after the 2 s wait on a loaded host): it counts as submitted before the cut-off.
        obs.require(journaled <= accepted_after + unanswered,
                    f"{journaled} share(s) journaled after the suspension was recorded "
                    f"(at most the {accepted_after} acknowledged and {unanswered} unanswered "
                    "before the cut-off)")  # fmt: skip
    finally:
        c.abort()
        rc, out = await ctx.cli("licenses", "lift", number, "--who", "security-suite")
        obs.fact(f"`poolserver licenses lift {number}`: exit {rc}")
