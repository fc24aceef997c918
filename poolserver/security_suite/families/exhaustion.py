"""Resource exhaustion: floods, slow clients and brute force. The pool must cut the attacker
off by its configured limits while the honest miners keep mining (the runner checks their share
rate, the pool's memory and its liveness around every case)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import time

from poolserver.fdlimit import automatic_cap
from poolserver.security_suite import observe
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


SPREAD_EXTRA = 50  # connections beyond the global cap in EX-10
SPREAD_MAX_CAP = 2000  # above this the flood is not cheap for the tester: not applicable
SPREAD_PER_ADDRESS = 32  # connections per source address (also kept under the per-IP cap)


def _samples(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Unlabelled (or one labelled) samples of the pool's /metrics text: ``name`` or
    ``name{label="value"}`` -> value, for the names asked."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key.split("{", 1)[0] in names:
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


CAP_GAUGE = "qazpool_stratum_connections_max"
OPEN_GAUGE = "qazpool_stratum_connections_open"
REFUSED = 'qazpool_stratum_connections_refused_total{reason="global_cap"}'


async def _metrics(ctx: Context, obs: Observation) -> dict[str, float] | None:
    if ctx.metrics_url is None:
        return None
    try:
        text = await asyncio.to_thread(observe.metrics_text, ctx.metrics_url, 5)
        return _samples(text, (CAP_GAUGE, OPEN_GAUGE, REFUSED.split("{")[0]))
    except (OSError, ValueError) as exc:
        obs.fact(f"metrics endpoint {ctx.metrics_url}: {exc}")
        return None


def _configured_cap(ctx: Context) -> int:
    """The cap the operator's config asks for: [stratum].max_connections, or (0 = automatic)
    the pool's open-files limit minus the reserved descriptors."""
    configured = int(getattr(ctx.stratum, "max_connections", 0) or 0)
    return configured or automatic_cap(_open_files_limit(ctx.pid))


@case("EX-10", "Connection flood spread over many addresses", quick=True,
      sends=f"the global connection cap + {SPREAD_EXTRA} connections from 127.A.B.x addresses, "
            f"at most {SPREAD_PER_ADDRESS} per address (each under the per-IP cap)",
      expected="connections beyond [stratum].max_connections are closed at once without a "
               "byte; the admitted ones keep working, a closed one frees a place, the pool "
               "keeps descriptors for its own files and keeps answering; honest miners keep "
               "their rate and nothing acknowledged is lost")
