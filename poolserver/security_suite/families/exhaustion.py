"""Resource exhaustion: floods, slow clients and brute force. The pool must cut the attacker
off by its configured limits while the honest miners keep mining (the runner checks their share
rate, the pool's memory and its liveness around every case)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time

from poolserver.security_suite.checks import refused
from poolserver.security_suite.context import Context
from poolserver.security_suite.model import Observation, family
from poolserver.security_suite.wire import Conn

case = family("exhaustion")
CASES = case.cases
FLOOD_EXTRA = 20


def _raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = min(hard, wanted) if hard != resource.RLIM_INFINITY else wanted
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@case("EX-01", "Connection flood from one address", quick=True,
      sends=f"[stratum].max_connections_per_ip + {FLOOD_EXTRA} connections from one address",
      expected="connections beyond the per-IP cap are closed at once; the rest of the pool "
               "keeps serving")
async def ex01(ctx: Context, obs: Observation) -> None:
    cap = ctx.stratum.max_connections_per_ip
    if not obs.require(cap > 0, f"per-IP cap configured: {cap or 'unlimited (0)'}"):
        cap = 1000  # still flood, to show what an unlimited pool does
    total = cap + FLOOD_EXTRA
    limit = _raise_fd_limit(total + 256)
    if not obs.require(limit >= total + 64, f"the tester can open {total} sockets "
                       f"(RLIMIT_NOFILE {limit})"):  # fmt: skip
        return
    conns: list[Conn] = []
    try:
        for _ in range(total):
            try:
                conns.append(await ctx.conn(timeout=3.0))
            except (OSError, TimeoutError):
                break
        obs.fact(f"{len(conns)} TCP connections opened")
        await asyncio.sleep(1.0)
        open_now = [c for c in conns if not c.closed]
        # the pool may close any of them; at most `cap` may remain
        obs.require(len(open_now) <= cap, f"{len(open_now)} still open after 1 s (cap {cap})")
        probe = await ctx.answering()
        obs.require(probe[0], f"another address is still served: {probe[1]}")
    finally:
        for c in conns:
            c.abort()


@case("EX-02", "Slowloris: one byte per second",
      sends="a subscribe line written one byte per second, never finished in time",
      expected="closed by [stratum].auth_timeout_s (the clock does not restart per byte)")
async def ex02(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn()
    try:
        limit = ctx.stratum.auth_timeout_s
        line = b'{"id":1,"method":"mining.subscribe","params":["' + b"s" * 400 + b'"]}'
        t0 = time.monotonic()
        for byte in line:
            if c.closed or not await c.send(bytes([byte])):
                break
            if time.monotonic() - t0 > limit + 10:
                break
            await asyncio.sleep(1.0)
        closed = await c.wait_closed(1.0)
        took = time.monotonic() - t0
        obs.require(closed and took <= limit + 5,
                    f"closed after {took:.1f} s (auth timeout {limit:g} s)" if closed
                    else f"still open after {took:.1f} s")  # fmt: skip
    finally:
        c.abort()


@case("EX-03", "A client that never reads", quick=True,
      sends="a login, then pipelined requests whose replies it never reads (4 KiB receive "
            "buffer)",
      expected="dropped once its unread replies pass [stratum].max_write_buffer_bytes; "
               "RSS bounded")
async def ex03(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn(read=False, rcvbuf=4096)
    try:
        req = json.dumps({"id": 1, "method": "mining.subscribe",
                          "params": ["never-reads/" + "r" * 200]}).encode() + b"\n"
        batch = req * 200
        sent = 0
        t0 = time.monotonic()
        cut = False
        while time.monotonic() - t0 < 30 and sent < 200 << 20:
            try:
                c.writer.write(batch)
                await asyncio.wait_for(c.writer.drain(), 2.0)
            except (ConnectionError, OSError):
                cut = True
                break
            except TimeoutError:
                # the pool stopped reading us (its backpressure); wait for it to drop us
                with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                    await asyncio.wait_for(c.reader.read(1), 5.0)
                cut = c.reader.at_eof() or c.writer.is_closing()
                break
            sent += len(batch)
        if not cut:
            with contextlib.suppress(ConnectionError, OSError):
                c.writer.write(batch)
                await asyncio.sleep(0.5)
                c.writer.write(batch)
                await c.writer.drain()
            cut = c.writer.is_closing() or c.writer.transport.is_closing()
        obs.require(cut, f"the pool dropped the non-reading client after {sent >> 10} KiB of "
                    "requests" if cut else f"still connected after {sent >> 20} MiB of requests "
                    "whose replies were never read")  # fmt: skip
    finally:
        c.abort()


@case("EX-04", "Pipelined flood behind a pending authorize", quick=True,
      sends="authorize followed by 20 000 pings in one write",
      expected="the pool refuses to queue without bound: closes the connection (flood); "
               "RSS bounded")
async def ex04(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn()
    try:
        await c.subscribe()
        lines = [json.dumps({"id": 1, "method": "mining.authorize",
                             "params": [ctx.worker(), "x"]}).encode()]  # fmt: skip
        lines += [b'{"id":2,"method":"mining.ping","params":[]}'] * 20_000
        await c.send(b"\n".join(lines) + b"\n")
        closed = await c.wait_closed(10.0)
        obs.require(closed, "closed for flooding" if closed else
                    "all 20 000 pipelined requests queued; connection still open")
    finally:
        c.abort()


@case("EX-05", "Share flood with invalid shares", quick=True,
      sends="[stratum].ban_min_submits + 10 shares with an invalid ntime from one worker",
      expected="banned: the connection closes and the worker is refused from that address")
async def ex05(ctx: Context, obs: Observation) -> None:
    c = await ctx.attacker("flood")
    n = ctx.stratum.ban_min_submits + 10
    try:
        assert c.job is not None
        for i in range(n):
            if c.closed:
                break
            params = [ctx.worker("flood"), c.job.job_id, c.next_extranonce2().hex(),
                      f"{(c.job.ntime + 86400 + i) & 0xFFFFFFFF:08x}", f"{i:08x}"]
            msg = c.message("mining.submit", params)
            await c.send(json.dumps(msg).encode() + b"\n")
        closed = await c.wait_closed(5.0)
        obs.require(closed, f"connection closed after the flood of {n} invalid shares" if closed
                    else f"still open after {n} invalid shares")  # fmt: skip
        again = await ctx.conn()
        try:
            reply = await again.login(ctx.worker("flood"))
            refused(obs, reply, "the flooding worker's new login from the same address", (24,))
        finally:
            await again.close()
    finally:
        c.abort()


@case("EX-06", "Authorize brute force over many accounts", quick=True,
      sends="authorize for [stratum].auth_failures_allowed + 3 unknown accounts from one "
            "address",
      expected="the address is refused (back-off, then an address ban); an unknown account is "
               "never authorized")
async def ex06(ctx: Context, obs: Observation) -> None:
    n = ctx.stratum.auth_failures_allowed + 3
    c = await ctx.conn()
    banned = False
    try:
        await c.subscribe()
        for i in range(n):
            if c.closed:
                banned = True
                break
            reply = await c.request("mining.authorize", [f"qzsec-nobody{i}.w", "x"])
            if reply.ok:
                obs.require(False, f"unknown account qzsec-nobody{i} was authorized")
                return
        banned = banned or await c.wait_closed(2.0)
        obs.require(banned, f"closed after {n} refused accounts" if banned
                    else f"still open after {n} refused accounts")  # fmt: skip
        try:
            again = await ctx.conn(timeout=3.0)
            reconnect = await again.subscribe()
            refused_now = reconnect.msg is None
            await again.close()
        except (OSError, TimeoutError):
            refused_now = True
        obs.require(refused_now, "a new connection from the address is refused"
                    if refused_now else "a new connection from the address is served")
    finally:
        c.abort()


@case("EX-07", "Many silent connections",
      sends="50 connections that connect and never send anything",
      expected="each is closed by [stratum].auth_timeout_s")
async def ex07(ctx: Context, obs: Observation) -> None:
    conns = []
    try:
        for _ in range(50):
            conns.append(await ctx.conn())
        limit = ctx.stratum.auth_timeout_s
        await asyncio.gather(*(c.wait_closed(limit + 5.0) for c in conns))
        still = sum(1 for c in conns if not c.closed)
        obs.require(still == 0, f"{50 - still} of 50 closed within {limit + 5:g} s")
    finally:
        for c in conns:
            c.abort()


@case("EX-08", "Hundreds of workers on one connection",
      sends="authorize of 100 worker names of the attacker's account on one connection",
      expected="refused beyond the per-connection worker limit (64)")
async def ex08(ctx: Context, obs: Observation) -> None:
    c = await ctx.conn()
    try:
        await c.subscribe()
        ok = 0
        for i in range(100):
            reply = await c.request("mining.authorize", [ctx.worker(f"w{i}"), "x"])
            ok += 1 if reply.ok else 0
            if c.closed:
                break
        obs.require(ok <= 64, f"{ok} of 100 worker names authorized on one connection")
    finally:
        c.abort()


def _open_files_limit(pid: int) -> int | None:
    """The soft open-files limit of ``pid`` (None = unlimited)."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                value = line.split()[3]
                return None if value == "unlimited" else int(value)
    raise OSError(f"/proc/{pid}/limits has no open-files line")


@case("EX-09", "File descriptors for a full per-IP flood", quick=True,
      sends="reads the pool's open-files limit (/proc/PID/limits)",
      expected="the soft limit leaves room for [stratum].max_connections_per_ip connections "
               "from one address plus 256 (else one address can exhaust every descriptor and "
               "nobody else is accepted)")
async def ex09(ctx: Context, obs: Observation) -> None:
    cap = ctx.stratum.max_connections_per_ip
    limit = _open_files_limit(ctx.pid)
    if limit is None:
        obs.require(True, "open files: unlimited")
        return
    obs.require(cap > 0 and limit >= cap + 256,
                f"open-files limit {limit}, per-IP cap {cap or 'unlimited'} (+256 headroom)")
