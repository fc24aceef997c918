"""The composition root: config → template source → jobs → Stratum server → sinks.

``PoolApp(config).start()`` wires:

- template source: the nodes in ``[node].nodes`` (``poolserver.node.NodeGroup``), else the
  embedded regtest chain (``poolserver.embedded_chain``, when that module is present);
- a template poller turning ``getblocktemplate`` answers into jobs (``stratum.jobs``) and handing
  them to the Stratum server (clean jobs on a new prevhash, a refresh every
  ``[node].template_refresh_s``);
- block candidates: persisted under ``<data_dir>/blocks/`` (fsync) and then sent with
  ``submitblock`` to every node;
- accepted shares: the durable share journal (``poolserver.storage``), or the in-memory sink
  (logged loudly) when ``memory_sink=True`` is asked for;
- the Prometheus endpoint on ``[metrics]``.

Everything it starts is logged with its address; ``stop()`` shuts down in reverse order
(``client.reconnect`` to miners, drain shares, flush the journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

from poolserver.config import Config
from stratum.address import address_to_script
from stratum.extranonce import ExtranonceAllocator
from stratum.interfaces import AccountPolicy, BlockCandidate, BlockTemplate, ShareSink
from stratum.jobs import JobBuilder, assemble_block
from stratum.memory_sink import MemoryShareSink
from stratum.server import StratumServer
from stratum.settings import PortSettings, ServerSettings
from stratum.stats import StratumStats
from stratum.template import parse_template
from stratum.vardiff import VardiffConfig

log = logging.getLogger(__name__)

GBT_PARAMS = {"rules": ["segwit"]}
POLL_INTERVAL_S = 1.0  # prevhash check between refreshes (until longpoll/ZMQ feeds land)


def server_settings(config: Config) -> ServerSettings:
    """The Stratum server's settings from the typed config (errors name the option)."""
    sc = config.stratum
    ports = []
    for i, lc in enumerate(sc.listeners):
        ctx = None
        if lc.tls_cert or lc.tls_key:
            if not (lc.tls_cert and lc.tls_key):
                raise ValueError(f"stratum.listeners[{i}]: set both tls_cert and tls_key")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(lc.tls_cert, lc.tls_key)
        try:
            ports.append(
                PortSettings(
                    lc.host,
                    lc.port,
                    lc.start_difficulty,
                    lc.min_difficulty,
                    lc.max_difficulty,
                    ctx,
                )
            )
        except ValueError as exc:
            raise ValueError(f"stratum.listeners[{i}]: {exc}") from None
    try:
        mask = int(sc.version_rolling_mask, 16)
    except ValueError:
        raise ValueError(
            f"stratum.version_rolling_mask: not hex: {sc.version_rolling_mask!r}"
        ) from None
    v = sc.vardiff
    return ServerSettings(
        ports=tuple(ports),
        extranonce2_size=sc.extranonce2_size,
        max_line_bytes=sc.max_line_bytes,
        version_mask=mask,
        auth_timeout_s=sc.auth_timeout_s,
        idle_timeout_s=sc.idle_timeout_s,
        keepalive_s=sc.keepalive_s,
        max_connections_per_ip=sc.max_connections_per_ip,
        max_write_buffer_bytes=sc.max_write_buffer_bytes,
        ban_min_submits=sc.ban_min_submits,
        ban_reject_ratio=sc.ban_reject_ratio,
        ban_seconds=sc.ban_seconds,
        auth_failures_allowed=sc.auth_failures_allowed,
        auth_backoff_s=sc.auth_backoff_s,
        auth_backoff_max_s=sc.auth_backoff_max_s,
        resume_window_s=sc.resume_window_s,
        drain_timeout_s=sc.drain_timeout_s,
        vardiff=VardiffConfig(
            target_interval_s=v.target_interval_s,
            retarget_interval_s=v.retarget_interval_s,
            retarget_shares=v.retarget_shares,
            variance=v.variance,
            max_step=v.max_step,
            max_step_up=v.max_step_up,
            decay_window_s=v.decay_window_s,
        ),
    )


