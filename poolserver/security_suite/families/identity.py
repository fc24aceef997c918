"""Identity: who may mine. Unknown accounts and miners without a license in force are refused
at mining.authorize; worker names that carry SQL, shell, log-injection or path characters, or
that are absurdly long, are refused before they reach the journal or the log."""

from __future__ import annotations

import json

from poolserver.security_suite.checks import refused
from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation, family

case = family("identity")
CASES = case.cases


async def _refused_login(ctx: Context, obs: Observation, worker: str, what: str) -> None:
    c = await ctx.conn()
    try:
        await c.subscribe()
        reply = await c.request("mining.authorize", [worker, "x"])
        refused(obs, reply, what, (24,))
        job = await c.wait_job(1.0)
        obs.require(job is None, "no job was sent" if job is None else "a job was sent")
        account = worker.partition(".")[0]
        if account:
            n = await ctx.shares_of(account)
            obs.require(n == 0 or account in (ctx.ids.attacker,),
                        f"the journal holds {n} share(s) of {account[:40]!r}")
    finally:
        await c.close()


@case("ID-01", "Unknown account", quick=True,
      sends="authorize qzsec-unknown.w1 (not in the register)",
      expected="error 24 naming the register; no job")
async def id01(ctx: Context, obs: Observation) -> None:
    await _refused_login(ctx, obs, "qzsec-unknown.w1", "unknown account")


@case("ID-02", "Expired license", sends="authorize of the suite's miner whose license expired",
      expected="error 24 (license expired); no job")
async def id02(ctx: Context, obs: Observation) -> None:
    await _refused_login(ctx, obs, f"{ctx.ids.expired}.w1", "expired license")


@case("ID-03", "Revoked license", quick=True,
      sends="authorize of the suite's miner whose license was revoked",
      expected="error 24 (license revoked); no job")
async def id03(ctx: Context, obs: Observation) -> None:
    await _refused_login(ctx, obs, f"{ctx.ids.revoked}.w1", "revoked license")


@case("ID-04", "Suspended license at login",
      sends="`poolserver licenses suspend` of the suite's test miner, then its authorize "
            "(lifted again afterwards)",
      expected="error 24 (license suspended); no job")
async def id04(ctx: Context, obs: Observation) -> None:
    import asyncio

    number = ctx.ids.license_of(ctx.ids.suspend)
    await ctx.cli("licenses", "lift", number, "--who", "security-suite")
    rc, out = await ctx.cli("licenses", "suspend", number, "--months", "1", "--reason",
                            "security suite: suspended login", "--who", "security-suite")
    if not obs.require(rc == 0, f"`poolserver licenses suspend {number}`: {out[-200:]}"):
        return
    try:
        await asyncio.sleep(ctx.config.register.poll_interval_s + 1.0)
        await _refused_login(ctx, obs, f"{ctx.ids.suspend}.w9", "suspended license")
    finally:
        rc, _ = await ctx.cli("licenses", "lift", number, "--who", "security-suite")
        obs.fact(f"`poolserver licenses lift {number}`: exit {rc}")
        await asyncio.sleep(ctx.config.register.poll_interval_s + 0.5)


_NAMES = [
    ("ID-05", "SQL in the worker name", "qzsec-attacker.w1'; DROP TABLE shares; --"),
    ("ID-06", "SQL in the account name", "qzsec-attacker' OR '1'='1.w1"),
    ("ID-07", "Shell command substitution", "qzsec-attacker.$(touch /tmp/qzsec-pwned)"),
    ("ID-08", "Shell separators and pipes", "qzsec-attacker.w1;id|nc 127.0.0.1 4444"),
    ("ID-09", "Log injection: newline", "qzsec-attacker.w1\nINFO forged log line: paid 1 BTC"),
    ("ID-10", "Log injection: ANSI escapes", "qzsec-attacker.w1\x1b[2J\x1b[31mALERT\x1b[0m"),
    ("ID-11", "Path traversal", "qzsec-attacker.../../../etc/passwd"),
    ("ID-12", "Path in the account", "../../qzsec-attacker.w1"),
    ("ID-13", "NUL byte", "qzsec-attacker.w1\x00admin"),
    ("ID-14", "A 1 KiB worker name", "qzsec-attacker." + "w" * 1024),
    ("ID-15", "A 1 KiB account name", "a" * 1024 + ".w1"),
    ("ID-16", "Unicode look-alike account", "qzsec-аttacker.w1"),  # Cyrillic а
    ("ID-17", "Empty account", ".w1"),
]


def _name_case(case_id: str, title: str, name: str) -> None:
    @case(case_id, title, sends=f"authorize {json.dumps(name)[:90]}",
          quick=case_id in ("ID-05", "ID-09"),
          expected="error 24 'Invalid worker name' (or unknown account); never authorized, "
                   "never journaled")
    async def body(ctx: Context, obs: Observation) -> None:
        await _refused_login(ctx, obs, name, title)


for _row in _NAMES:
    _name_case(*_row)
