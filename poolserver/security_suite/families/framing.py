"""Framing: what arrives on the socket is not a well-formed Stratum line. The pool must answer
with a clear error or close the connection, keep memory bounded and keep serving others."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from poolserver.security_suite.checks import error_or_close, not_credited, request_refused
from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation, family

case = family("framing")
CASES = case.cases
MIB = 1 << 20


async def _stream(ctx: Context, obs: Observation, total: int) -> None:
    """On a logged-in connection (no subscribe/authorize timeout to hide behind), stream
    ``total`` bytes of one endless line in 64 KiB writes until the pool closes."""
    c = await ctx.attacker()
    chunk = b"A" * (64 * 1024)
    sent = 0
    t0 = time.monotonic()
    try:
        while sent < total and not c.closed:
            if not await c.send(chunk):
                break
            sent += len(chunk)
            if time.monotonic() - t0 > 60:
                break
        closed = await c.wait_closed(5.0)
        limit = ctx.stratum.max_line_bytes
        obs.require(closed, f"the pool closed the connection after {sent / MIB:.1f} MiB sent "
                    f"(limit {limit} bytes per line)" if closed else
                    f"still open after {sent / MIB:.1f} MiB of one line")  # fmt: skip
        # The kernel buffers a few MiB before the close is seen; far more means the pool read on.
        obs.require(sent <= max(16 * MIB, 64 * limit),
                    f"{sent / MIB:.1f} MiB accepted before the close (bounded by the line "
                    "limit plus socket buffers)")  # fmt: skip
    finally:
        c.abort()


@case("FR-01", "One 1 MiB line without a newline", quick=True,
      sends="after a login, 1 MiB of 'A' with no line end, in 64 KiB writes",
      expected="the connection is closed once the line passes [stratum].max_line_bytes")
async def fr01(ctx: Context, obs: Observation) -> None:
    await _stream(ctx, obs, MIB)


@case("FR-02", "100 MiB streamed as one line",
      sends="after a login, 100 MiB of 'A' in 64 KiB writes, never a newline",
      expected="closed long before 100 MiB; RSS stays bounded")
async def fr02(ctx: Context, obs: Observation) -> None:
    await _stream(ctx, obs, 100 * MIB)


@case("FR-03", "A complete 1 MiB JSON line",
      sends='{"id":1,"method":"mining.subscribe","params":["<1 MiB>"]} + newline',
      expected="error 'line longer than N bytes' and a close")
async def fr03(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn()
    try:
        line = json.dumps({"id": 1, "method": "mining.subscribe",
                           "params": ["x" * MIB]}).encode() + b"\n"  # fmt: skip
        await error_or_close(obs, c, line, 1, "1 MiB request line")
        obs.require(await c.wait_closed(3.0), "connection closed after the over-long line")
    finally:
        c.abort()


@case("FR-04", "A request that never ends (no newline ever)",
      sends='{"id":1,"method":"mining.subscribe","params":[]} without a newline, then silence',
      expected="closed by the subscribe/authorize timeout ([stratum].auth_timeout_s)")
async def fr04(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn()
    try:
        await c.send(b'{"id":1,"method":"mining.subscribe","params":[]}')
        limit = ctx.stratum.auth_timeout_s
        t0 = time.monotonic()
        closed = await c.wait_closed(limit + 5.0)
        took = time.monotonic() - t0
        obs.require(closed, f"closed after {took:.1f} s (auth timeout {limit:g} s)" if closed
                    else f"still open after {took:.1f} s")  # fmt: skip
    finally:
        c.abort()


def _garbage_case(case_id: str, title: str, payload: bytes, sends: str, quick: bool = False
                  ) -> None:  # fmt: skip
    @case(case_id, title, sends=sends, quick=quick,
          expected="a JSON-RPC error naming the problem, or a clean close; nothing else")
    async def body(ctx: Context, obs: Observation) -> None:
        c = await ctx.conn()
        try:
            await error_or_close(obs, c, payload, None, title)
        finally:
            c.abort()


_garbage_case("FR-05", "Binary garbage", os.urandom(0) + bytes(range(256)) * 4 + b"\n",
              "1 KiB of every byte value 0x00-0xff, then a newline", quick=True)
_garbage_case("FR-06", "Invalid UTF-8 inside a JSON string",
              b'{"id":7,"method":"mining.subscribe","params":["\xff\xfe\xc3\x28"]}\n',
              "a subscribe whose user agent holds bytes ff fe c3 28")
_garbage_case("FR-07", "Deeply nested JSON", b"[" * 200_000 + b"]" * 200_000 + b"\n",
              "200 000 nested arrays (400 kB; over the line limit or the parser's depth)")
_garbage_case("FR-08", "Deep nesting under the line limit", b"[" * 4000 + b"]" * 4000 + b"\n",
              "4000 nested arrays in an 8 kB line")
_garbage_case("FR-09", "A 5000-digit integer id",
              b'{"id":' + b"9" * 5000 + b',"method":"mining.subscribe","params":[]}\n',
              "id = 10^5000 - 1")
_garbage_case("FR-10", "NaN as a value",
              b'{"id":10,"method":"mining.suggest_difficulty","params":[NaN]}\n',
              "suggest_difficulty [NaN]")
_garbage_case("FR-11", "Infinity as a value",
              b'{"id":11,"method":"mining.suggest_difficulty","params":[Infinity]}\n',
              "suggest_difficulty [Infinity]")
_garbage_case("FR-12", "A JSON array instead of an object", b'[1,"mining.subscribe",[]]\n',
              'the line [1,"mining.subscribe",[]]')
_garbage_case("FR-13", "A request without a method", b'{"id":13,"params":[]}\n',
              '{"id":13,"params":[]}')


@case("FR-14", "Duplicate keys smuggling a submit", quick=True,
      sends='{"id":14,"method":"mining.ping","params":[],"method":"mining.submit",'
            '"params":[attacker worker, job, en2, ntime, nonce]} on a subscribed connection '
            'that never authorized, the share ground for its extranonce1',
      expected="whichever key wins, nothing is accepted: an error (unauthorized) or the ping's "
               "reply; nothing credited")
async def fr14(ctx: Context, obs: Observation) -> None:
    owner = await ctx.attacker("a1")
    c = await ctx.conn()
    try:
        await c.subscribe()
        job = owner.job
        assert job is not None
        share = c.grind(job, difficulty=owner.difficulty)
        params = json.dumps(share.params(ctx.worker("a2"), job.job_id)).encode()
        line = (b'{"id":14,"method":"mining.ping","params":[],"method":"mining.submit",'
                b'"params":' + params + b"}\n")
        reply = await c.raw_request(line, 14)
        res = reply.msg.get("result") if reply.msg else None
        obs.require(res is not True, f"duplicate-key request: {reply.describe()}")
        await not_credited(ctx, obs, share.hash, 0, "the smuggled share")
    finally:
        c.abort()
        owner.abort()


_WRONG_TYPES: list[tuple[str, str, str, Any, bool]] = [
    # (id, title, method, params, needs login)
    ("FR-15", "authorize: worker name is a number", "mining.authorize", [12345, "x"], False),
    ("FR-16", "authorize: worker name is a list", "mining.authorize", [["a", "b"], "x"], False),
    ("FR-17", "authorize: worker name is null", "mining.authorize", [None, None], False),
    ("FR-18", "authorize: params is an object", "mining.authorize", {"user": "a.b"}, False),
    ("FR-19", "submit: worker is a number", "mining.submit",
     [1, "1", "0000000000000000", "00000000", "00000000"], True),
    ("FR-20", "submit: job id is a list", "mining.submit",
     ["W", ["1"], "0000000000000000", "00000000", "00000000"], True),
    ("FR-21", "submit: extranonce2 is an integer", "mining.submit",
     ["W", "J", 0, "00000000", "00000000"], True),
    ("FR-22", "submit: ntime is a float", "mining.submit",
     ["W", "J", "0000000000000000", 1.5, "00000000"], True),
    ("FR-23", "submit: nonce is null", "mining.submit",
     ["W", "J", "0000000000000000", "00000000", None], True),
    ("FR-24", "submit: version bits is an object", "mining.submit",
     ["W", "J", "0000000000000000", "00000000", "00000000", {"v": 1}], True),
    ("FR-25", "submit: params is a string", "mining.submit", "W,J,00,00,00", True),
    ("FR-26", "submit: too many params", "mining.submit",
     ["W", "J", "0000000000000000", "00000000", "00000000", "00000000", "x"], True),
    ("FR-27", "suggest_difficulty: a word", "mining.suggest_difficulty", ["high"], True),
    ("FR-28", "suggest_difficulty: a list", "mining.suggest_difficulty", [[1]], True),
    ("FR-29", "configure: params is not a list", "mining.configure", "version-rolling", False),
    ("FR-30", "suggest_target: not hex", "mining.suggest_target", ["zz" * 32], True),
]


def _wrong_type_case(case_id: str, title: str, method: str, params: Any, login: bool) -> None:
    @case(case_id, title, sends=f"{method} {json.dumps(params)}"
          + (" (logged in; W/J = the real worker and job)" if login else ""),
          expected="a JSON-RPC error (the field and what it must be), the connection stays "
                   "usable; nothing accepted or credited", quick=case_id == "FR-21")
    async def body(ctx: Context, obs: Observation) -> None:
        c = await (ctx.attacker() if login else ctx.conn())
        try:
            p = params
            if login and isinstance(p, list):
                assert c.job is not None
                p = [ctx.worker() if x == "W" else c.job.job_id if x == "J" else x for x in p]
            await request_refused(obs, c, method, p, title)
            if not c.closed:
                ping = await c.request("mining.ping", [])
                obs.require(ping.msg is not None, f"the connection still answers: "
                            f"mining.ping -> {ping.describe()}")  # fmt: skip
        finally:
            c.abort()


for _row in _WRONG_TYPES:
    _wrong_type_case(*_row)
