"""One miner connection: the per-connection state machine (an asyncio Protocol).

Requests are handled strictly in arrival order. Most handlers are synchronous; ``authorize``
awaits the account policy, and while it runs later lines are queued, so a pipelined submit after
an authorize is judged as authorized (ESP-Miner pipelines configure/subscribe/authorize). Submits
go to the server's batcher (``SessionHost.submit``); their replies are written when the share is
durable or refused, other replies at once (clients match replies by id).

The session knows the server only through ``SessionHost``, the few calls it needs (no import of
the server module).

The object is kept small (``__slots__``): the pool holds tens of thousands of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from stratum import protocol, vardiff
from stratum.difficulty import DIFF1
from stratum.extranonce import ExtranonceAllocator
from stratum.interfaces import AccountPolicy
from stratum.protocol import ProtocolError, Request
from stratum.settings import PortSettings, ServerSettings
from stratum.stats import REQUEST_METHODS, StratumStats

log = logging.getLogger(__name__)

# account: letters, digits, _ and - (also fits bech32 addresses); worker: the same plus dots.
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_WORKER_RE = re.compile(r"[A-Za-z0-9_\-.]{0,64}")
_PASSWORD_DIFF_RE = re.compile(r"(?:^|[,;\s])d=([0-9]+(?:\.[0-9]+)?)")
MAX_JOBS_PER_SESSION = 8
MAX_WORKERS_PER_SESSION = 64
# Submits of one connection waiting for hash + sink before we stop reading from it.
MAX_INFLIGHT = 256
# Lines buffered while an authorize is pending; more means a flood, not a miner.
MAX_QUEUED_LINES = 1000
# cgminer-family agents log client.show_message; others may not know the method (spec §2.2).
_SHOW_MESSAGE_AGENTS = ("cgminer", "bmminer", "bfgminer", "sgminer", "braiins", "bosminer")


class SessionHost(Protocol):
    """What a session needs from the server it belongs to."""

    settings: ServerSettings
    stats: StratumStats
    policy: AccountPolicy
    extranonces: ExtranonceAllocator

    def admit(self, session: Session) -> str | None: ...
    def forget(self, session: Session, reason: str) -> None: ...
    def mark_dirty(self, session: Session) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
    def name_refusal(self, ip: str, name: str, account: str) -> str | None: ...
    def auth_failed(
        self, session: Session, account: str, reason: str, worker: str = ""
    ) -> None: ...
    def auth_ok(self, session: Session, account: str, first: bool, worker: str = "") -> None: ...
    def send_current_job(self, session: Session, clean: bool = False) -> None: ...
    def submit(self, session: Session, req_id: Any, params: Any) -> bool: ...


def parse_worker_name(name: object) -> tuple[str, str] | str:
    """``account.worker`` → (account, worker), or an error message naming the problem."""
    if not isinstance(name, str):
        return "worker name must be a string"
    account, _, worker = name.partition(".")
    if not _ACCOUNT_RE.fullmatch(account):
        return (
            "account must be 1-100 characters of letters, digits, '_' or '-' (use account.worker)"
        )
    if not _WORKER_RE.fullmatch(worker):
        return "worker must be up to 64 characters of letters, digits, '_', '-' or '.'"
    return account, worker


def password_difficulty(password: object) -> float | None:
    """The ``d=N`` difficulty hint in the password field, if any."""
    if not isinstance(password, str):
        return None
    m = _PASSWORD_DIFF_RE.search(password)
    if not m:
        return None
    value = float(m.group(1))
    return value if value > 0 else None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            return None
    else:
        return None
    return v if v > 0 and v != float("inf") else None


class Session(asyncio.Protocol):
    __slots__ = (
        "_lines",
        "_out",
        "_paused",
        "_queue",
        "closed",
        "connected_at",
        "difficulty",
        "extranonce1",
        "extranonce_subscribed",
        "floor",
        "inflight",
        "invalid",
        "jobs",
        "last_recv",
        "last_send",
        "peer",
        "port",
        "reading_paused",
        "server",
        "session_id",
        "submits",
        "subscribed",
        "suggested_difficulty",
        "transport",
        "user_agent",
        "vd",
        "version_mask",
        "workers",
    )

    def __init__(self, server: SessionHost, port: PortSettings) -> None:
        self.server = server
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._lines = protocol.LineBuffer(server.settings.max_line_bytes)
        self._queue: deque[bytes] | None = None
        self._out: list[bytes] | None = None
        self._paused = False
        self.closed = False
        self.subscribed = False
        self.extranonce1 = b""
        self.session_id = ""
        self.extranonce_subscribed = False
        self.user_agent = ""
        self.workers: dict[str, tuple[str, str]] = {}
        self.version_mask = 0
        self.suggested_difficulty: float | None = None  # what the miner asked for (a hint)
        self.difficulty = port.start_difficulty
        self.floor = port.min_difficulty
        self.jobs: dict[str, float] = {}
        now = time.monotonic()
        self.connected_at = now
        self.last_recv = now
        self.last_send = now
        self.vd = vardiff.new_state(now)
        self.submits = 0
        self.invalid = 0
        self.inflight = 0
        self.reading_paused = False

    # ---- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer or "")
        refusal = self.server.admit(self)
        if refusal:
            self.closed = True
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.server.forget(self, "peer_closed" if exc is None else "connection_error")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_recv = time.monotonic()
        try:
            lines = self._lines.feed(data)
        except ProtocolError as exc:
            self._protocol_error(None, exc)
            return
        if self._paused or self.reading_paused:
            self._hold(lines)
            return
        for i, line in enumerate(lines):
            self._handle_line(line)
            if self.closed:
                return
            if self._paused or self.reading_paused:
                self._hold(lines[i + 1 :])
                return

    def _hold(self, lines: list[bytes]) -> None:
        """Queue lines while an authorize is pending or the sink applies backpressure."""
        if self._queue is None:
            self._queue = deque()
        self._queue.extend(lines)
        # While authorizing we keep reading, so a long queue is a flood; under backpressure
        # reading is paused and the queue holds at most one read.
        if self._paused and len(self._queue) > MAX_QUEUED_LINES:
            self.server.stats.protocol_errors["flood"] += 1
            self.close("flood")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # ---- output ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data``; everything queued during one loop tick goes out in one write."""
        if self.closed:
            return
        out = self._out
        if out is None:
            self._out = [data]
            self.server.mark_dirty(self)
        else:
            out.append(data)

    def flush(self, now: float) -> None:
        """Write the queued replies (called once per loop tick by the server)."""
        out = self._out
        self._out = None
        transport = self.transport
        if out is None or self.closed or transport is None:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.last_send = now
        if transport.get_write_buffer_size() > self.server.settings.max_write_buffer_bytes:
            self.close("slow_reader", abort=True)

    def close(self, reason: str, *, abort: bool = False) -> None:
        if self.closed:
            return
        if not abort and self._out is not None:
            self.flush(time.monotonic())  # the last replies (e.g. an error) go out first
            if self.closed:
                return
        self.closed = True
        self._out = None
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self.server.forget(self, reason)

    def show_message(self, text: str) -> None:
        agent = self.user_agent.lower()
        if any(a in agent for a in _SHOW_MESSAGE_AGENTS):
            self.send(protocol.notification("client.show_message", [text]))

    # ---- dispatch --------------------------------------------------------------------------

    def _protocol_error(self, req_id: Any, exc: ProtocolError) -> None:
        self.server.stats.protocol_errors[exc.label] += 1
        self.send(protocol.error_reply(req_id, 20, str(exc)))
        if exc.fatal:
            self.close(exc.label)

    def _handle_line(self, line: bytes) -> None:
        try:
            req = protocol.decode_request(line)
        except ProtocolError as exc:
            self._protocol_error(None, exc)
            return
        method = req.method
        try:
            if method == "mining.submit":
                self._submit(req)  # counted by share result (StratumStats.shares)
            else:
                # requests by method and outcome; mining.authorize counts its own outcome
                requests = self.server.stats.requests
                handler = _HANDLERS.get(method)
                if handler is not None:
                    handler(self, req)
                    if handler is not Session._authorize:
                        requests[(method, "ok")] += 1
                elif method == "":
                    pass  # a reply to a server request (ping / get_version)
                elif method.startswith("mining.suggest_difficulty("):
                    # ckpool's legacy form with the value in the method name.
                    req.params = [method[len("mining.suggest_difficulty(") : -1]]
                    self._suggest_difficulty(req)
                    requests[("mining.suggest_difficulty", "ok")] += 1
                else:
                    self.server.stats.protocol_errors["unknown_method"] += 1
                    requests[("other", "unsupported")] += 1
                    self.send(
                        protocol.error_reply(req.id, 20, f"Unsupported method: {method[:64]}")
                    )
        except Exception:  # never a traceback to the client, never a dead connection loop
            log.exception("internal error handling %s from %s", method[:64], self.peer)
            label = method if method in REQUEST_METHODS else "other"
            self.server.stats.requests[(label, "error")] += 1
            self.send(protocol.error_reply(req.id, 20, "Internal error"))

    def _resume(self) -> None:
        """Process lines queued while an async handler ran."""
        self._paused = False
        self._drain_queue()

    def _drain_queue(self) -> None:
        queue = self._queue
        while queue and not (self._paused or self.reading_paused or self.closed):
            self._handle_line(queue.popleft())

    # ---- methods ---------------------------------------------------------------------------

    def _configure(self, req: Request) -> None:
        params = req.params
        if not isinstance(params, list) or not params or not isinstance(params[0], list):
            self.send(
                protocol.error_reply(
                    req.id, 20, "mining.configure params: [[extensions], {params}]"
                )
            )
            return
        names = params[0]
        opts = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        result: dict[str, Any] = {}
        for name in names:
            if not isinstance(name, str):
                continue
            if name == "version-rolling":
                miner_mask = 0xFFFFFFFF
                raw = opts.get("version-rolling.mask")
                if isinstance(raw, str):
                    try:
                        miner_mask = int(raw, 16) & 0xFFFFFFFF
                    except ValueError:
                        miner_mask = 0xFFFFFFFF
                self.version_mask = self.server.settings.version_mask & miner_mask
                result["version-rolling"] = True
                result["version-rolling.mask"] = f"{self.version_mask:08x}"
            elif name == "minimum-difficulty":
                value = _number(opts.get("minimum-difficulty.value"))
                if value is None:
                    result["minimum-difficulty"] = False
                else:
                    self.floor = self.port.clamp(value)
                    if self.difficulty < self.floor:
                        self._change_difficulty(self.floor)
                    result["minimum-difficulty"] = True
            elif name == "subscribe-extranonce":
                self.extranonce_subscribed = True
                result["subscribe-extranonce"] = True
            else:
                result[name] = False
        self.send(protocol.reply(req.id, result))

    def _subscribe(self, req: Request) -> None:
        params = req.params if isinstance(req.params, list) else []
        if params and isinstance(params[0], str):
            self.user_agent = params[0][:128]
        if not self.subscribed:
            resume = None
            if len(params) > 1 and isinstance(params[1], str) and len(params[1]) <= 32:
                try:
                    resume = bytes.fromhex(params[1])
                except ValueError:
                    resume = None
            self.extranonce1 = self.server.extranonces.allocate(resume)
            self.session_id = self.extranonce1.hex()
            self.subscribed = True
        sid = self.session_id
        self.send(
            protocol.reply(
                req.id,
                [
                    [["mining.set_difficulty", sid], ["mining.notify", sid]],
                    sid,
                    self.server.settings.extranonce2_size,
                ],
            )
        )
        if self.workers:
            self._start_work()

    def _authorize(self, req: Request) -> None:
        params = req.params if isinstance(req.params, list) else []
        name = params[0] if params else None
        parsed = parse_worker_name(name)
        requests = self.server.stats.requests
        if isinstance(parsed, str):
            self.server.stats.protocol_errors["bad_worker_name"] += 1
            requests[("mining.authorize", "invalid")] += 1
            self.send(protocol.error_reply(req.id, 24, f"Invalid worker name: {parsed}"))
            return
        assert isinstance(name, str)
        if name in self.workers:
            requests[("mining.authorize", "ok")] += 1
            self.send(protocol.true_reply(req.id))
            return
        if len(self.workers) >= MAX_WORKERS_PER_SESSION:
            requests[("mining.authorize", "refused")] += 1
            self.send(protocol.error_reply(req.id, 24, "Too many workers on one connection"))
            return
        refusal = self.server.name_refusal(self.peer, name, parsed[0])
        if refusal is not None:
            requests[("mining.authorize", "refused")] += 1
            self.send(protocol.error_reply(req.id, 24, f"Unauthorized worker: {refusal}"))
            self.show_message(f"qazpool: {name} refused: {refusal}")
            return
        hint = password_difficulty(params[1] if len(params) > 1 else None)
        self._paused = True
        self.server.spawn(self._finish_authorize(req.id, name, parsed, hint))

    async def _finish_authorize(
        self, req_id: Any, name: str, parsed: tuple[str, str], hint: float | None
    ) -> None:
        account, worker = parsed
        try:
            decision = await self.server.policy.authorize(account, worker, self.peer)
        except Exception:
            log.exception("account policy failed for %s from %s", account, self.peer)
            decision = None
        requests = self.server.stats.requests
        if self.closed:
            requests[("mining.authorize", "closed")] += 1
            return
        if decision is None:
            # The policy itself failed (e.g. register database down): not the miner's fault,
            # so no back-off; cgminer/cpuminer retry the authorize.
            requests[("mining.authorize", "unavailable")] += 1
            self.send(protocol.error_reply(req_id, 24, "Authorization temporarily unavailable"))
        elif not decision.allowed:
            requests[("mining.authorize", "refused")] += 1
            reason = decision.reason or "not allowed"
            self.send(protocol.error_reply(req_id, 24, f"Unauthorized worker: {reason}"))
            self.show_message(f"qazpool: {account} refused: {reason}")
            # may ban: the reply goes out first
            self.server.auth_failed(self, account, reason, worker)
        else:
            requests[("mining.authorize", "ok")] += 1
            first = not self.workers
            self.workers[name] = (account, worker)
            if hint is not None and self.suggested_difficulty is None:
                self.suggested_difficulty = hint
            self.server.auth_ok(self, account, first, worker)
            self.send(protocol.true_reply(req_id))
            if hint is not None and first:
                self.difficulty = self.port.clamp(hint)
                self.floor = max(self.floor, self.difficulty)
            if first and self.subscribed:
                self._start_work()
        self._resume()

    def _start_work(self) -> None:
        """First work after subscribe + authorize: set_difficulty then the current job."""
        self.send(protocol.set_difficulty(self.difficulty))
        self.server.send_current_job(self, clean=True)

    def _change_difficulty(self, difficulty: float) -> None:
        if difficulty == self.difficulty:
            return
        self.difficulty = difficulty
        if self.subscribed and self.workers:
            self.send(protocol.set_difficulty(difficulty))
            self.server.send_current_job(self)

    def _suggest_difficulty(self, req: Request) -> None:
        params = req.params if isinstance(req.params, list) else []
        value = _number(params[0]) if params else None
        if value is None:
            self.send(
                protocol.error_reply(req.id, 20, "suggest_difficulty: expected [difficulty > 0]")
            )
            return
        if req.id is not None:
            self.send(protocol.true_reply(req.id))
        self.suggest(value)

    def suggest(self, value: float) -> None:
        self.suggested_difficulty = value
        clamped = self.port.clamp(value)
        self.floor = max(self.port.min_difficulty, clamped)
        self._change_difficulty(clamped)

    def _suggest_target(self, req: Request) -> None:
        params = req.params if isinstance(req.params, list) else []
        target = None
        if params and isinstance(params[0], str) and 0 < len(params[0]) <= 64:
            try:
                target = int(params[0], 16)
            except ValueError:
                target = None
        if not target:
            self.send(protocol.error_reply(req.id, 20, "suggest_target: expected [target hex]"))
            return
        if req.id is not None:
            self.send(protocol.true_reply(req.id))
        self.suggest(DIFF1 / target)

    def _extranonce_subscribe(self, req: Request) -> None:
        self.extranonce_subscribed = True
        self.send(protocol.true_reply(req.id))

    def _true(self, req: Request) -> None:
        self.send(protocol.true_reply(req.id))

    def _ping(self, req: Request) -> None:
        self.send(protocol.reply(req.id, "pong"))

    def _get_transactions(self, req: Request) -> None:
        self.send(protocol.error_reply(req.id, 20, "mining.get_transactions is not supported"))

    def set_extranonce(self, extranonce1: bytes) -> bool:
        """Switch this connection to a new extranonce1 (only if the miner subscribed to it)."""
        if not (self.subscribed and self.extranonce_subscribed):
            return False
        self.extranonce1 = extranonce1
        self.session_id = extranonce1.hex()
        self.jobs.clear()  # old jobs were built by the miner with the old extranonce1
        self.send(
            protocol.notification(
                "mining.set_extranonce", [self.session_id, self.server.settings.extranonce2_size]
            )
        )
        if self.workers:
            self.server.send_current_job(self, clean=True)
        return True

    def _submit(self, req: Request) -> None:
        if self.server.submit(self, req.id, req.params):
            self.inflight += 1
            if self.inflight >= MAX_INFLIGHT and not self.reading_paused and self.transport:
                # Backpressure: the sink is slower than this miner submits; stop reading from
                # it until half of its shares are recorded (memory stays bounded).
                self.reading_paused = True
                self.transport.pause_reading()

    def job_sent(self, job_id: str, clean: bool) -> bool:
        """Remember the difficulty in force for ``job_id`` (sent now); True if it is new to this
        connection. Only the last ``MAX_JOBS_PER_SESSION`` are kept: a share on an older job
        the pool still has is judged at the connection's current difficulty."""
        jobs = self.jobs
        old = jobs.get(job_id)
        if clean:
            jobs.clear()
        elif old is None and len(jobs) >= MAX_JOBS_PER_SESSION:
            del jobs[next(iter(jobs))]
        # Difficulty belongs to the job: if this job was already sent at another difficulty,
        # shares the miner found on the earlier copy are judged at the lower of the two.
        jobs[job_id] = self.difficulty if old is None or clean else min(old, self.difficulty)
        return old is None

    def share_done(self) -> None:
        """One of this connection's shares in flight got its reply."""
        self.inflight -= 1
        if self.reading_paused and self.inflight <= MAX_INFLIGHT // 2 and not self.closed:
            self.reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
            self._drain_queue()

    def record_accepted(self, difficulty: float, now: float) -> None:
        """Vardiff bookkeeping for an accepted share; may change the difficulty."""
        cfg = self.server.settings.vardiff
        self.vd = state = vardiff.observe(self.vd, now, difficulty, cfg)
        if vardiff.due(state, now, cfg):
            self.retarget(now)

    def retarget(self, now: float) -> None:
        cfg = self.server.settings.vardiff
        new = vardiff.next_difficulty(
            self.vd, now, self.difficulty, cfg, self.floor, self.port.max_difficulty
        )
        self.vd = vardiff.retargeted(self.vd, now)
        if new is not None:
            self._change_difficulty(new)


_HANDLERS = {
    "mining.configure": Session._configure,
    "mining.subscribe": Session._subscribe,
    "mining.authorize": Session._authorize,
    "mining.suggest_difficulty": Session._suggest_difficulty,
    "mining.suggest_target": Session._suggest_target,
    "mining.extranonce.subscribe": Session._extranonce_subscribe,
    "mining.multi_version": Session._true,
    "mining.capabilities": Session._true,
    "mining.ping": Session._ping,
    "mining.get_transactions": Session._get_transactions,
}
