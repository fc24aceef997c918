"""The template feed: keeps a current ``Job`` from the node (or the embedded chain) and tells
listeners about every new one.

API (for the Stratum server wiring, ``poolserver/app.py``)::

    rpc = rpc_from_config(config)                   # NodeGroup of NodeClients, or EmbeddedChain
    await startup_check(rpc, config)                # waits, logging unreachable/IBD/wrong chain
    builder = builder_from_config(config)           # payout address validated here (ConfigError)
    feed = TemplateFeed(RpcTemplateSource(rpc, config.chain.network), builder,
                        refresh_s=config.node.template_refresh_s, zmq_endpoints=[...])
    feed.add_listener(callback)                     # callback(job), sync or async, per new job
    task = asyncio.create_task(feed.run())
    job = await feed.wait_for_job()                 # first job (startup)
    feed.current_job; feed.job_book.get(job_id); feed.job_book.status(job_id)
    feed.refresh_now("block submitted")             # e.g. after a found block
    feed.stats                                      # FeedStats: node_up gauge, counters (metrics)

New blocks are noticed by long polling (``longpollid``), optionally ZMQ ``hashblock`` (pyzmq),
and a periodic refresh (default 30 s) that also carries new transactions to miners. A job on a
new prevhash has ``clean_jobs=True`` and makes older jobs stale in the ``JobBook``. A template
that changes nothing the miner hashes (``stratum.jobs.same_work``: the node answers an unchanged
template while its mempool is unchanged, only ``curtime`` moves) mints no new job: the current
one stays, so the same work never has two job ids (``stats.templates_unchanged`` counts them).

When the node is down the feed keeps the last job (miners keep hashing on it), logs the outage
once, retries with backoff, and logs the recovery; ``stats.node_up`` is the gauge.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from poolserver.aio import wait_event
from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.embedded_chain import from_config as embedded_from_config
from poolserver.bitcoin.node import (
    NodeClient,
    NodeGroup,
    NodeUnavailable,
    Rpc,
    RpcError,
    wait_until_ready,
)
from poolserver.config import Config, ConfigError
from stratum.address import AddressError, address_to_script
from stratum.interfaces import BlockTemplate, Job
from stratum.jobs import JobBook, JobBuilder, JobError, same_work
from stratum.template import TemplateError, parse_template

log = logging.getLogger(__name__)

GBT_RULES = {"rules": ["segwit"]}
Listener = Callable[[Job], Awaitable[None] | None]


class RpcTemplateSource:
    """``stratum.interfaces.TemplateSource`` over any ``Rpc`` (node, node group, embedded)."""

    def __init__(self, rpc: Rpc, network: str, *, longpoll_timeout_s: float = 120.0) -> None:
        self.rpc = rpc
        self.network = network
        self.longpoll_timeout_s = longpoll_timeout_s

    async def get_template(self) -> BlockTemplate:
        return parse_template(await self.rpc.call("getblocktemplate", GBT_RULES), self.network)

    async def longpoll(self, longpollid: str) -> BlockTemplate:
        gbt = await self.rpc.call(
            "getblocktemplate",
            {**GBT_RULES, "longpollid": longpollid},
            timeout=self.longpoll_timeout_s,
        )
        return parse_template(gbt, self.network)

    async def submit_block(self, block_hex: str) -> str | None:
        return await self.rpc.call("submitblock", block_hex)


@dataclass
class FeedStats:
    """What the metrics issue exports: a gauge and counters, plain attributes."""

    node_up: bool = False
    templates_fetched: int = 0
    fetch_errors: int = 0
    jobs_published: int = 0
    templates_unchanged: int = 0  # templates that changed nothing the miner hashes: no new job
    new_blocks: int = 0  # prevhash changes seen
    last_job_at: float = 0.0  # time.time()
    outage_since: float | None = None  # time.time() when the node went away
    last_error: str = ""


class TemplateFeed:
    def __init__(
        self,
        source: Any,
        builder: JobBuilder,
        *,
        refresh_s: float = 30.0,
        longpoll: bool = True,
        zmq_endpoints: Sequence[str] = (),
        retry_s: float = 1.0,
        retry_max_s: float = 10.0,
        job_book: JobBook | None = None,
    ) -> None:
        self.source = source
        self.builder = builder
        self.refresh_s = refresh_s
        self.longpoll_enabled = longpoll and hasattr(source, "longpoll")
        self.zmq_endpoints = list(zmq_endpoints)
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.job_book = job_book or JobBook()
        self.stats = FeedStats()
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._have_job = asyncio.Event()
        self._retry = retry_s
        self._longpollid = ""  # of the latest template, published or not

    # ---- API -------------------------------------------------------------------------
    @property
    def current_job(self) -> Job | None:
        return self.job_book.current

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(job)`` for each new job; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def wait_for_job(self, timeout: float | None = None) -> Job:
        if not await wait_event(self._have_job, timeout):
            raise TimeoutError(f"no job within {timeout} s")
        job = self.current_job
        assert job is not None
        return job

    def refresh_now(self, reason: str = "") -> None:
        if reason:
            log.debug("template refresh requested: %s", reason)
        self._wake.set()

    async def run(self) -> None:
        loops = [self._refresh_loop()]
        if self.longpoll_enabled:
            loops.append(self._longpoll_loop())
        for endpoint in self.zmq_endpoints:
            loops.append(self._zmq_loop(endpoint))
        tasks = [asyncio.create_task(c) for c in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- internals -----------------------------------------------------------------------
    def _mark_down(self, exc: BaseException) -> None:
        self.stats.fetch_errors += 1
        self.stats.last_error = str(exc)
        if self.stats.node_up or self.stats.outage_since is None:
            self.stats.outage_since = time.time()
            job = self.current_job
            serving = (
                f"still serving job {job.job_id} (height {job.height})"
                if job
                else "no job yet, miners wait"
            )
            log.error("template source unavailable: %s; %s; retrying", exc, serving)
        self.stats.node_up = False

    def _mark_up(self) -> None:
        if not self.stats.node_up:
            if self.stats.outage_since is not None and self.stats.fetch_errors:
                log.warning(
                    "template source is back after %.1f s",
                    time.time() - self.stats.outage_since,
                )
            self.stats.outage_since = None
        self.stats.node_up = True
        self._retry = self.retry_s

    async def _publish(self, template: BlockTemplate) -> Job | None:
        async with self._lock:
            current = self.current_job
            if current is not None and template.height < current.height:
                return None  # an older answer that arrived late; never go backwards
            clean = current is None or template.prevhash != current.prevhash
            self._longpollid = template.longpollid
            job = self.builder.build(template, clean_jobs=clean)
            if current is not None and same_work(current, job):
                self.stats.templates_unchanged += 1
                return None  # nothing the miner hashes changed: keep the current job
            self.job_book.add(job)
            self.stats.jobs_published += 1
            self.stats.last_job_at = time.time()
            if clean:
                self.stats.new_blocks += 1
                log.info(
                    "new block template: height %d prev %s, %d txs, job %s",
                    job.height,
                    template.prevhash[::-1].hex(),
                    len(template.transactions),
                    job.job_id,
                )
            self._have_job.set()
            listeners = list(self._listeners)
        for cb in listeners:
            try:
                result = cb(job)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("job listener %r failed", cb)
        return job

    async def _fetch(self) -> bool:
        try:
            template = await self.source.get_template()
            self.stats.templates_fetched += 1
            self._mark_up()
            await self._publish(template)
            return True
        except (NodeUnavailable, RpcError, TemplateError, JobError) as exc:
            self._mark_down(exc)
            return False
        except Exception as exc:  # a bug must not stop the feed: keep the last job, retry
            log.exception("unexpected error while fetching a template")
            self._mark_down(exc)
            return False

    async def _refresh_loop(self) -> None:
        while True:
            self._wake.clear()
            ok = await self._fetch()
            if ok:
                delay = self.refresh_s
            else:
                delay = self._retry
                self._retry = min(self._retry * 2, self.retry_max_s)
            await wait_event(self._wake, delay)

    async def _longpoll_loop(self) -> None:
        while True:
            await self._have_job.wait()
            job = self.current_job
            assert job is not None
            lpid = self._longpollid or job.template.longpollid
            if not lpid:
                return  # the source does not long-poll; refresh and ZMQ remain
            try:
                template = await self.source.longpoll(lpid)
            except (NodeUnavailable, RpcError, TemplateError) as exc:
                self._mark_down(exc)
                await asyncio.sleep(self._retry)
                continue
            self.stats.templates_fetched += 1
            self._mark_up()
            if template.longpollid == lpid and template.prevhash == job.prevhash:
                continue  # the long poll timed out on the node side without news
            try:
                await self._publish(template)
            except JobError as exc:
                self._mark_down(exc)

    async def _zmq_loop(self, endpoint: str) -> None:
        try:
            import zmq
            import zmq.asyncio
        except ImportError:
            log.error("zmq_hashblock %s is set but pyzmq is not installed; relying on "
                      "long polling and the periodic refresh", endpoint)  # fmt: skip
            return
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt_string(zmq.SUBSCRIBE, "hashblock")
        sock.connect(endpoint)
        log.info("listening for new blocks on ZMQ %s", endpoint)
        try:
            while True:
                parts = await sock.recv_multipart()
                if parts and parts[0] == b"hashblock":
                    block = parts[1][::-1].hex() if len(parts) > 1 else "?"
                    log.debug("ZMQ hashblock %s", block)
                    self.refresh_now("zmq hashblock")
        finally:
            sock.close(linger=0)


# ---- wiring helpers (used by poolserver/app.py) ----------------------------------------------
def payout_script(config: Config) -> bytes:
    """The pool's payout scriptPubKey; a bad address is a ConfigError naming it and why."""
    try:
        return address_to_script(config.chain.payout_address, config.chain.network)
    except AddressError as exc:
        raise ConfigError(f"chain.payout_address: {exc}") from None


