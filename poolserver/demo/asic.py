"""Simulated ASICs: real Stratum clients over TCP that replay a firmware's recorded connect
sequence (the same ones tests/stratum_client.py replays, stratum-v1.md §2.1) and grind real
nonces with the C hash core, paced to a hashrate so a laptop can run several.

- ``cgminer`` (also bmminer, Antminer): configure, wait for the reply, subscribe
  ``[user agent]``, authorize, suggest_difficulty;
- ``whatsminer`` (btminer, cgminer-derived): the same sequence with its own user agent;
- ``bitaxe`` (ESP-Miner): configure (mask ffffffff) / subscribe / authorize in one TCP send,
  then suggest_difficulty and extranonce.subscribe;
- ``cpuminer``: subscribe then authorize, no configure, no version rolling.

A refused authorization (unlicensed, suspended) is recorded with the pool's
``client.show_message`` text and retried after ``retry_s``, as firmware does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from stratum import hashcore
from stratum.difficulty import target_from_difficulty, target_from_nbits
from stratum.jobs import NotifiedWork as Job

CHUNK = 4096  # nonces per hash-core call (in a worker thread: the core releases the GIL)


class Refused(Exception):
    pass


@dataclass
class AsicStats:
    """What one simulated machine saw (the pool's own counters are in StratumStats)."""

    state: str = "starting"
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # pool's error message -> count
    blocks: int = 0  # accepted shares that met the network target
    hashes: int = 0
    discarded_stale: int = 0  # found for a job replaced by a clean one: not submitted
    refusals: int = 0
    last_refusal: str = ""
    connects: int = 0


class SimulatedAsic:
    def __init__(self, host: str, port: int, worker: str, firmware: str, user_agent: str,
                 hashrate: float, *, retry_s: float = 30.0) -> None:  # fmt: skip
        self.host, self.port, self.worker = host, port, worker
        self.firmware, self.user_agent = firmware, user_agent
        self.hashrate = hashrate
        self.retry_s = retry_s
        self.stats = AsicStats()
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._job: Job | None = None
        self._job_changed = asyncio.Event()
        self._difficulty = 1.0
        self._messages: list[str] = []
        self._en1 = b""
        self._en2_size = 0
        self._mask = 0
        self._en2 = itertools.count(1)

    # ---- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, mine, reconnect after a refusal or a dropped connection; until cancelled."""
        while True:
            try:
                await self._session()
            except Refused as exc:
                self.stats.refusals += 1
                self.stats.last_refusal = str(exc)
                self.stats.state = "refused"
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
                self.stats.state = "reconnecting"
            await asyncio.sleep(self.retry_s if self.stats.state == "refused" else 1.0)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        self.stats.connects += 1
        self.stats.state = "connecting"
        self._job = None
        reading = asyncio.get_running_loop().create_task(self._read(reader))
        try:
            await self._connect_sequence()
            self.stats.state = "mining"
            await self._mine()
        finally:
            reading.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            for fut in self._pending.values():
                if not fut.done():
                    fut.cancel()
            self._pending.clear()

    # ---- wire --------------------------------------------------------------------------
    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self._dispatch(json.loads(line))
        except (OSError, ValueError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self._job_changed.set()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method is None:
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        p = msg.get("params") or []
        if method == "mining.set_difficulty":
            self._difficulty = float(p[0])
        elif method == "mining.notify":
            self._job = Job.from_params(p)
            if self._job.clean:
                self._job_changed.set()
        elif method == "mining.set_extranonce":
            self._en1, self._en2_size = bytes.fromhex(p[0]), int(p[1])
        elif method == "client.show_message" and p:
            self._messages.append(str(p[0]))

    def _send(self, *msgs: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.write(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))

    def _request(self, method: str, params: list[Any], req_id: Any = None
                 ) -> tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]:  # fmt: skip
        rid = next(self._ids) if req_id is None else req_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        return {"id": rid, "method": method, "params": params}, fut

    async def _call(self, method: str, params: list[Any]) -> dict[str, Any]:
        msg, fut = self._request(method, params)
        self._send(msg)
        return await asyncio.wait_for(fut, 10)

    def _subscribed(self, reply: dict[str, Any]) -> None:
        if not isinstance(reply.get("result"), list):
            raise ConnectionError(f"subscribe failed: {reply.get('error')}")
        _subs, en1, size = reply["result"]
        self._en1, self._en2_size = bytes.fromhex(en1), int(size)

    def _authorized(self, reply: dict[str, Any]) -> None:
        if reply.get("result") is not True:
            shown = self._messages[-1] if self._messages else json.dumps(reply.get("error"))
            raise Refused(shown)

    # ---- connect sequences ---------------------------------------------------------------
    async def _connect_sequence(self) -> None:
        if self.firmware in ("cgminer", "whatsminer"):
            reply = await self._call(
                "mining.configure",
                [
                    ["version-rolling"],
                    {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2},
                ],
            )
            result = reply.get("result") or {}
            self._mask = int(result.get("version-rolling.mask", "0"), 16)
            self._subscribed(await self._call("mining.subscribe", [self.user_agent]))
            self._authorized(await self._call("mining.authorize", [self.worker, "x"]))
            self._send({"id": next(self._ids), "method": "mining.suggest_difficulty",
                        "params": [self._difficulty]})  # fmt: skip
        elif self.firmware == "bitaxe":
            m1, f1 = self._request(
                "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}], 1
            )
            m2, f2 = self._request("mining.subscribe", [self.user_agent], 2)
            m3, f3 = self._request("mining.authorize", [self.worker, "x"], 3)
            self._send(m1, m2, m3)
            configure, subscribe, auth = await asyncio.wait_for(asyncio.gather(f1, f2, f3), 10)
            self._mask = int((configure.get("result") or {}).get("version-rolling.mask", "0"), 16)
            self._subscribed(subscribe)
            self._authorized(auth)
            self._send({"id": next(self._ids), "method": "mining.extranonce.subscribe",
                        "params": []})  # fmt: skip
        elif self.firmware == "cpuminer":
            self._subscribed(await self._call("mining.subscribe", [self.user_agent]))
            self._authorized(await self._call("mining.authorize", [self.worker, "x"]))
        else:
            raise ValueError(f"firmware: unknown connect sequence {self.firmware!r}")

    # ---- mining ------------------------------------------------------------------------
    async def _mine(self) -> None:
        async with asyncio.timeout(10):
            while self._job is None:
                await asyncio.sleep(0.02)
        start = int.from_bytes(os.urandom(4), "little")
        while self._writer is not None and not self._writer.is_closing():
            job = self._job
            assert job is not None
            self._job_changed.clear()
            en2 = next(self._en2).to_bytes(self._en2_size, "big")
            share_t = hashcore.target_bytes(target_from_difficulty(self._difficulty))
            net_t = hashcore.target_bytes(target_from_nbits(job.nbits))
            vb = 0x00002000 & self._mask
            base = 0
            while not self._job_changed.is_set() and base < (1 << 32):
                began = time.monotonic()
                found = await asyncio.to_thread(self._grind, job, en2, share_t, net_t, vb,
                                                start + base)  # fmt: skip
                base += CHUNK
                self.stats.hashes += CHUNK
                # pace to the simulated hashrate
                await asyncio.sleep(max(0.0, CHUNK / self.hashrate - (time.monotonic() - began)))
                for nonce, is_block in found:
                    if self._job_changed.is_set():
                        # cgminer's default: a share of a job the pool replaced is discarded
                        # locally ("Stale share detected, discarding"), not submitted
                        self.stats.discarded_stale += 1
                        continue
                    await self._submit(job, en2, nonce, vb, is_block)
            if self._writer.is_closing():
                break

    def _grind(self, job: Job, en2: bytes, share_t: bytes, net_t: bytes, vb: int,
               first: int) -> list[tuple[int, bool]]:  # fmt: skip
        items = [(job.coinb1, self._en1, en2, job.coinb2, job.branch, job.version, job.prevhash,
                  job.ntime, job.nbits, (first + i) & 0xFFFFFFFF, share_t, net_t, vb, self._mask)
                 for i in range(CHUNK)]  # fmt: skip
        return [((first + i) & 0xFFFFFFFF, bool(mn))
                for i, (_h, ms, mn) in enumerate(hashcore.check_shares(items)) if ms]  # fmt: skip

    async def _submit(self, job: Job, en2: bytes, nonce: int, vb: int, is_block: bool) -> None:
        params = [self.worker, job.job_id, en2.hex(), f"{job.ntime:08x}", f"{nonce:08x}"]
        if self._mask:
            params.append(f"{vb:08x}")
        reply = await self._call("mining.submit", params)
        if reply.get("result") is True:
            self.stats.accepted += 1
            self.stats.blocks += is_block
        else:
            err = reply.get("error")
            reason = str(err[1]) if isinstance(err, list) and len(err) > 1 else str(err)
            self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
