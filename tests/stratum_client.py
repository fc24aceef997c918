"""A real asyncio TCP Stratum client for tests: replays each firmware's recorded connect sequence
(stratum-v1.md §2.1) and grinds real nonces with the hash core.

- ``cgminer``: ``mining.configure`` then **waits** for the reply (aborts unless version-rolling is
  true with a valid mask), subscribe ``["cgminer/4.11.1", <old session id>]``, authorize,
  ``mining.suggest_difficulty``.
- ``bitaxe`` (ESP-Miner): configure (mask ffffffff, id 1) / subscribe (id 2) / authorize (id 3)
  written in one TCP send without waiting, then suggest_difficulty and extranonce.subscribe.
- ``cpuminer``: subscribe ``["cpuminer/2.5.1"]`` then authorize, no configure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from stratum import hashcore
from stratum.difficulty import target_from_difficulty, target_from_nbits
from stratum.jobs import NotifiedWork


class StratumClientError(RuntimeError):
    pass


@dataclass
class NotifiedJob(NotifiedWork):
    difficulty: float = 0.0  # the difficulty in force when the job arrived (cpuminer's rule)

    @classmethod
    def notified(cls, p: list[Any], difficulty: float) -> NotifiedJob:
        work = NotifiedWork.from_params(p)
        return cls(**{f.name: getattr(work, f.name) for f in fields(work)}, difficulty=difficulty)


@dataclass
class Found:
    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None
    hash: bytes
    meets_share: bool
    meets_network: bool

    def params(self, worker: str, job_id: str) -> list[str]:
        p = [worker, job_id, self.extranonce2, self.ntime, self.nonce]
        if self.version_bits is not None:
            p.append(self.version_bits)
        return p


@dataclass
class StratumClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    pending: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    difficulty: float = 1.0
    jobs: dict[str, NotifiedJob] = field(default_factory=dict)
    last_job: NotifiedJob | None = None
    extranonce1: bytes = b""
    extranonce2_size: int = 0
    session_id: str = ""
    version_mask: int = 0
    worker: str = ""
    closed: bool = False
    _job_event: asyncio.Event = field(default_factory=asyncio.Event)
    _note_event: asyncio.Event = field(default_factory=asyncio.Event)
    _reader_task: asyncio.Task[None] | None = None
    _en2_counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    async def connect(cls, host: str, port: int, limit: int = 1 << 20,
                      source: str | None = None) -> StratumClient:  # fmt: skip
        """``source``: the local address to connect from (another 127.0.0.x on loopback)."""
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(host, port, limit=limit, local_addr=local)
        client = cls(reader, writer)
        client._reader_task = asyncio.get_running_loop().create_task(client._read_loop())
        return client

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        if self._reader_task is not None:
            self._reader_task.cancel()

    # ---- wire ------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                self._dispatch(msg)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.closed = True
            self._note_event.set()
            self._job_event.set()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(StratumClientError("connection closed"))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method is None:
            fut = self.pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        self.notifications.append(msg)
        params = msg.get("params") or []
        if method == "mining.set_difficulty":
            self.difficulty = params[0]
        elif method == "mining.notify":
            job = NotifiedJob.notified(params, self.difficulty)
            if job.clean:
                self.jobs.clear()
            self.jobs[job.job_id] = job
            self.last_job = job
            self._job_event.set()
        elif method == "mining.set_extranonce":
            self.extranonce1 = bytes.fromhex(params[0])
            self.extranonce2_size = params[1]
        self._note_event.set()

    def send_lines(self, *messages: dict[str, Any] | bytes) -> None:
        """Write several messages in one TCP send (pipelining)."""
        out = b"".join(
            m if isinstance(m, bytes) else json.dumps(m).encode() + b"\n" for m in messages
        )
        self.writer.write(out)

    def request_future(
        self, method: str, params: list[Any], req_id: Any = None
    ) -> tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]:
        if req_id is None:
            req_id = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = fut
        return {"id": req_id, "method": method, "params": params}, fut

    async def request(
        self, method: str, params: list[Any], req_id: Any = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        msg, fut = self.request_future(method, params, req_id)
        self.send_lines(msg)
        return await asyncio.wait_for(fut, timeout)

    async def wait_job(self, timeout: float = 5.0, newer_than: str | None = None) -> NotifiedJob:
        async with asyncio.timeout(timeout):
            while self.last_job is None or self.last_job.job_id == newer_than:
                if self.closed:
                    raise StratumClientError("connection closed before a job arrived")
                self._job_event.clear()
                await self._job_event.wait()
        assert self.last_job is not None
        return self.last_job

    async def wait_notification(
        self, method: str, timeout: float = 5.0, include_seen: bool = False
    ) -> dict[str, Any]:
        start = 0 if include_seen else len(self.notifications)
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.notifications[start:]:
                    if msg.get("method") == method:
                        return msg
                if self.closed:
                    raise StratumClientError(f"connection closed before {method}")
                self._note_event.clear()
                await self._note_event.wait()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.closed:
                self._note_event.clear()
                await self._note_event.wait()

    def _subscribed(self, reply: dict[str, Any]) -> None:
        if reply.get("error") is not None or not isinstance(reply.get("result"), list):
            raise StratumClientError(f"subscribe failed: {reply}")
        subs, en1, size = reply["result"]
        self.extranonce1 = bytes.fromhex(en1)
        self.extranonce2_size = size
        self.session_id = next((s[1] for s in subs if s[0] == "mining.notify"), en1)

    # ---- firmware connect sequences --------------------------------------------------------

    async def cgminer(
        self, worker: str, old_session: str | None = None, suggest: float | None = None
    ) -> None:
        reply = await self.request(
            "mining.configure",
            [
                ["version-rolling"],
                {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2},
            ],
        )
        result = reply.get("result") or {}
        mask = result.get("version-rolling.mask")
        if result.get("version-rolling") is not True or not isinstance(mask, str):
            raise StratumClientError(f"cgminer would abort: configure reply {reply}")
        self.version_mask = int(mask, 16)
        params = ["cgminer/4.11.1"] + ([old_session] if old_session else [])
        self._subscribed(await self.request("mining.subscribe", params))
        auth = await self.request("mining.authorize", [worker, "x"])
        if auth.get("result") is not True:
            raise StratumClientError(f"authorize failed: {auth}")
        self.worker = worker
        if suggest is not None:
            self.send_lines(
                {"id": next(self.ids), "method": "mining.suggest_difficulty", "params": [suggest]}
            )

    async def bitaxe(self, worker: str, suggest: float | None = 1000) -> dict[str, Any]:
        m1, f1 = self.request_future(
            "mining.configure",
            [["version-rolling"], {"version-rolling.mask": "ffffffff"}],
            req_id=1,
        )
        m2, f2 = self.request_future("mining.subscribe", ["bitaxe/BM1370/v2.4.2"], req_id=2)
        m3, f3 = self.request_future("mining.authorize", [worker, "x"], req_id=3)
        self.send_lines(m1, m2, m3)
        configure, subscribe, auth = await asyncio.wait_for(asyncio.gather(f1, f2, f3), 5)
        self.version_mask = int(configure["result"]["version-rolling.mask"], 16)
        self._subscribed(subscribe)
        if auth.get("result") is not True:
            raise StratumClientError(f"authorize failed: {auth}")
        self.worker = worker
        after = []
        if suggest is not None:
            after.append(
                {"id": next(self.ids), "method": "mining.suggest_difficulty", "params": [suggest]}
            )
        after.append({"id": next(self.ids), "method": "mining.extranonce.subscribe", "params": []})
        self.send_lines(*after)
        return configure

    async def cpuminer(self, worker: str, old_session: str | None = None) -> None:
        params = ["cpuminer/2.5.1"] + ([old_session] if old_session else [])
        self._subscribed(await self.request("mining.subscribe", params))
        auth = await self.request("mining.authorize", [worker, "x"])
        if auth.get("result") is not True:
            raise StratumClientError(f"authorize failed: {auth}")
        self.worker = worker

    async def login_as(self, firmware: str, worker: str) -> None:
        """The connect sequence of ``firmware``: "cgminer", "bitaxe" (no suggested difficulty)
        or, for anything else, cpuminer's."""
        if firmware == "cgminer":
            await self.cgminer(worker)
        elif firmware == "bitaxe":
            await self.bitaxe(worker, suggest=None)
        else:
            await self.cpuminer(worker)

    # ---- mining ----------------------------------------------------------------------------

    def next_extranonce2(self) -> str:
        return next(self._en2_counter).to_bytes(self.extranonce2_size, "big").hex()

    def grind(
        self,
        job: NotifiedJob,
        *,
        want_share: bool = True,
        difficulty: float | None = None,
        version_bits: int | None = None,
        max_tries: int = 2_000_000,
    ) -> Found:
        """Search nonces until the hash meets (or, with ``want_share=False``, misses) the
        share target of ``difficulty`` (default: the job's). Real sha256d via the hash core."""
        diff = job.difficulty if difficulty is None else difficulty
        share_target = hashcore.target_bytes(target_from_difficulty(diff))
        network_target = hashcore.target_bytes(target_from_nbits(job.nbits))
        en2 = self.next_extranonce2()
        en2b = bytes.fromhex(en2)
        mask = self.version_mask
        vb = version_bits if version_bits is not None else 0
        start = int.from_bytes(os.urandom(4), "little")
        batch = 512
        for base in range(0, max_tries, batch):
            items = [
                (
                    job.coinb1,
                    self.extranonce1,
                    en2b,
                    job.coinb2,
                    job.branch,
                    job.version,
                    job.prevhash,
                    job.ntime,
                    job.nbits,
                    (start + base + i) & 0xFFFFFFFF,
                    share_target,
                    network_target,
                    vb,
                    mask,
                )
                for i in range(batch)
            ]
            for i, (h, ms, mn) in enumerate(hashcore.check_shares(items)):
                if ms == want_share:
                    nonce = (start + base + i) & 0xFFFFFFFF
                    return Found(
                        en2,
                        f"{job.ntime:08x}",
                        f"{nonce:08x}",
                        f"{vb:08x}" if version_bits is not None else None,
                        h,
                        ms,
                        mn,
                    )
        raise StratumClientError(f"no nonce found in {max_tries} tries at difficulty {diff}")

    async def submit(self, job: NotifiedJob, found: Found, worker: str | None = None) -> dict:
        return await self.request("mining.submit", found.params(worker or self.worker, job.job_id))