class NodeBlockSink:
    """Persist a block candidate (fsync'd file), then ``submitblock`` it to every node."""

    def __init__(self, rpc: Any, directory: Path, on_submitted: Any = None) -> None:
        self.rpc = rpc
        self.directory = directory
        self.on_submitted = on_submitted
        self.verdicts: list[tuple[str, Any]] = []

    async def block_found(self, candidate: BlockCandidate) -> None:
        block = assemble_block(
            candidate.job, candidate.extranonce1, candidate.extranonce2, candidate.header
        )
        block_hash = candidate.block_hash[::-1].hex()
        block_hex = block.hex()
        await asyncio.to_thread(self._persist, block_hash, block_hex)
        members = getattr(self.rpc, "members", None) or [self.rpc]
        for node in members:
            try:
                verdict = await node.call("submitblock", block_hex)
            except Exception as exc:
                verdict = f"error: {exc}"
            ok = verdict is None or verdict == "duplicate"
            (log.warning if ok else log.error)(
                "submitblock %s (height %d) to %s: %s",
                block_hash,
                candidate.job.height,
                getattr(node, "name", "node"),
                "accepted" if verdict is None else verdict,
            )
            self.verdicts.append((block_hash, verdict))
        if self.on_submitted is not None:
            self.on_submitted()

    def _persist(self, block_hash: str, block_hex: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{block_hash}.hex"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            fh.write(block_hex + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)


def _embedded_chain(config: Config) -> Any:
    """The embedded regtest chain, if its module is present (another issue provides it)."""
    try:
        from poolserver import embedded_chain  # type: ignore[attr-defined]
    except ImportError:
        return None
    factory = getattr(embedded_chain, "from_config", None) or getattr(
        embedded_chain, "EmbeddedChain", None
    )
    return factory(config) if factory is not None else None


class PoolApp:
    def __init__(
        self,
        config: Config,
        *,
        rpc: Any = None,
        sink: ShareSink | None = None,
        policy: AccountPolicy | None = None,
        extranonces: ExtranonceAllocator | None = None,
    ) -> None:
        self.config = config
        self.rpc = rpc
        self.sink = sink
        self.policy = policy
        self.extranonces = extranonces
        self.stats = StratumStats()
        self.server: StratumServer | None = None
        self.storage: Any = None
        self.metrics_server: Any = None
        self.block_sink: NodeBlockSink | None = None
        self.stratum_addresses: list[tuple[str, int]] = []
        self.metrics_address: tuple[str, int] | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._owns_rpc = rpc is None

    async def start(self) -> None:
        cfg = self.config
        settings = server_settings(cfg)
        data = cfg.data_path
        data.mkdir(parents=True, exist_ok=True)
        if self.rpc is None:
            if cfg.node.nodes:
                from poolserver.node import NodeClient, NodeGroup

                self.rpc = NodeGroup(
                    [
                        NodeClient(
                            n.url,
                            user=n.user,
                            password=n.password,
                            cookie_file=n.cookie_file,
                            timeout=cfg.node.rpc_timeout_s,
                        )
                        for n in cfg.node.nodes
                    ]
                )
                log.info("template source: bitcoind %s", self.rpc.name)
            else:
                self.rpc = _embedded_chain(cfg)
                if self.rpc is None:
                    log.error(
                        "template source: no [node].nodes configured and the embedded chain "
                        "(poolserver.embedded_chain) is not available in this build: miners "
                        "can connect but get no work"
                    )
                else:
                    log.info("template source: embedded %s chain", cfg.chain.network)
        if self.rpc is not None:
            from poolserver.node import wait_until_ready

            await wait_until_ready(self.rpc, cfg.chain.network)
        if self.sink is None:
            from poolserver.storage import open_storage

            self.storage = await open_storage(cfg)
            self.sink = self.storage.journal
            log.info("shares: durable journal in %s", self.storage.url)
        elif isinstance(self.sink, MemoryShareSink):
            log.warning("shares: IN-MEMORY sink, nothing survives a restart (tests only)")
        self.block_sink = (
            NodeBlockSink(self.rpc, data / "blocks", on_submitted=self._wake.set)
            if self.rpc is not None
            else None
        )
        extranonces = self.extranonces or ExtranonceAllocator(
            size=cfg.stratum.extranonce1_size,
            node_id=cfg.pool.node_id,
            resume_window_s=settings.resume_window_s,
        )
        assert self.sink is not None
        self.server = StratumServer(
            settings,
            self.sink,
            block_sink=self.block_sink,
            policy=self.policy,
            extranonces=extranonces,
            stats=self.stats,
        )
        if self.rpc is not None:
            script = address_to_script(cfg.chain.payout_address, cfg.chain.network)
            builder = JobBuilder(
                script,
                tag=cfg.pool.tag.encode("ascii"),
                extranonce1_size=cfg.stratum.extranonce1_size,
                extranonce2_size=cfg.stratum.extranonce2_size,
            )
            # First job before the listeners open, so the first miner gets work at once.
            template = await self._template()
            self.server.new_job(builder.build(template, clean_jobs=True))
            self._feed_task = asyncio.get_running_loop().create_task(self._feed(builder, template))
        self.stratum_addresses = await self.server.start()
        if cfg.metrics.enabled:
            from poolserver.metrics import start_metrics

            self.metrics_server, _ = start_metrics(cfg.metrics.host, cfg.metrics.port, self.stats)
            addr = self.metrics_server.server_address
            self.metrics_address = (addr[0], addr[1])
        log.info(
            "qazpool started: stratum on %s, metrics on %s, data in %s",
            ", ".join(f"stratum+tcp://{h}:{p}" for h, p in self.stratum_addresses),
            f"http://{self.metrics_address[0]}:{self.metrics_address[1]}/metrics"
            if self.metrics_address
            else "(disabled)",
            data.resolve(),
        )

    async def _template(self) -> BlockTemplate:
        gbt = await self.rpc.call("getblocktemplate", GBT_PARAMS)
        return parse_template(gbt, self.config.chain.network)

    async def _feed(self, builder: JobBuilder, last: BlockTemplate) -> None:
        """Poll templates: a new prevhash → clean job at once; else refresh periodically."""
        assert self.server is not None
        refresh = self.config.node.template_refresh_s
        last_job_at = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(POLL_INTERVAL_S, refresh)):
                    await self._wake.wait()
            self._wake.clear()
            try:
                template = await self._template()
            except Exception as exc:
                log.error("getblocktemplate failed: %s", exc)
                continue
            new_block = template.prevhash != last.prevhash
            if new_block or time.monotonic() - last_job_at >= refresh:
                try:
                    job = builder.build(template, clean_jobs=new_block)
                except Exception as exc:
                    log.error("cannot build a job from template %d: %s", template.height, exc)
                    continue
                took = self.server.new_job(job)
                last, last_job_at = template, time.monotonic()
                log.info(
                    "job %s height %d%s sent to %d miners in %.1f ms",
                    job.job_id,
                    template.height,
                    " (new block)" if new_block else "",
                    self.stats.authorized_current,
                    took * 1000,
                )

    async def stop(self) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
        if self.server is not None:
            await self.server.shutdown()
        if self.storage is not None:
            await self.storage.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if self._owns_rpc and self.rpc is not None and hasattr(self.rpc, "close"):
            await self.rpc.close()
        log.info("qazpool stopped")
