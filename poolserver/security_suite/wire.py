"""A Stratum client for the security suite: raw bytes when a case needs them, JSON-RPC when it
does not, bound to a chosen loopback source address (attacks come from 127.0.0.2 and up, the
honest miners from 127.0.0.1), and real share grinding with the pool's C hash core.

Everything here observes: a reply (with its error code and message), a clean close (EOF), a
reset, or silence within a timeout. Nothing raises on the pool's behaviour, only on the
tester's own mistakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from stratum import hashcore
from stratum.difficulty import target_from_difficulty, target_from_nbits
from stratum.jobs import NotifiedWork as Job

READ_LIMIT = 1 << 20
AVOID_BLOCK_TRIES = 1 << 17  # nonces tried for a share that is not a block before taking one


@dataclass
class Share:
    """A ground share: the submit fields as hex, and its header hash."""

    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None
    hash: bytes
    meets_share: bool
    job_id: str = ""  # the job it was ground for

    def params(self, worker: str, job_id: str) -> list[str]:
        p = [worker, job_id, self.extranonce2, self.ntime, self.nonce]
        if self.version_bits is not None:
            p.append(self.version_bits)
        return p


@dataclass
class Reply:
    """What came back for one request: the reply object, or why none did."""

    msg: dict[str, Any] | None
    closed: bool = False  # the pool closed the connection (EOF or reset) before replying

    @property
    def ok(self) -> bool:
        return (
            self.msg is not None and self.msg.get("error") is None and bool(self.msg.get("result"))
        )

    @property
    def error(self) -> tuple[int, str] | None:
        err = self.msg.get("error") if self.msg else None
        if isinstance(err, list) and len(err) >= 2:
            return int(err[0]) if isinstance(err[0], int) else -1, str(err[1])
        return None

    def describe(self) -> str:
        if self.msg is None:
            return "connection closed without a reply" if self.closed else "no reply"
        err = self.error
        if err is not None:
            return f"error {err[0]} {err[1]!r}"
        return f"result {json.dumps(self.msg.get('result'))[:120]}"


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    source: str
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    pending: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    garbage: list[bytes] = field(default_factory=list)  # lines that were not JSON objects
    difficulty: float = 1.0
    job: Job | None = None
    extranonce1: bytes = b""
    extranonce2_size: int = 0
    session_id: str = ""
    version_mask: int = 0
    closed: bool = False
    reset: bool = False
    bytes_in: int = 0
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _en2: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    async def open(cls, host: str, port: int, source: str, *, read: bool = True,
                   timeout: float = 5.0, rcvbuf: int = 0) -> Conn:  # fmt: skip
        """Connect from ``source`` (port chosen by the kernel). ``read=False``: never read
        (a client that lets the pool's replies pile up); ``rcvbuf``: a small receive buffer,
        so the pool's replies pile up on its side rather than in this kernel."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)),
                                   timeout)  # fmt: skip
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_LIMIT)
        except BaseException:
            sock.close()
            raise
        conn = cls(reader, writer, source)
        if read:
            conn._task = asyncio.get_running_loop().create_task(conn._read_loop())
        return conn

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()
        if self._task is not None:
            self._task.cancel()

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                self.bytes_in += len(line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.garbage.append(line[:200])
                    continue
                if isinstance(msg, dict):
                    self._dispatch(msg)
                else:
                    self.garbage.append(line[:200])
        except (ConnectionError, OSError):
            self.reset = True
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.garbage.append(b"<over-long line>")
        finally:
            self.closed = True
            self._event.set()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_result({})

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method is None:
            fut = self.pending.pop(msg.get("id"), None)
            if fut is None:
                fut = self.pending.pop(None, None) if msg.get("id") is None else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
            else:
                self.notes.append(msg)
        else:
            self.notes.append(msg)
            params = msg.get("params") or []
            try:
                if method == "mining.set_difficulty":
                    self.difficulty = float(params[0])
                elif method == "mining.notify":
                    self.job = Job.from_params(params)
                elif method == "mining.set_extranonce":
                    self.extranonce1 = bytes.fromhex(params[0])
                    self.extranonce2_size = int(params[1])
            except (IndexError, TypeError, ValueError):
                self.garbage.append(json.dumps(msg)[:200].encode())
        self._event.set()

    # ---- sending --------------------------------------------------------------------------

    async def send(self, data: bytes) -> bool:
        """Write raw bytes; False once the pool has closed the connection."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.reset = True
            return False
        return True

    def message(self, method: str, params: Any, req_id: Any = "auto") -> dict[str, Any]:
        return {"id": next(self.ids) if req_id == "auto" else req_id, "method": method,
                "params": params}  # fmt: skip

    async def request(self, method: str, params: Any, *, req_id: Any = "auto",
                      timeout: float = 5.0) -> Reply:  # fmt: skip
        msg = self.message(method, params, req_id)
        return await self.raw_request(json.dumps(msg).encode() + b"\n", msg["id"], timeout)

    async def raw_request(self, line: bytes, req_id: Any, timeout: float = 5.0) -> Reply:
        """Send ``line`` and wait for the reply carrying ``req_id`` (None: any reply)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = fut
        if not await self.send(line):
            self.pending.pop(req_id, None)
            return Reply(None, closed=True)
        try:
            msg = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.pending.pop(req_id, None)
            return Reply(None, closed=self.closed)
        return Reply(msg or None, closed=not msg)

    async def wait_closed(self, timeout: float) -> bool:
        """True if the pool closed the connection within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.closed:
                    self._event.clear()
                    await self._event.wait()
        return self.closed

    async def wait_job(self, timeout: float = 5.0, newer_than: str | None = None) -> Job | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.job is None or self.job.job_id == newer_than:
                    if self.closed:
                        return None
                    self._event.clear()
                    await self._event.wait()
        return self.job if self.job is not None and self.job.job_id != newer_than else None

    def error_notes(self) -> list[str]:
        """Error replies that matched no pending request (e.g. to an id-less line)."""
        return [str(n.get("error")) for n in self.notes if n.get("error") is not None]

    # ---- login ----------------------------------------------------------------------------

    async def subscribe(self, agent: str = "qazpool-security-suite/1",
                        resume: str | None = None) -> Reply:  # fmt: skip
        reply = await self.request("mining.subscribe", [agent] + ([resume] if resume else []))
        res = reply.msg.get("result") if reply.msg else None
        if isinstance(res, list) and len(res) >= 3:
            self.extranonce1 = bytes.fromhex(res[1])
            self.extranonce2_size = int(res[2])
            self.session_id = str(res[1])
        return reply

    async def configure_rolling(self, mask: str = "ffffffff") -> Reply:
        reply = await self.request(
            "mining.configure", [["version-rolling"], {"version-rolling.mask": mask}]
        )
        res = reply.msg.get("result") if reply.msg else None
        if isinstance(res, dict) and res.get("version-rolling") is True:
            self.version_mask = int(res["version-rolling.mask"], 16)
        return reply

    async def login(self, worker: str, *, rolling: bool = False,
                    resume: str | None = None) -> Reply:  # fmt: skip
        """configure (optional), subscribe, authorize; the authorize reply. Waits for the job."""
        if rolling:
            await self.configure_rolling()
        await self.subscribe(resume=resume)
        reply = await self.request("mining.authorize", [worker, "x"])
        if reply.ok:
            await self.wait_job()
        return reply

    # ---- shares ---------------------------------------------------------------------------

    def next_extranonce2(self) -> bytes:
        return next(self._en2).to_bytes(self.extranonce2_size, "big")

    def grind(self, job: Job, *, want_share: bool = True, difficulty: float | None = None,
              extranonce1: bytes | None = None, extranonce2: bytes | None = None,
              version_bits: int | None = None, ntime: int | None = None,
              max_tries: int = 4_000_000, avoid_block: bool = True) -> Share:  # fmt: skip
        """Search nonces until the header hash meets (``want_share=False``: misses) the share
        target; real sha256d through the hash core, with this connection's extranonce1 unless
        another session's is given."""
        return grind(job, self.extranonce1 if extranonce1 is None else extranonce1,
                     self.next_extranonce2() if extranonce2 is None else extranonce2,
                     self.difficulty if difficulty is None else difficulty, self.version_mask,
                     want_share=want_share, version_bits=version_bits, ntime=ntime,
                     max_tries=max_tries, avoid_block=avoid_block)  # fmt: skip

    async def submit(self, worker: str, job: Job, share: Share, *, job_id: str | None = None,
                     timeout: float = 5.0) -> Reply:  # fmt: skip
        job_id = job_id or share.job_id or job.job_id
        return await self.request("mining.submit", share.params(worker, job_id),
                                  timeout=timeout)  # fmt: skip


def grind(job: Job, extranonce1: bytes, extranonce2: bytes, difficulty: float, mask: int, *,
          want_share: bool = True, version_bits: int | None = None, ntime: int | None = None,
          max_tries: int = 4_000_000, avoid_block: bool = True) -> Share:  # fmt: skip
    """A share that meets the target (``want_share``), or misses it; with ``avoid_block``
    never one that also solves a block (a block moves the pool to a new tip under the case).
    Header prefix built once (merkle root through the hash core), then nonces hashed in
    batches with ``sha256d_many`` and compared with the share target."""
    target = target_from_difficulty(difficulty)
    block_target = target_from_nbits(job.nbits) if avoid_block and want_share else -1
    vb = version_bits if version_bits is not None else 0
    outside = vb & ~mask & 0xFFFFFFFF
    hash_mask = mask | outside  # as the pool hashes it (bits outside the mask as sent)
    version = (job.version & ~hash_mask & 0xFFFFFFFF) | (vb & hash_mask)
    t = job.ntime if ntime is None else ntime
    root = hashcore.merkle_root(job.coinb1 + extranonce1 + extranonce2 + job.coinb2, job.branch)
    prefix = (version.to_bytes(4, "little") + job.prevhash + root + t.to_bytes(4, "little")
              + job.nbits.to_bytes(4, "little"))  # fmt: skip
    start = int.from_bytes(os.urandom(4), "little")
    batch = 2048
    from_bytes = int.from_bytes
    first_block: Share | None = None
    for base in range(0, max_tries, batch):
        nonces = [(start + base + i) & 0xFFFFFFFF for i in range(batch)]
        hashes = hashcore.sha256d_many([prefix + n.to_bytes(4, "little") for n in nonces])
        for nonce, h in zip(nonces, hashes, strict=True):
            value = from_bytes(h, "little")
            ok = value <= target
            if ok == want_share:
                share = Share(
                    extranonce2.hex(),
                    f"{t:08x}",
                    f"{nonce:08x}",
                    f"{vb:08x}" if version_bits is not None else None,
                    h,
                    ok,
                    job.job_id,
                )
                if value > block_target:
                    return share
                first_block = first_block or share
        if first_block is not None and base >= AVOID_BLOCK_TRIES:
            return first_block  # every share is a block here (e.g. regtest bits 207fffff)
    if first_block is not None:
        return first_block
    raise RuntimeError(f"no nonce found in {max_tries} tries at difficulty {difficulty}")


def meets(job: Job, extranonce1: bytes, share: Share, difficulty: float, mask: int) -> bool:
    """Whether ``share`` (its extranonce2, ntime, nonce, version bits) meets the share target
    when hashed with ``extranonce1``."""
    item = (job.coinb1, extranonce1, bytes.fromhex(share.extranonce2), job.coinb2, job.branch,
            job.version, job.prevhash, int(share.ntime, 16), job.nbits, int(share.nonce, 16),
            hashcore.target_bytes(target_from_difficulty(difficulty)),
            hashcore.target_bytes(target_from_nbits(job.nbits)),
            int(share.version_bits or "0", 16), mask)  # fmt: skip
    return bool(hashcore.check_shares([item])[0][1])