async def ex10(ctx: Context, obs: Observation) -> None:
    before = await _metrics(ctx, obs)
    if before is not None and CAP_GAUGE in before:
        cap = int(before[CAP_GAUGE])
        obs.fact(f"global cap in force (/metrics {CAP_GAUGE}): {cap or 'none (0)'}")
    else:
        cap = _configured_cap(ctx)
        obs.fact(f"global cap from the operator's config and the pool's open-files limit: "
                 f"{cap or 'none'} (no {CAP_GAUGE} on /metrics)")  # fmt: skip
    if not obs.require(cap > 0, f"a global connection cap is in force: {cap or 'none'}"):
        cap = _configured_cap(ctx) or 1000  # still flood, to show what an uncapped pool does
    if cap > SPREAD_MAX_CAP:
        obs.not_applicable_because(
            f"the global cap in force is {cap} connections: more than this case opens cheaply "
            f"({SPREAD_MAX_CAP}); the descriptors behind it are checked by EX-09")
        return
    total = cap + SPREAD_EXTRA
    limit = _raise_fd_limit(total + 256)
    if not obs.require(limit >= total + 64, f"the tester can open {total} sockets "
                       f"(RLIMIT_NOFILE {limit})"):  # fmt: skip
        return
    per_ip = ctx.stratum.max_connections_per_ip
    per_address = min(SPREAD_PER_ADDRESS, max(per_ip - 1, 1)) if per_ip else SPREAD_PER_ADDRESS
    sources = [ctx.new_source() for _ in range(math.ceil(total / per_address))]
    open_before = int(before.get(OPEN_GAUGE, 0)) if before else None
    refused_before = before.get(REFUSED, 0.0) if before else 0.0
    fd_limit = _open_files_limit(ctx.pid)
    fds_before = observe.open_fds(ctx.pid)
    open_text = "?" if open_before is None else str(open_before)
    obs.fact(f"before: {open_text} connections open, the pool holds {fds_before} descriptors "
             f"(limit {fd_limit or 'unlimited'})")  # fmt: skip
    conns: list[Conn] = []
    failed = 0
    try:
        for i in range(total):
            try:
                conns.append(await ctx.conn(source=sources[i // per_address], timeout=3.0))
            except (OSError, TimeoutError):
                failed += 1
        fds_peak = observe.open_fds(ctx.pid)
        obs.fact(f"{len(conns)} TCP connections opened from {len(sources)} addresses "
                 f"({failed} connects failed); the pool holds {fds_peak} descriptors")  # fmt: skip
        room = cap - open_before if open_before is not None else cap
        deadline = time.monotonic() + 3.0
        while sum(not c.closed for c in conns) > room and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # closes still in flight
        kept = [c for c in conns if not c.closed]
        cut = [c for c in conns if c.closed]
        obs.require(len(kept) <= cap, f"{len(kept)} of the flood's connections still open (cap "
                    f"{cap}, {open_text} open before)")  # fmt: skip
        obs.require(len(cut) + failed >= SPREAD_EXTRA,
                    f"{len(cut)} closed by the pool, {failed} not connected: the excess "
                    f"({SPREAD_EXTRA} or more) refused")  # fmt: skip
        noisy = [c for c in cut if c.bytes_in or c.garbage]
        obs.require(not noisy, f"the refused connections were closed without a byte sent "
                    f"({len(noisy)} got data first)")  # fmt: skip
        if fd_limit is not None:
            spare = fd_limit - observe.open_fds(ctx.pid)
            obs.require(spare >= 64, f"the pool keeps {spare} descriptors spare for its "
                        f"database, spool and nodes (limit {fd_limit})")  # fmt: skip
        # the admitted connections keep working (from several addresses)
        sample = [kept[j] for j in sorted({0, len(kept) // 2, len(kept) - 1}) if kept]
        works = [(await c.subscribe()).ok for c in sample]
        obs.require(bool(sample) and all(works),
                    f"{sum(works)} of {len(sample)} admitted connections answer a subscribe "
                    "during the flood")  # fmt: skip
        if before is not None:  # the metrics endpoint needs a descriptor of the pool's own
            after = await _metrics(ctx, obs)
            obs.require(after is not None, "the metrics endpoint answers during the flood")
            if after is not None:
                now_open = after.get(OPEN_GAUGE, 0.0)
                obs.require(now_open <= cap, f"the pool counts {now_open:g} connections open "
                            f"(cap {cap})")  # fmt: skip
                counted = after.get(REFUSED, 0.0) - refused_before
                obs.require(counted >= len(cut) and counted > 0,
                            f"refusals counted on /metrics (reason global_cap): +{counted:g}")
        # a closed place is taken by a new connection from yet another address
        if kept:
            await kept.pop(0).close()
            ok, how, deadline = False, "", time.monotonic() + 3.0
            while not ok and time.monotonic() < deadline:  # until the pool has seen the close
                await asyncio.sleep(0.1)
                try:
                    fresh = await ctx.conn(source=ctx.new_source(), timeout=3.0)
                except (OSError, TimeoutError) as exc:
                    how = f"connect failed: {exc}"
                    continue
                conns.append(fresh)
                reply = await fresh.subscribe()
                ok, how = reply.ok, reply.describe()
            obs.require(ok, f"after one of them closed, a new connection is served ({how})")
    finally:
        for c in conns:
            c.abort()
