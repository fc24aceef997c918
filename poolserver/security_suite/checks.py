"""Observations shared by the case families: send something, then record whether the pool
answered it with a clear error, closed the connection cleanly, or did neither."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation
from poolserver.security_suite.wire import Conn, Reply

REACTION_S = 2.0  # a close counts as the pool's answer only if it follows this quickly


async def error_or_close(obs: Observation, conn: Conn, line: bytes, req_id: Any,
                         what: str, timeout: float = REACTION_S) -> Reply:  # fmt: skip
    """``line`` must get an error reply (code and message) or a close within ``timeout``
    seconds: a reaction to the line, not the subscribe/authorize timeout closing a connection
    that got no answer."""
    if conn.closed:
        obs.require(False, f"{what}: the connection was already closed before it was sent")
        return Reply(None, closed=True)
    t0 = time.monotonic()
    reply = await conn.raw_request(line, req_id, timeout)
    took = time.monotonic() - t0
    if reply.msg is None and not reply.closed:
        # an error may come back with id null when the id could not be read
        stray = conn.error_notes()
        if stray:
            obs.require(True, f"{what}: error reply {stray[0][:160]}")
            return reply
        obs.require(False, f"{what}: no reply and no close within {timeout:g} s")
        return reply
    err = reply.error
    if err is not None:
        obs.require(bool(err[1]), f"{what}: error {err[0]} {err[1]!r}")
    elif reply.closed:
        obs.require(took <= timeout, f"{what}: connection closed without a reply after "
                    f"{took:.2f} s")  # fmt: skip
    else:
        obs.require(False, f"{what}: accepted ({reply.describe()})")
    return reply


async def request_refused(obs: Observation, conn: Conn, method: str, params: Any, what: str,
                          codes: tuple[int, ...] = (), timeout: float = REACTION_S
                          ) -> Reply:  # fmt: skip
    """A JSON-RPC request that must be refused with an error (optionally one of ``codes``) or
    a clean close."""
    msg = conn.message(method, params)
    line = json.dumps(msg).encode() + b"\n"
    reply = await error_or_close(obs, conn, line, msg["id"], what, timeout)
    err = reply.error
    if err is not None and codes:
        obs.require(err[0] in codes, f"{what}: error code {err[0]} is one of {codes}")
    return reply


def refused(obs: Observation, reply: Reply, what: str, codes: tuple[int, ...] = ()) -> bool:
    """A submit's reply must be an error (one of ``codes`` when given) or a close."""
    err = reply.error
    if err is not None:
        ok = not codes or err[0] in codes
        return obs.require(ok, f"{what}: refused with error {err[0]} {err[1]!r}")
    if reply.msg is None and reply.closed:
        return obs.require(True, f"{what}: connection closed")
    return obs.require(False, f"{what}: not refused ({reply.describe()})")


async def not_credited(ctx: Context, obs: Observation, share_hash: bytes, allowed: int,
                       what: str) -> None:  # fmt: skip
    """The journal holds this header hash at most ``allowed`` times."""
    await asyncio.sleep(0.05)
    n = await ctx.rows_with_hash(share_hash)
    obs.require(n <= allowed, f"{what}: the journal holds its header hash {n} time(s) "
                f"(at most {allowed})")  # fmt: skip
