"""The Stratum V1 server: listeners, the job table, batched share checks, limits, shutdown.

- One asyncio process serving every configured port (uvloop where installed, see ``new_loop``).
- New jobs are encoded once (``mining.notify`` line) and the same bytes are written to every
  authorized session; each session remembers the difficulty in force for each job it received.
- Submits that pass ``validate.precheck`` are collected during one event-loop tick and hashed in
  one ``hashcore.check_shares`` call; accepted shares are acked only after ``sink.put`` returns,
  block candidates go to the block sink before the share is acked.
- Protection: per-IP connection cap, subscribe/authorize timeout, idle timeout, bounded write
  buffer (``Session.flush``), backpressure from a slow sink (``Session`` stops reading), bans
  for invalid shares per (IP, worker) with expiry, authorization back-off per (IP, account),
  and an IP ban only for addresses refused for many accounts (NAT farms share one address).
- Shutdown: stop listening, ``client.reconnect`` to everyone, drain in-flight shares, close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from stratum import hashcore, protocol
from stratum.difficulty import target_from_difficulty
from stratum.extranonce import ExtranonceAllocator
from stratum.interfaces import (
    AcceptedShare,
    AccountPolicy,
    BlockCandidate,
    BlockSink,
    Decision,
    Job,
    ShareSink,
)
from stratum.jobs import JobBook, coinbase_tx, notify_params
from stratum.session import MAX_JOBS_PER_SESSION, Session
from stratum.settings import ServerSettings
from stratum.stats import StratumStats
from stratum.validate import Reject, Submission, judge

log = logging.getLogger(__name__)

MAX_JOBS = 64  # job table size (a few minutes of refreshes)
# Rejects that point at a broken or hostile client (stale/low-difficulty ones happen to everyone).
_INVALID = frozenset(
    r for r in Reject if r not in (Reject.STALE, Reject.LOW_DIFFICULTY, Reject.NOT_RECORDED)
)

_REJECT_TAILS = {r: protocol.error_tail(r.code, r.message) for r in Reject}


class AllowAllPolicy:
    """Default account policy: every well-formed ``account.worker`` is allowed."""

    async def authorize(self, account: str, worker: str, peer: str) -> Decision:
        return Decision(True)


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is installed, else the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def build_header(sub: Submission, extranonce1: bytes, version_mask: int) -> bytes:
    job = sub.job
    root = hashcore.merkle_root(coinbase_tx(job, extranonce1, sub.extranonce2), job.branch)
    version = (job.version & ~version_mask & 0xFFFFFFFF) | (sub.version_bits & version_mask)
    return (
        version.to_bytes(4, "little")
        + job.prevhash
        + root
        + sub.ntime.to_bytes(4, "little")
        + job.nbits.to_bytes(4, "little")
        + sub.nonce.to_bytes(4, "little")
    )


class _Pending:
    __slots__ = ("req_id", "session", "sub")

    def __init__(self, session: Session, req_id: Any, sub: Submission) -> None:
        self.session = session
        self.req_id = req_id
        self.sub = sub


class StratumServer:
    def __init__(
        self,
        settings: ServerSettings,
        sink: ShareSink,
        *,
        block_sink: BlockSink | None = None,
        policy: AccountPolicy | None = None,
        extranonces: ExtranonceAllocator | None = None,
        stats: StratumStats | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.block_sink = block_sink
        self.policy: AccountPolicy = policy or AllowAllPolicy()
        self.extranonces = extranonces or ExtranonceAllocator(
            resume_window_s=settings.resume_window_s
        )
        self.stats = stats or StratumStats()
        self.clock = clock
        self.sessions: set[Session] = set()
        self.book = JobBook(MAX_JOBS)  # the pool's jobs: current, stale, forgotten
        self._notify_lines: dict[str, bytes] = {}  # as broadcast (clean flag of the job)
        self._resend_lines: dict[str, bytes] = {}  # clean_jobs=false: keepalive, new difficulty
        self._network_targets: dict[str, bytes] = {}
        self._seen: dict[str, set[bytes]] = {}
        self._share_targets: dict[float, bytes] = {}
        self._pending: list[_Pending] = []
        self._dirty: list[Session] = []
        self._write_scheduled = False
        self._flush_scheduled = False
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._ip_counts: dict[str, int] = {}
        self._bans: dict[str, float] = {}  # ip -> monotonic expiry
        # Farms put many miners behind one NAT address, so a broken or misconfigured miner must
        # not take the whole address down: bans for invalid shares and the authorization
        # back-off are per (ip, worker name) and (ip, account). Only an address that fails for
        # more than auth_failures_allowed different accounts (a scanner) is refused outright.
        self._name_bans: dict[tuple[str, str], tuple[float, str]] = {}  # -> (expiry, reason)
        # (ip, account) -> (failures, current backoff, monotonic time of the last failure)
        self._auth_failures: dict[tuple[str, str], tuple[int, float, float]] = {}
        self._failed_accounts: dict[str, set[str]] = {}  # ip -> accounts refused recently
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> list[tuple[str, int]]:
        """Open every listener; returns the bound (host, port) pairs (port 0 = any free port)."""
        loop = asyncio.get_running_loop()
        bound = []
        for port in self.settings.ports:
            srv = await loop.create_server(
                lambda port=port: Session(self, port),
                port.host,
                port.port,
                ssl=port.ssl_context,
                reuse_address=True,
                backlog=4096,
            )
            self._servers.append(srv)
            sockname = srv.sockets[0].getsockname()
            bound.append((sockname[0], sockname[1]))
            log.info(
                "stratum listening on %s:%d%s (difficulty start %s, min %s, max %s)",
                sockname[0],
                sockname[1],
                " (TLS)" if port.ssl_context else "",
                port.start_difficulty,
                port.min_difficulty,
                port.max_difficulty,
            )
        self._sweeper = loop.create_task(self._sweep_loop())
        return bound

    async def shutdown(self, *, reconnect: bool = True) -> None:
        """Graceful: stop accepting, ask miners to reconnect, drain in-flight shares, close."""
        if self.closing:
            return
        self.closing = True
        for srv in self._servers:
            srv.close()
        if reconnect:
            line = protocol.notification("client.reconnect", [])
            for s in list(self.sessions):
                s.send(line)
        if self._pending:
            self._flush()
        try:
            async with asyncio.timeout(self.settings.drain_timeout_s):
                await self._drained.wait()
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        except TimeoutError:
            log.error("shutdown: %d shares still in flight after drain timeout", self._inflight)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for s in list(self.sessions):
            s.close("shutdown")
        for srv in self._servers:
            await srv.wait_closed()
        log.info("stratum server stopped")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the server keeps a reference to (and waits for on shutdown)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- connections -----------------------------------------------------------------------

    def admit(self, session: Session) -> str | None:
        """Called on connect: a refusal reason, or None after registering the session."""
        ip = session.peer
        stats = self.stats
        if self.closing:
            stats.connections_refused["shutting_down"] += 1
            return "shutting_down"
        until = self._bans.get(ip)
        if until is not None:
            if until > time.monotonic():
                stats.connections_refused["banned"] += 1
                return "banned"
            del self._bans[ip]
            self._count_bans()
        cap = self.settings.max_connections_per_ip
        count = self._ip_counts.get(ip, 0)
        if cap and count >= cap:
            stats.connections_refused["per_ip_cap"] += 1
            return "per_ip_cap"
        self._ip_counts[ip] = count + 1
        self.sessions.add(session)
        stats.connections_current += 1
        stats.connections_total += 1
        return None

    def forget(self, session: Session, reason: str) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        ip = session.peer
        n = self._ip_counts.get(ip, 1) - 1
        if n > 0:
            self._ip_counts[ip] = n
        else:
            self._ip_counts.pop(ip, None)
        if session.extranonce1:
            self.extranonces.release(session.extranonce1)
        stats = self.stats
        stats.connections_current -= 1
        if session.workers:
            stats.authorized_current -= 1
        stats.disconnects[reason] += 1

    def ban(self, ip: str, seconds: float, reason: str) -> None:
        """Refuse every connection from ``ip`` for ``seconds`` and close its sessions."""
        log.warning("banning %s for %.0f s: %s", ip, seconds, reason)
        self._bans[ip] = time.monotonic() + seconds
        self.stats.bans_total += 1
        self._count_bans()
        for s in [s for s in self.sessions if s.peer == ip]:
            s.show_message(f"qazpool: connection refused for {seconds:.0f} s: {reason}")
            s.close("banned")

    def ban_names(self, ip: str, names: list[str], seconds: float, reason: str) -> None:
        """Refuse authorizing these worker names (or ``@account``) from ``ip`` for a while."""
        until = time.monotonic() + seconds
        for name in names:
            self._name_bans[(ip, name)] = (until, reason)
        self.stats.bans_total += 1
        self._count_bans()
        log.warning("banning %s from %s for %.0f s: %s", ", ".join(names), ip, seconds, reason)

    def _count_bans(self) -> None:
        self.stats.bans_current = len(self._bans) + len(self._name_bans)

    def name_refusal(self, ip: str, name: str, account: str) -> str | None:
        """Why ``name`` may not authorize from ``ip`` right now (a ban or back-off), or None."""
        now = time.monotonic()
        for key in ((ip, name), (ip, "@" + account)):
            entry = self._name_bans.get(key)
            if entry is not None:
                until, reason = entry
                if until > now:
                    return f"{reason}; retry in {until - now:.0f} s"
                del self._name_bans[key]
                self._count_bans()
        return None

    def auth_failed(self, session: Session, account: str, reason: str) -> None:
        ip = session.peer
        key = (ip, account)
        count, backoff, _ = self._auth_failures.get(key, (0, 0.0, 0.0))
        now = time.monotonic()
        count += 1
        s = self.settings
        log.info("authorize refused for %s from %s: %s (%d failures)", account, ip, reason, count)
        accounts = self._failed_accounts.setdefault(ip, set())
        accounts.add(account)
        if count > s.auth_failures_allowed:
            backoff = min(s.auth_backoff_max_s, backoff * 2 if backoff else s.auth_backoff_s)
            self.ban_names(ip, ["@" + account], backoff, f"too many refused logins ({reason})")
        self._auth_failures[key] = (count, backoff, now)
        if len(accounts) > s.auth_failures_allowed:
            self.ban(ip, s.auth_backoff_max_s, f"logins refused for {len(accounts)} accounts")

    def auth_ok(self, session: Session, account: str, first: bool) -> None:
        self._auth_failures.pop((session.peer, account), None)
        accounts = self._failed_accounts.get(session.peer)
        if accounts is not None:
            accounts.discard(account)
        if first:
            self.stats.authorized_current += 1

    # ---- jobs ------------------------------------------------------------------------------

    def new_job(self, job: Job) -> float:
        """Make ``job`` current and send it to every authorized miner; returns seconds taken."""
        t0 = time.perf_counter()
        if self._pending:
            # Shares already queued this tick passed precheck against the current tables: judge
            # them (duplicates included) before a new block clears or trims those tables.
            self._flush()
        clean = job.clean_jobs or job.prevhash != self.book.current_prevhash
        if clean:
            self._seen.clear()
        for old in self.book.add(job):
            self._notify_lines.pop(old, None)
            self._resend_lines.pop(old, None)
            self._network_targets.pop(old, None)
        self._seen[job.job_id] = set()
        # Duplicate sets are needed only for jobs a session can still submit on: the last
        # MAX_JOBS_PER_SESSION (older ones are "job not found" before hashing).
        while len(self._seen) > MAX_JOBS_PER_SESSION:
            del self._seen[next(iter(self._seen))]
        self._network_targets[job.job_id] = hashcore.target_bytes(job.network_target)
        params = notify_params(job)
        params[8] = clean
        line = protocol.notify_params_line(params)
        self._notify_lines[job.job_id] = line
        params[8] = False
        self._resend_lines[job.job_id] = protocol.notify_params_line(params)
        job_id = job.job_id
        now = time.monotonic()
        limit = self.settings.max_write_buffer_bytes
        for s in list(self.sessions):
            if not s.workers or not s.subscribed or s.closed:
                continue
            jobs = s.jobs
            if clean:
                jobs.clear()
            elif len(jobs) >= MAX_JOBS_PER_SESSION:
                del jobs[next(iter(jobs))]
            jobs[job_id] = s.difficulty
            if s._out is not None:  # keep order behind replies queued this tick
                s._out.append(line)
                continue
            transport = s.transport
            if transport is None:
                continue
            transport.write(line)
            s.last_send = now
            if transport.get_write_buffer_size() > limit:
                s.close("slow_reader", abort=True)
        elapsed = time.perf_counter() - t0
        self.stats.jobs_broadcast += 1
        self.stats.last_broadcast_seconds = elapsed
        return elapsed

    def send_current_job(self, session: Session, clean: bool = False) -> None:
        job = self.book.current
        if job is None:
            return
        jobs = session.jobs
        old = jobs.get(job.job_id)
        if clean:
            jobs.clear()
        elif old is None and len(jobs) >= MAX_JOBS_PER_SESSION:
            del jobs[next(iter(jobs))]
        # Difficulty belongs to the job: if this job was already sent at another difficulty,
        # shares the miner found on the earlier copy are judged at the lower of the two.
        diff = session.difficulty if old is None or clean else min(old, session.difficulty)
        jobs[job.job_id] = diff
        # First work and a new extranonce1 restart the miner (clean); keepalives and difficulty
        # changes do not make it drop work it is hashing on.
        lines = self._notify_lines if clean or old is None else self._resend_lines
        session.send(lines[job.job_id])

    # ---- shares ----------------------------------------------------------------------------

    def _share_target(self, difficulty: float) -> bytes:
        target = self._share_targets.get(difficulty)
        if target is None:
            if len(self._share_targets) > 4096:
                self._share_targets.clear()
            target = hashcore.target_bytes(target_from_difficulty(difficulty))
            self._share_targets[difficulty] = target
        return target

    def enqueue(self, session: Session, req_id: Any, sub: Submission) -> None:
        self._pending.append(_Pending(session, req_id, sub))
        self._inflight += 1
        self._drained.clear()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def mark_dirty(self, session: Session) -> None:
        self._dirty.append(session)
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_all)

    def _write_all(self) -> None:
        self._write_scheduled = False
        dirty = self._dirty
        self._dirty = []
        now = time.monotonic()
        for session in dirty:
            session.flush(now)

    def rejected(self, session: Session, req_id: Any, reason: Reject, difficulty: float) -> None:
        self.stats.share(reason.label, difficulty)
        session.send(protocol.error_reply_cached(req_id, _REJECT_TAILS[reason]))
        self._count_submit(session, reason)

    def _count_submit(self, session: Session, reason: Reject | None) -> None:
        session.submits += 1
        if reason in _INVALID:
            session.invalid += 1
        s = self.settings
        if session.submits >= s.ban_min_submits:
            if session.invalid >= s.ban_reject_ratio * session.submits and not session.closed:
                reason = f"{session.invalid} of {session.submits} shares invalid"
                self.ban_names(session.peer, list(session.workers), s.ban_seconds, reason)
                session.show_message(f"qazpool: banned for {s.ban_seconds:.0f} s: {reason}")
                session.close("banned")
            session.submits = session.invalid = 0

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = self._pending
        if not batch:
            return
        self._pending = []
        share_target = self._share_target
        net_targets = self._network_targets
        items = []
        for p in batch:
            sub = p.sub
            job = sub.job
            mask = p.session.version_mask
            items.append(
                (
                    job.coinb1,
                    p.session.extranonce1,
                    sub.extranonce2,
                    job.coinb2,
                    job.branch,
                    job.version,
                    job.prevhash,
                    sub.ntime,
                    job.nbits,
                    sub.nonce,
                    share_target(sub.difficulty),
                    net_targets.get(job.job_id) or hashcore.target_bytes(job.network_target),
                    sub.version_bits,
                    mask,
                )
            )
        results = hashcore.check_shares(items)
        stats = self.stats
        stats.check_batches += 1
        stats.checked_shares += len(batch)
        now_mono = time.monotonic()
        created = datetime.now(UTC)
        accepted: list[tuple[_Pending, AcceptedShare, BlockCandidate | None]] = []
        seen_by_job = self._seen
        for p, (h, meets_share, meets_network) in zip(batch, results, strict=True):
            session = p.session
            sub = p.sub
            # Always present: precheck admits only jobs that still have a set, and new_job
            # flushes the queue before it drops any (an empty stand-in is never stored).
            seen = seen_by_job.get(sub.job.job_id)
            if seen is None:
                seen = set()
            reason, is_block = judge(meets_share, meets_network, h in seen)
            if reason is not None:
                session.share_done()
                self._inflight -= 1
                self.rejected(session, p.req_id, reason, sub.difficulty)
                continue
            seen.add(h)
            account, worker = session.workers[sub.worker]
            share = AcceptedShare(
                account=account,
                worker=worker,
                session_id=session.session_id,
                peer=session.peer,
                job_id=sub.job.job_id,
                height=sub.job.height,
                difficulty=sub.difficulty,
                share_hash=h,
                is_block=is_block,
                created_at=created,
                user_agent=session.user_agent,
            )
            candidate = None
            if is_block:
                header = build_header(sub, session.extranonce1, session.version_mask)
                candidate = BlockCandidate(
                    job=sub.job,
                    extranonce1=session.extranonce1,
                    extranonce2=sub.extranonce2,
                    header=header,
                    block_hash=h,
                    account=account,
                    worker=worker,
                )
                stats.blocks_found += 1
                log.warning(
                    "BLOCK candidate at height %d: %s by %s.%s (%s)",
                    sub.job.height,
                    h[::-1].hex(),
                    account,
                    worker,
                    session.peer,
                )
            accepted.append((p, share, candidate))
        if accepted:
            self.spawn(self._record(accepted, now_mono))
        elif self._inflight == 0:
            self._drained.set()

    async def _record(
        self,
        accepted: Sequence[tuple[_Pending, AcceptedShare, BlockCandidate | None]],
        now: float,
    ) -> None:
        """Persist blocks and shares, then ack; a share the sink refused is not acked as true."""
        accepted_all = accepted
        try:
            kept = []
            for item in accepted_all:
                candidate = item[2]
                if candidate is not None and not await self._block_found(candidate):
                    # Never answer true for a block that is not durably recorded: the miner
                    # sees the error (and the operator the log) instead of a silent loss.
                    p, share, _ = item
                    p.session.share_done()
                    self.stats.sink_errors += 1
                    self.rejected(p.session, p.req_id, Reject.NOT_RECORDED, share.difficulty)
                    continue
                kept.append(item)
            accepted = kept
            shares = [share for _, share, _ in accepted]
            outcomes: list[BaseException | None]
            put_many = getattr(self.sink, "put_many", None)
            try:
                if put_many is not None:
                    await put_many(shares)
                    outcomes = [None] * len(shares)
                elif len(shares) == 1:
                    await self.sink.put(shares[0])
                    outcomes = [None]
                else:
                    outcomes = await asyncio.gather(
                        *(self.sink.put(s) for s in shares), return_exceptions=True
                    )
            except Exception as exc:
                outcomes = [exc] * len(shares)
            stats = self.stats
            for (p, share, _), outcome in zip(accepted, outcomes, strict=True):
                session = p.session
                session.share_done()
                if outcome is not None:
                    stats.sink_errors += 1
                    log.error("share sink failed for %s: %r", session.peer, outcome)
                    self.rejected(session, p.req_id, Reject.NOT_RECORDED, share.difficulty)
                    continue
                stats.share("accepted", share.difficulty)
                session.send(protocol.true_reply(p.req_id))
                self._count_submit(session, None)
                if not session.closed:
                    session.record_accepted(share.difficulty, now)
        finally:
            self._inflight -= len(accepted_all)
            if self._inflight == 0 and not self._pending:
                self._drained.set()

    async def _block_found(self, candidate: BlockCandidate) -> bool:
        """Hand the block to the block sink; False if it could not be recorded durably."""
        if self.block_sink is None:
            log.error(
                "no block sink configured: block %s at height %d is NOT submitted",
                candidate.block_hash[::-1].hex(),
                candidate.job.height,
            )
            return True
        try:
            await self.block_sink.block_found(candidate)
        except Exception:
            log.exception(
                "block sink failed: block %s at height %d NOT recorded; share rejected",
                candidate.block_hash[::-1].hex(),
                candidate.job.height,
            )
            return False
        return True

    # ---- housekeeping ----------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> None:
        """Timeouts, vardiff for quiet miners, keepalive, ban expiry (called every second)."""
        now = time.monotonic() if now is None else now
        s = self.settings
        cfg = s.vardiff
        for session in list(self.sessions):
            if session.closed:
                continue
            if not (session.subscribed and session.workers):
                if now - session.connected_at > s.auth_timeout_s:
                    session.close("auth_timeout")
                continue
            if now - session.last_recv > s.idle_timeout_s:
                session.close("idle_timeout")
                continue
            if now - session.vd.last_retarget >= cfg.retarget_interval_s:
                session.retarget(now)
            if now - session.last_send > s.keepalive_s:
                self.send_current_job(session)
        if self._bans or self._name_bans:
            for ip in [ip for ip, until in self._bans.items() if until <= now]:
                del self._bans[ip]
            for key in [k for k, (until, _) in self._name_bans.items() if until <= now]:
                del self._name_bans[key]
            self._count_bans()
        if self._auth_failures:
            # forget an IP's failures once it stayed quiet for the longest back-off
            horizon = now - s.auth_backoff_max_s
            for key in [k for k, (_, _, t) in self._auth_failures.items() if t < horizon]:
                del self._auth_failures[key]
                accounts = self._failed_accounts.get(key[0])
                if accounts is not None:
                    accounts.discard(key[1])
                    if not accounts:
                        del self._failed_accounts[key[0]]

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed")