def builder_from_config(config: Config) -> JobBuilder:
    tag = config.pool.tag
    if not tag.isascii():
        raise ConfigError(f"pool.tag: {tag!r} must be ASCII")
    script = payout_script(config)  # its own ConfigError, naming chain.payout_address
    try:
        return JobBuilder(
            script,
            tag=tag.encode("ascii"),
            extranonce1_size=config.stratum.extranonce1_size,
            extranonce2_size=config.stratum.extranonce2_size,
        )
    except ValueError as exc:
        raise ConfigError(f"pool.tag / stratum extranonce sizes: {exc}") from None


def rpc_from_config(config: Config) -> Rpc:
    """A ``NodeGroup`` of the configured nodes, or the embedded chain when none is set."""
    if not config.node.nodes:
        return embedded_from_config(config)
    clients = [
        NodeClient(
            n.url,
            user=n.user,
            password=n.password,
            cookie_file=n.cookie_file,
            timeout=config.node.rpc_timeout_s,
        )
        for n in config.node.nodes
    ]
    return NodeGroup(clients)


async def startup_check(rpc: Rpc, config: Config, attempts: int | None = None) -> None:
    """Wait for a usable node (logs why not); the embedded chain is always ready."""
    if isinstance(rpc, EmbeddedChain):
        return
    info = await wait_until_ready(rpc, config.chain.network, config.node.retry_max_s, attempts)
    log.info("bitcoind %s ready: chain %s, height %s", rpc.name, info.get("chain"),
             info.get("blocks"))  # fmt: skip


def feed_from_config(config: Config, rpc: Rpc) -> TemplateFeed:
    source = RpcTemplateSource(
        rpc, config.chain.network, longpoll_timeout_s=config.node.longpoll_timeout_s
    )
    return TemplateFeed(
        source,
        builder_from_config(config),
        refresh_s=config.node.template_refresh_s,
        longpoll=config.node.longpoll,
        zmq_endpoints=[n.zmq_hashblock for n in config.node.nodes if n.zmq_hashblock],
        retry_s=config.node.retry_s,
        retry_max_s=config.node.retry_max_s,
    )
