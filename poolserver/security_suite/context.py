"""What a case works with: the target, the operator's config, the pool's process, its journal
(read through the operator's database URL), the suite's own register identities, the honest
miners, and a fresh attack source address per case (127.0.0.2 and up)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.config import Config, ListenerConfig
from poolserver.security_suite import http, observe
from poolserver.security_suite.honest import HonestFleet
from poolserver.security_suite.wire import Conn

PROBE_SOURCE = "127.0.1.1"  # the liveness probe's own address (never banned by a case)
FIRST_ATTACK_SOURCE = ipaddress.ip_address("127.0.0.2")


def random_first_source() -> ipaddress.IPv4Address:
    rng = random.SystemRandom()
    return ipaddress.IPv4Address(f"127.{rng.randrange(2, 250)}.{rng.randrange(2, 200)}.2")


@dataclass(frozen=True)
class Identities:
    """The suite's own miners in the register (never a real miner's account)."""

    honest: str = "qzsec-honest"
    attacker: str = "qzsec-attacker"
    victim: str = "qzsec-victim"
    suspend: str = "qzsec-suspend"
    expired: str = "qzsec-expired"
    revoked: str = "qzsec-revoked"
    suspend_license: str = "QZSEC-SUSPEND"

    def license_of(self, account: str) -> str:
        return f"QZSEC-{account.removeprefix('qzsec-').upper()}"


@dataclass
class Context:
    host: str
    port: int
    config: Config
    config_path: str | None
    pid: int
    engine: AsyncEngine
    fleet: HonestFleet | None
    metrics_url: str | None
    quick: bool = False
    ids: Identities = field(default_factory=Identities)
    # Each run attacks from its own block of loopback addresses (127.A.B.2 and up, A and B
    # random): a ban a previous run earned (up to [stratum].ban_seconds) does not meet this one.
    first_source: ipaddress.IPv4Address = field(default_factory=lambda: random_first_source())
    source: str = str(FIRST_ATTACK_SOURCE)
    _next: int = 0
    # The web page and API ([web] or --web): its base URL, or why there is none to attack.
    web_url: str | None = None
    web_off: str = ""
    web_tokens: dict[str, str] = field(default_factory=dict)  # account -> live read token

    # ---- the pool's settings as configured -----------------------------------------------

    @property
    def listener(self) -> ListenerConfig:
        for lst in self.config.stratum.listeners:
            if lst.port == self.port:
                return lst
        raise ValueError(f"--target: port {self.port} is not a [[stratum.listeners]] port of "
                         "the config")  # fmt: skip

    @property
    def stratum(self) -> Any:
        return self.config.stratum

    # ---- sources and connections -----------------------------------------------------------

    def new_source(self) -> str:
        """A loopback address no earlier case of this run used: ``first_source`` and up,
        skipping 127.x.1.x (the probe's range) and .0/.255 host parts."""
        while True:
            addr = self.first_source + self._next
            self._next += 1
            last = addr.packed
            if last[2] != 1 and last[3] not in (0, 1, 255):
                return str(addr)

    async def conn(self, *, source: str | None = None, read: bool = True,
                   timeout: float = 5.0, rcvbuf: int = 0) -> Conn:  # fmt: skip
        return await Conn.open(self.host, self.port, source or self.source, read=read,
                               timeout=timeout, rcvbuf=rcvbuf)  # fmt: skip

    def worker(self, name: str = "a1", account: str | None = None) -> str:
        return f"{account or self.ids.attacker}.{name}"

    async def attacker(self, name: str = "a1", *, rolling: bool = False,
                       source: str | None = None, resume: str | None = None) -> Conn:  # fmt: skip
        """A connection from the case's source, logged in as the suite's attacker account with
        a job in hand; raises if the pool refuses the legitimate login (a setup failure)."""
        c = await self.conn(source=source)
        reply = await c.login(self.worker(name), rolling=rolling, resume=resume)
        if not reply.ok or c.job is None:
            await c.close()
            raise RuntimeError(f"setup: the attacker account's login was refused: "
                               f"{reply.describe()}")  # fmt: skip
        return c

    # ---- the web API --------------------------------------------------------------------------

    async def web(self, target: str, *, source: str | None = None, **kw: Any) -> http.Answer:
        """One raw HTTP request to the web server from the case's source (or ``source``)."""
        assert self.web_url is not None
        host, port = http.split_base(self.web_url)
        return await http.request(host, port, source or self.source, target, **kw)

    async def web_token(self, account: str) -> str:
        """A read token for one of the suite's own miners, issued through the real CLI
        (``poolserver web token issue``) once per run; ``revoke_web_tokens`` revokes them."""
        if account not in self.web_tokens:
            if not account.startswith("qzsec-"):
                raise ValueError(f"refusing to issue a read token for {account!r}: the suite "
                                 "only touches its own qzsec-* miners")  # fmt: skip
            code, out = await self.cli("web", "token", "issue", account, "--note",
                                       "security suite (revoked after the run)")  # fmt: skip
            tokens = [w for w in out.split() if w.startswith("qzp_")]
            if code != 0 or not tokens:
                raise RuntimeError(f"setup: `poolserver web token issue {account}` failed "
                                   f"(exit {code}): {out[-300:]}")  # fmt: skip
            self.web_tokens[account] = tokens[0]
        return self.web_tokens[account]

    async def revoke_web_tokens(self, account: str | None = None) -> list[str]:
        """Revoke the read tokens the suite issued (all of them, or ``account``'s)."""
        done = []
        for acc in [account] if account else list(self.web_tokens):
            code, out = await self.cli("web", "token", "revoke", acc)
            if code != 0:
                raise RuntimeError(f"`poolserver web token revoke {acc}` failed: {out[-300:]}")
            self.web_tokens.pop(acc, None)
            done.append(acc)
        return done

    # ---- observations ------------------------------------------------------------------------

    def rss(self) -> int:
        return observe.rss_bytes(self.pid)

    async def answering(self, timeout: float = 5.0) -> tuple[bool, str]:
        """A fresh connection from the probe address gets a subscribe reply."""
        try:
            c = await Conn.open(self.host, self.port, PROBE_SOURCE, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            return False, f"connect failed: {exc}"
        try:
            reply = await c.subscribe()
            return bool(reply.msg and reply.msg.get("result")), reply.describe()
        finally:
            await c.close()

    async def shares_of(self, account: str) -> int:
        """Accepted shares of ``account`` in the journal (the operator's database)."""
        async with self.engine.connect() as db:
            n = await db.scalar(text("SELECT count(*) FROM shares WHERE account = :a"),
                                {"a": account})  # fmt: skip
        return int(n or 0)

    async def rows_with_hash(self, share_hash: bytes) -> int:
        async with self.engine.connect() as db:
            n = await db.scalar(text("SELECT count(*) FROM shares WHERE share_hash = :h"),
                                {"h": share_hash})  # fmt: skip
        return int(n or 0)

    async def cli(self, *args: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run the real ``poolserver`` command with the operator's config."""
        argv = [sys.executable, "-m", "poolserver"]
        if self.config_path:
            argv += ["--config", self.config_path]
        proc = await asyncio.create_subprocess_exec(
            *argv, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        return int(proc.returncode or 0), out.decode(errors="replace").strip()

