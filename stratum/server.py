"""The Stratum V1 server: listeners, the job table, batched share checks, limits, shutdown.

- One asyncio process serving every configured port (uvloop where installed, see ``new_loop``).
- The job table is a ``stratum.tip.TipBook``: one ``Tip`` per chain tip owns its jobs, their
  encoded ``mining.notify`` lines (written as the same bytes to every authorized session) and
  network targets, and the duplicate set keyed by header hash; a new block retires them together.
  Each session remembers the difficulty in force for each of its recent jobs.
- Hash first (spec §10.3): every submit that ``validate.precheck`` lets through is collected
  during one event-loop tick and hashed in one ``hashcore.check_shares`` call, including shares
  that will be refused (stale, ntime, extranonce2 size, version mask, another worker), so a
  block among them still reaches the block sink. Accepted shares are acked only after the sink
  stored them; a share the sink could not store leaves the duplicate set again (the miner
  resubmits it), one the sink already holds (``DuplicateShare``) is answered as a duplicate.
- Protection: a global connection cap (descriptors kept in reserve for storage and nodes) and a
  per-IP one, subscribe/authorize timeout, idle timeout, bounded write
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
    AuthorizedMiner,
    BlockCandidate,
    BlockSink,
    Decision,
    DuplicateShare,
    Job,
    NoSecurityEvents,
    SecurityEvents,
    ShareSink,
)
from stratum.jobs import coinbase_tx
from stratum.session import Session
from stratum.settings import ServerSettings
from stratum.stats import StratumStats
from stratum.tally import RefusalTally
from stratum.tip import Tip, TipBook
from stratum.validate import Reject, Submission, judge, precheck

log = logging.getLogger(__name__)

MAX_JOBS = 64  # job table size (a few minutes of refreshes)
# Shutdown: how long closing connections may take to flush their last lines (client.reconnect)
# before the ones still holding unsent bytes (a miner that stopped reading) are aborted.
CLOSE_GRACE_S = 2.0
# Rejects that point at a broken or hostile client (stale/low-difficulty ones happen to everyone).
_INVALID = frozenset(
    r for r in Reject if r not in (Reject.STALE, Reject.LOW_DIFFICULTY, Reject.NOT_RECORDED)
)

_REJECT_TAILS = {r: protocol.error_tail(r.code, r.message) for r in Reject}


class AllowAllPolicy:
    """Default account policy: every well-formed ``account.worker`` is allowed."""

    async def authorize(self, account: str, worker: str, peer: str) -> Decision:
        return Decision(True)


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is installed, else the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def build_header(sub: Submission, extranonce1: bytes) -> bytes:
    """The 80-byte header as the hash core hashed it for ``sub``."""
    job = sub.job
    mask = sub.hash_mask
    root = hashcore.merkle_root(coinbase_tx(job, extranonce1, sub.extranonce2), job.branch)
    version = (job.version & ~mask & 0xFFFFFFFF) | (sub.version_bits & mask)
    return (
        version.to_bytes(4, "little")
        + job.prevhash
        + root
        + sub.ntime.to_bytes(4, "little")
        + job.nbits.to_bytes(4, "little")
        + sub.nonce.to_bytes(4, "little")
    )


class _Pending:
    __slots__ = ("arrived", "extranonce1", "req_id", "session", "sub")

    def __init__(self, session: Session, req_id: Any, sub: Submission) -> None:
        self.session = session
        self.req_id = req_id
        self.sub = sub
        self.extranonce1 = session.extranonce1  # as the miner had it when it submitted
        self.arrived = session.last_recv  # monotonic time the submit line was read (no syscall)


# A share that passed every check, on its way to the sink: (pending, share, block candidate,
# the tip whose duplicate set holds it). A plain tuple: one per accepted share.
_Credit = tuple[_Pending, AcceptedShare, BlockCandidate | None, Tip]


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
        on_authorized: Callable[[AuthorizedMiner], None] | None = None,
        security: SecurityEvents | None = None,
    ) -> None:
        self.settings = settings
        self.on_authorized = on_authorized
        # the security log (refused logins, bans, floods): emit() only queues, never blocks
        self.security: SecurityEvents = security or NoSecurityEvents()
        self._refusals = RefusalTally(settings.flood_report_s)
        self.sink = sink
        self.block_sink = block_sink
        self.policy: AccountPolicy = policy or AllowAllPolicy()
        self.extranonces = extranonces or ExtranonceAllocator(
            resume_window_s=settings.resume_window_s
        )
        self.stats = stats or StratumStats()
        self.clock = clock
        self.sessions: set[Session] = set()
        self.tips = TipBook(MAX_JOBS)  # the pool's jobs, by chain tip
        self._share_targets: dict[float, bytes] = {}
        self._pending: list[_Pending] = []
        self._dirty: list[Session] = []
        self._write_scheduled = False
        self._flush_scheduled = False
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._ip_counts: dict[str, int] = {}
        self.stats.connections_max = settings.max_connections
        self._cap_refused = 0  # global-cap refusals since the last warning
        self._cap_warn_after = 0.0  # monotonic time the next global-cap warning may be logged
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
        self._listener: dict[int, str] = {}  # id(PortSettings) -> bound port (metrics label)
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
            self._listener[id(port)] = str(sockname[1])
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

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until no share is in flight (checked but not yet stored and answered): a moment
        when the acknowledged count and the stored shares agree. False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            return False
        return True

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
        transports = [s.transport for s in self.sessions if s.transport is not None]
        for s in list(self.sessions):
            s.close("shutdown")
        self._report_refusals(everything=True)
        await _finish_closing(transports, CLOSE_GRACE_S)
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
                self._refusals.count("connection.flood", ip, "banned")
                return "banned"
            del self._bans[ip]
            self._count_bans()
        cap = self.settings.max_connections_per_ip
        count = self._ip_counts.get(ip, 0)
        if cap and count >= cap:
            stats.connections_refused["per_ip_cap"] += 1
            self._refusals.count("connection.flood", ip, "per_ip_cap")
            return "per_ip_cap"
        total = self.settings.max_connections
        if total and stats.connections_current >= total:
            self._refuse_over_cap(total)
            return "global_cap"
        self._ip_counts[ip] = count + 1
        self.sessions.add(session)
        stats.connections_current += 1
        stats.connections_total += 1
        stats.listener_opened[self._listener.get(id(session.port), "other")] += 1
        return None

    def _refuse_over_cap(self, total: int) -> None:
        """A connection beyond [stratum].max_connections: counted, one security-log summary per
        flood_report_s (a flood spread over many addresses is one event, peer "*"), and a
        warning at most once per flood_report_s."""
        self.stats.connections_refused["global_cap"] += 1
        self._refusals.count("connection.flood", "*", "global_cap")
        self._cap_refused += 1
        now = time.monotonic()
        if now >= self._cap_warn_after:
            log.warning(
                "connection refused: %d connections open, the global cap "
                "[stratum].max_connections is %d (%d refused since the last warning); open "
                "sessions are kept",
                self.stats.connections_current,
                total,
                self._cap_refused,
            )
            self._cap_refused = 0
            self._cap_warn_after = now + self.settings.flood_report_s

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
        stats.listener_closed[(self._listener.get(id(session.port), "other"), reason)] += 1

    def ban(self, ip: str, seconds: float, reason: str) -> None:
        """Refuse every connection from ``ip`` for ``seconds`` and close its sessions."""
        log.warning("banning %s for %.0f s: %s", ip, seconds, reason)
        self._bans[ip] = time.monotonic() + seconds
        self.stats.bans_total += 1
        self._count_bans()
        self.security.emit("ban", peer=ip, scope="ip", seconds=seconds, reason=reason)
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
        self.security.emit("ban", peer=ip, scope="names", names=sorted(names), seconds=seconds,
                           reason=reason)
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
                    self._refusals.count("auth.refused", ip, f"{name}: {reason}")
                    return f"{reason}; retry in {until - now:.0f} s"
                del self._name_bans[key]
                self._count_bans()
        return None

    def auth_failed(self, session: Session, account: str, reason: str, worker: str = "") -> None:
        ip = session.peer
        self.security.emit("auth.refused", peer=ip, account=account, worker=worker,
                           reason=reason)
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

    def auth_ok(self, session: Session, account: str, first: bool, worker: str = "") -> None:
        self._auth_failures.pop((session.peer, account), None)
        accounts = self._failed_accounts.get(session.peer)
        if accounts is not None:
            accounts.discard(account)
        if first:
            self.stats.authorized_current += 1
        if self.on_authorized is not None:
            try:
                self.on_authorized(
                    AuthorizedMiner(
                        session.peer,
                        session.user_agent,
                        account,
                        worker,
                        session.version_mask,
                        session.suggested_difficulty,
                    )
                )
            except Exception:  # an observer must never break authorization
                log.exception("on_authorized callback failed for %s", session.peer)

    # ---- jobs ------------------------------------------------------------------------------

    def new_job(self, job: Job) -> float:
        """Make ``job`` current and send it to every authorized miner; returns seconds taken."""
        t0 = time.perf_counter()
        if self._pending:
            # Shares already queued this tick passed precheck against the current table: judge
            # them (duplicates included) before a new block retires their tip.
            self._flush()
        entry = self.tips.add(job)
        clean = entry.clean
        line = entry.notify_line
        job_id = job.job_id
        now = time.monotonic()
        limit = self.settings.max_write_buffer_bytes
        for s in list(self.sessions):
            if not s.workers or not s.subscribed or s.closed:
                continue
            s.job_sent(job_id, clean)
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
        entry = self.tips.current
        if entry is None:
            return
        # First work and a new extranonce1 restart the miner (clean); keepalives and difficulty
        # changes do not make it drop work it is hashing on.
        fresh = session.job_sent(entry.job.job_id, clean)
        session.send(entry.notify_line if clean or fresh else entry.resend_line)

    # ---- shares ----------------------------------------------------------------------------

    def _share_target(self, difficulty: float) -> bytes:
        target = self._share_targets.get(difficulty)
        if target is None:
            if len(self._share_targets) > 4096:
                self._share_targets.clear()
            target = hashcore.target_bytes(target_from_difficulty(difficulty))
            self._share_targets[difficulty] = target
        return target

    def submit(self, session: Session, req_id: Any, params: Any) -> bool:
        """A ``mining.submit`` from ``session``: queue it for this tick's hash batch, or reply
        with the reason it cannot be hashed. Returns True when it was queued."""
        result = precheck(
            params,
            subscribed=session.subscribed,
            workers=session.workers,
            session_jobs=session.jobs,
            book=self.tips,
            extranonce2_size=self.settings.extranonce2_size,
            version_mask=session.version_mask,
            now=self.clock(),
            difficulty=session.difficulty,
        )
        if type(result) is not Submission:
            assert isinstance(result, Reject)
            self.rejected(session, req_id, result, session.difficulty)
            return False
        self._pending.append(_Pending(session, req_id, result))
        self._inflight += 1
        self._drained.clear()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

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
        items = []
        for p in batch:
            sub = p.sub
            ref = sub.ref
            job = ref.job
            items.append(
                (
                    job.coinb1,
                    p.extranonce1,
                    sub.extranonce2,
                    job.coinb2,
                    job.branch,
                    job.version,
                    job.prevhash,
                    sub.ntime,
                    job.nbits,
                    sub.nonce,
                    share_target(sub.difficulty),
                    ref.network_target,
                    sub.version_bits,
                    sub.hash_mask,
                )
            )
        t0 = time.perf_counter()
        results = hashcore.check_shares(items)
        stats = self.stats
        stats.check_batches += 1
        stats.checked_shares += len(batch)
        now_mono = time.monotonic()
        created = datetime.now(UTC)
        accepted: list[_Credit] = []
        for p, (h, meets_share, meets_network) in zip(batch, results, strict=True):
            session = p.session
            sub = p.sub
            # The tip's duplicate set: a retired (stale) tip's set is empty and no longer
            # grows except for block solves, since stale shares are refused before this check.
            tip = sub.ref.tip
            seen = tip.seen
            reason, is_block = judge(meets_share, meets_network, h in seen, sub.reject)
            if reason is not None:
                session.share_done()
                self._inflight -= 1
                if is_block and h not in tip.blocks:
                    # Hash first: a block solve is submitted even though the share is refused.
                    seen.add(h)
                    stats.blocks_found_rejected += 1
                    self.spawn(self._rejected_block(p, h, tip, reason))
                self.rejected(session, p.req_id, reason, sub.difficulty)
                continue
            seen.add(h)
            account, worker = session.workers[sub.worker]
            job = sub.ref.job
            share = AcceptedShare(
                account=account,
                worker=worker,
                session_id=session.session_id,
                peer=session.peer,
                job_id=job.job_id,
                height=job.height,
                difficulty=sub.difficulty,
                share_hash=h,
                is_block=is_block,
                created_at=created,
                user_agent=session.user_agent,
            )
            candidate = None
            if is_block and h not in tip.blocks:
                candidate = self._candidate(p, h, account, worker)
            accepted.append((p, share, candidate, tip))
        stats.check_seconds.observe(time.perf_counter() - t0)  # one observation per batch
        if accepted:
            self.spawn(self._record(accepted, now_mono))
        elif self._inflight == 0:
            self._drained.set()

    def _candidate(self, p: _Pending, h: bytes, account: str, worker: str) -> BlockCandidate:
        sub = p.sub
        job = sub.job
        self.stats.blocks_found += 1
        log.warning(
            "BLOCK candidate at height %d: %s by %s.%s (%s)",
            job.height,
            h[::-1].hex(),
            account,
            worker,
            p.session.peer,
        )
        return BlockCandidate(
            job=job,
            extranonce1=p.extranonce1,
            extranonce2=sub.extranonce2,
            header=build_header(sub, p.extranonce1),
            block_hash=h,
            account=account,
            worker=worker,
            arrived=p.arrived,
        )

    async def _rejected_block(self, p: _Pending, h: bytes, tip: Tip, reason: Reject) -> None:
        """A block solve on a share refused for ``reason``: submitted and recorded all the same,
        credited to the connection's first authorized worker (the submitted name may not be
        authorized on it)."""
        sub = p.sub
        name = sub.worker if sub.worker in p.session.workers else next(iter(p.session.workers))
        account, worker = p.session.workers[name]
        log.warning("share refused (%s) is a block solve: submitting it", reason.label)
        if await self._block_found(self._candidate(p, h, account, worker)):
            tip.blocks.add(h)
        else:
            tip.seen.discard(h)  # not recorded: a resubmission must find it again

    async def _record(self, accepted: Sequence[_Credit], now: float) -> None:
        """Persist blocks and shares, then ack; a share the sink refused is not acked as true."""
        accepted_all = accepted
        stats = self.stats
        try:
            kept = []
            for item in accepted_all:
                candidate = item[2]
                if candidate is not None:
                    if not await self._block_found(candidate):
                        # Never answer true for a block that is not durably recorded: the miner
                        # sees the error (and the operator the log) instead of a silent loss.
                        self._not_recorded(item)
                        continue
                    item[3].blocks.add(item[1].share_hash)
                kept.append(item)
            accepted = kept
            outcomes = await self._put(accepted)
            for item, outcome in zip(accepted, outcomes, strict=True):
                p, share = item[0], item[1]
                session = p.session
                if outcome is None:
                    session.share_done()
                    stats.share("accepted", share.difficulty)
                    session.send(protocol.true_reply(p.req_id))
                    self._count_submit(session, None)
                    if not session.closed:
                        session.record_accepted(share.difficulty, now)
                elif isinstance(outcome, DuplicateShare):
                    # The sink already holds this header hash (a restart, another instance):
                    # not credited, not acked; it stays in the duplicate set.
                    session.share_done()
                    stats.storage_duplicates += 1
                    log.info("share %s from %s is already stored", share.share_hash[::-1].hex(),
                             session.peer)  # fmt: skip
                    self.rejected(session, p.req_id, Reject.DUPLICATE, share.difficulty)
                else:
                    log.error("share sink failed for %s: %r", session.peer, outcome)
                    self._not_recorded(item)
        finally:
            self._inflight -= len(accepted_all)
            if self._inflight == 0 and not self._pending:
                self._drained.set()

    async def _put(self, accepted: Sequence[_Credit]) -> list[BaseException | None]:
        """Store the shares; one outcome per share: None (stored) or the exception (a
        ``DuplicateShare`` when the sink already holds it, else a failure)."""
        shares = [item[1] for item in accepted]
        if not shares:
            return []
        put_many = getattr(self.sink, "put_many", None)
        try:
            if put_many is not None:
                # put_many may return one outcome per share (None or a DuplicateShare) or None
                # when all were stored.
                result = await put_many(shares)
                if result is None:
                    return [None] * len(shares)
                outcomes = list(result)
                if len(outcomes) != len(shares):
                    raise RuntimeError(
                        f"put_many returned {len(outcomes)} outcomes for {len(shares)} shares"
                    )
                return outcomes
            if len(shares) == 1:
                try:
                    await self.sink.put(shares[0])
                except DuplicateShare as exc:
                    return [exc]
                return [None]
            return list(
                await asyncio.gather(*(self.sink.put(s) for s in shares), return_exceptions=True)
            )
        except Exception as exc:
            return [exc] * len(shares)

    def _not_recorded(self, item: _Credit) -> None:
        """The sink could not store the share: answer "resubmit" and forget its hash, or the
        resubmission would be judged a duplicate (and count toward the invalid-share ban)."""
        p, share, _, tip = item
        tip.seen.discard(share.share_hash)
        p.session.share_done()
        self.stats.sink_errors += 1
        self.rejected(p.session, p.req_id, Reject.NOT_RECORDED, share.difficulty)

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
        if len(self._refusals):
            self._report_refusals(now)
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

    def _report_refusals(self, now: float | None = None, everything: bool = False) -> None:
        for t in self._refusals.due(now, everything=everything):
            self.security.emit(t.kind, peer=t.peer, reason=t.reason, count=t.count,
                               first_at=_iso(t.first_at), last_at=_iso(t.last_at))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed")


async def _finish_closing(transports: Sequence[asyncio.BaseTransport], grace_s: float) -> None:
    """Wait up to ``grace_s`` for gracefully closed transports to flush, then abort the ones
    still holding unsent bytes: a miner that does not read would otherwise keep its connection
    open after shutdown, and on Python >= 3.12 ``Server.wait_closed()`` waits for it for ever."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while True:
        stuck = [t for t in transports if _unsent(t)]
        if not stuck:
            return
        if loop.time() >= deadline:
            break
        await asyncio.sleep(0.05)
    log.warning("shutdown: aborting %d connection(s) whose miner is not reading", len(stuck))
    for t in stuck:
        t.abort()


def _unsent(transport: asyncio.BaseTransport) -> int:
    size = getattr(transport, "get_write_buffer_size", None)
    return size() if size is not None else 0
