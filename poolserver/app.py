"""The composition root: config → template source → jobs → Stratum server → sinks.

``PoolApp(config).start()`` wires:

- template source: the nodes in ``[node].nodes`` (``poolserver.bitcoin.node.NodeGroup``), else
  the embedded regtest chain (``poolserver.bitcoin.embedded_chain``), via
  ``poolserver.bitcoin.template_feed``;
- the template feed (longpoll, ZMQ, periodic refresh) turning templates into jobs
  (``stratum.jobs``); every new job goes to ``StratumServer.new_job`` (one encoded line for all);
- block candidates: ``poolserver.bitcoin.blocks.BlockSubmitter`` (``submitblock`` to every node
  first; the fsync'd JSONL record under the data dir concurrently, then the database, retried in
  the background; unsettled blocks replayed at startup);
- accepted shares: the durable share journal (``poolserver.storage``), or the in-memory sink
  (logged loudly) when ``memory_sink=True`` is asked for;
- the Prometheus endpoint on ``[metrics]`` (``poolserver.metrics``) with its samplers
  (``poolserver.telemetry``: node RPC timing, loop lag, database figures every
  ``[metrics].db_poll_interval_s``).

Everything it starts is logged with its address; ``stop()`` shuts down in reverse order
(``client.reconnect`` to miners, drain shares, flush the journal).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
from typing import Any

from poolserver.aio import cancel_and_wait
from poolserver.config import Config
from stratum import hashcore
from stratum.extranonce import ExtranonceAllocator
from stratum.interfaces import AccountPolicy, Job, ShareSink
from stratum.memory_sink import MemoryShareSink
from stratum.server import StratumServer
from stratum.settings import PortSettings, ServerSettings
from stratum.stats import StratumStats
from stratum.vardiff import VardiffConfig

log = logging.getLogger(__name__)

# Test hook (tests/test_block_recovery.py): the found-block record's writes never complete, so a
# SIGKILL lands between the submission and the record. Never set it in production.
HOLD_RECORD_ENV = "QAZPOOL_TEST_HOLD_FOUND_BLOCK_RECORD"


def _test_hold_record(record: Any) -> Any:
    if os.environ.get(HOLD_RECORD_ENV) != "1":
        return record
    log.error("%s=1: found blocks are submitted but NEVER recorded (test hook)", HOLD_RECORD_ENV)

    class Held(type(record)):  # type: ignore[misc]
        async def _append(self, rec: dict[str, Any]) -> None:
            if rec.get("type") == "found":
                log.error("test hook: holding the record of found block %s", rec["block_hash"])
                await asyncio.Event().wait()
            await super()._append(rec)

    return Held(record.path)


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
    from poolserver.fdlimit import connection_cap, open_files_limit

    total_cap = connection_cap(sc.max_connections, sc.max_connections_per_ip, open_files_limit())
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
        max_connections=total_cap,
        max_write_buffer_bytes=sc.max_write_buffer_bytes,
        ban_min_submits=sc.ban_min_submits,
        ban_reject_ratio=sc.ban_reject_ratio,
        ban_seconds=sc.ban_seconds,
        auth_failures_allowed=sc.auth_failures_allowed,
        auth_backoff_s=sc.auth_backoff_s,
        auth_backoff_max_s=sc.auth_backoff_max_s,
        resume_window_s=sc.resume_window_s,
        drain_timeout_s=sc.drain_timeout_s,
        flood_report_s=config.security.flood_report_s,
        # [stratum.vardiff] mirrors stratum's VardiffConfig field for field (stratum may not
        # import the config); a field added to one side only fails here at startup.
        vardiff=VardiffConfig(**dataclasses.asdict(v)),
    )


def register_enforced(config: Config) -> bool:
    """Whether mining.authorize checks the miner register ([register].enforce)."""
    mode = config.register.enforce
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"register.enforce: expected auto, on or off, got {mode!r}")
    if mode == "auto":
        return bool(config.node.nodes)
    return mode == "on"


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
        self.block_sink: Any = None
        self.feed: Any = None
        self.stratum_addresses: list[tuple[str, int]] = []
        self.metrics_address: tuple[str, int] | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._network_task: asyncio.Task[None] | None = None
        self._owns_rpc = rpc is None
        self.register_policy: Any = None
        self._register_engine: Any = None
        self._unsubscribe_cutoff: Any = None
        self.payout_service: Any = None
        self.instance_lease: Any = None
        self.block_recovery: Any = None
        from poolserver.telemetry import NOTIFY_BUCKETS, Histogram, RpcStats

        self.rpc_stats = RpcStats()
        self.notify_seconds = Histogram(NOTIFY_BUCKETS)  # new block -> all miners notified
        self.loop_sampler: Any = None
        self.db_poller: Any = None
        self.deadline_reminder: Any = None
        self.probe_service: Any = None
        self._probe_engine: Any = None
        self.security_writer: Any = None  # poolserver.security.writer (None: no storage)
        self.web: Any = None  # poolserver.web.app.WebServer ([web], needs the database)
        self.web_address: tuple[str, int] | None = None
        self.clock_watch: Any = None

    async def start(self) -> None:
        cfg = self.config
        settings = server_settings(cfg)
        from poolserver.report_deadline import check_reports_config

        check_reports_config(cfg.reports)
        if cfg.web.enabled:
            from poolserver.web import check_web_config

            check_web_config(cfg.web)
        data = cfg.data_path
        data.mkdir(parents=True, exist_ok=True)
        from poolserver.bitcoin import template_feed
        from poolserver.bitcoin.blocks import BlockSubmitter, JsonlFoundBlockStore, submit_targets

        # Refuse a bad payout address, tag or extranonce layout before touching node or disk.
        template_feed.builder_from_config(cfg)
        if self.rpc is None:
            from poolserver.telemetry import instrument_nodes

            # per-node RPC latency/errors/up for the metrics (NodeGroup members wrapped)
            self.rpc = instrument_nodes(template_feed.rpc_from_config(cfg), self.rpc_stats)
        log.info("template source: %s", getattr(self.rpc, "name", type(self.rpc).__name__))
        await template_feed.startup_check(self.rpc, cfg)
        from poolserver.bitcoin.clock import ClockWatch

        self.clock_watch = ClockWatch(self.rpc, cfg.clock)
        await self.clock_watch.startup()  # ClockSkewError: a gross skew refuses the start
        if self.sink is None:
            from poolserver.storage_config import open_storage_from_config

            self.storage = await open_storage_from_config(cfg)
            self.sink = self.storage.journal
            await self._take_instance_lease()
            log.info("shares: durable journal in %s", self.storage.url)
            from poolserver.security.startup import start_security_log

            # config.start recorded now; refusals, bans and floods queued from the share path
            self.security_writer = await start_security_log(self.storage.engine, cfg)
        elif isinstance(self.sink, MemoryShareSink):
            log.warning("shares: IN-MEMORY sink, nothing survives a restart (tests only)")
        self.feed = template_feed.feed_from_config(cfg, self.rpc)
        # Found blocks: submitted to every node first; the fsync'd JSONL record under the data
        # dir is written concurrently, then the database (retried in the background).
        record = JsonlFoundBlockStore(data / "found-blocks.jsonl")
        found_store: Any = None
        database: Any = None
        if self.storage is not None:
            from poolserver.bitcoin.found_blocks import found_block_store

            found_store = found_block_store(self.storage.engine, cfg)
            record, database = found_store.fallback, found_store.sql
            # blocks a crash or an outage kept out of the database
            await found_store.import_fallback()
        self.block_sink = BlockSubmitter(
            _test_hold_record(record),
            submit_targets(self.rpc),
            database=database,
            on_submitted=self.feed.refresh_now,
        )
        if found_store is not None:
            from poolserver.bitcoin.block_recovery import BlockRecovery

            self.block_recovery = BlockRecovery(
                self.rpc, found_store.sql, template_feed.payout_script(cfg),
                depth=cfg.node.recover_depth, interval_s=cfg.node.recover_interval_s,
                stats=self.block_sink.stats,
            )  # fmt: skip
            self.block_recovery.start()  # scans now, then periodically (blocks lost by a crash)
        replayed = await self.block_sink.replay_pending()
        if replayed:
            log.warning("resubmitted %d found block(s) left unsettled by the last run", replayed)
        if self.storage is not None and cfg.payouts.enabled:
            from poolserver.bitcoin.wallet import wallet_from_config
            from poolserver.payout_leader import leader_from_config
            from poolserver.payout_service import PayoutService

            self.payout_service = PayoutService(
                self.storage.engine, cfg, self.rpc, wallet_from_config(cfg, self.rpc),
                found_store=found_store, leader=leader_from_config(self.storage.engine, cfg),
            )  # fmt: skip
            self.payout_service.start()
        if self.policy is None and register_enforced(cfg):
            await self._start_register()
        extranonces = self.extranonces or ExtranonceAllocator(
            size=cfg.stratum.extranonce1_size,
            node_id=cfg.pool.node_id,
            resume_window_s=settings.resume_window_s,
        )
        assert self.sink is not None
        if cfg.probe.enabled:
            await self._start_probe()
        self.server = StratumServer(
            settings,
            self.sink,
            block_sink=self.block_sink,
            policy=self.policy,
            extranonces=extranonces,
            stats=self.stats,
            on_authorized=self.probe_service.on_authorized if self.probe_service else None,
            security=self.security_writer,
        )
        # First job before the listeners open, so the first miner gets work at once.
        self._feed_task = asyncio.get_running_loop().create_task(self.feed.run())
        self._start_network_miners()
        first = await self.feed.wait_for_job()
        self.server.new_job(first)
        self.feed.add_listener(self._on_job)
        if self.register_policy is not None:
            from poolserver.register.cutoff import connect_cutoff

            self._unsubscribe_cutoff = connect_cutoff(self.register_policy.events, self.server)
        self.stratum_addresses = await self.server.start()
        self._start_deadline_reminder()
        if cfg.web.enabled and self.storage is not None:
            await self._start_web()
        self.clock_watch.start()
        if cfg.metrics.enabled:
            self._start_metrics()
        log.info(
            "qazpool started: stratum on %s, metrics on %s, web page on %s, data in %s, "
            "hash core %s",
            ", ".join(f"stratum+tcp://{h}:{p}" for h, p in self.stratum_addresses),
            f"http://{self.metrics_address[0]}:{self.metrics_address[1]}/metrics"
            if self.metrics_address
            else "(disabled)",
            f"http://{self.web_address[0]}:{self.web_address[1]}/"
            if self.web_address
            else "(disabled)",
            data.resolve(),
            hashcore.backend(),
        )

    def _start_deadline_reminder(self) -> None:
        """Issue 13: the income reports' deadline, logged at startup and daily, exported."""
        from poolserver.report_deadline import DeadlineReminder, reports_dir

        rc = self.config.reports
        self.deadline_reminder = DeadlineReminder(
            reports_dir(self.config), rc.deadline_day, rc.reminder_interval_s
        )
        self.deadline_reminder.start()

    async def _start_web(self) -> None:
        """Issue 16: the pool page and read-only API on [web] host:port."""
        from poolserver.web import WebStats, web_context
        from poolserver.web.app import WebServer
        from poolserver.web.queries import PoolFigures
        from stratum.difficulty import DIFF1

        feed = self.feed

        def figures() -> PoolFigures:
            job = feed.current_job
            if job is None:
                return PoolFigures(0.0, 0)
            return PoolFigures(DIFF1 / job.network_target, job.height)

        ctx = web_context(self.config, self.storage.engine, figures)
        self.web = WebServer(ctx, WebStats())
        self.web_address = await self.web.start()

    async def _take_instance_lease(self) -> None:
        """Scale-out: [pool].node_id (the extranonce1 prefix) leased in the shared database;
        LeaseHeld (startup refused) while another live instance holds it."""
        from poolserver.instance_lease import InstanceIdLease

        lease = InstanceIdLease(self.storage.engine, self.config.pool.node_id,
                                self.config.pool.lease_ttl_s)  # fmt: skip
        await lease.acquire()
        self.instance_lease = lease
        lease.start()

    def _start_network_miners(self) -> None:
        """Embedded chain only: the rest of the network finds a block every
        ``[chain].network_block_interval_s`` seconds on average (0 = never), paying an address
        that is not the pool's (the wallet must not see unexplained deposits)."""
        from poolserver.bitcoin.embedded_chain import NETWORK_MINER_SCRIPT, EmbeddedChain

        interval = self.config.chain.network_block_interval_s
        if interval > 0 and isinstance(self.rpc, EmbeddedChain):
            self._network_task = asyncio.get_running_loop().create_task(
                self.rpc.run_other_miners(interval, NETWORK_MINER_SCRIPT)
            )
            log.info("embedded chain: the rest of the network finds a block every ~%gs", interval)

    def _start_metrics(self) -> None:
        """The /metrics endpoint and the samplers behind it (loop lag, database figures)."""
        from poolserver.metrics import Sources, start_metrics
        from poolserver.telemetry import DbPoller, LoopSampler

        cfg = self.config
        assert self.server is not None and self.feed is not None
        server = self.server
        journal = self.storage.journal if self.storage is not None else None
        self.loop_sampler = LoopSampler(
            sessions=lambda: server.sessions,
            spool_dir=journal.spool.dir if journal is not None else None,
        )
        self.loop_sampler.start()
        if self.storage is not None and cfg.metrics.db_poll_interval_s > 0:
            from poolserver.telemetry_db import db_reader

            feed = self.feed

            def network_difficulty() -> float:
                from stratum.difficulty import DIFF1

                job = feed.current_job
                return DIFF1 / job.network_target if job is not None else 0.0

            self.db_poller = DbPoller(
                db_reader(
                    self.storage.engine,
                    network=cfg.register.network or cfg.chain.network,
                    pplns_k=cfg.payouts.pplns_k,
                    network_difficulty=network_difficulty,
                ),
                interval_s=cfg.metrics.db_poll_interval_s,
            )
            self.db_poller.start()
        sources = Sources(
            self.stats,
            feed=self.feed,
            block_stats=self.block_sink.stats,
            journal_stats=journal.stats if journal is not None else None,
            rpc=self.rpc_stats,
            loop=self.loop_sampler.snapshot,
            db=self.db_poller,
            notify=self.notify_seconds,
            payouts=self.payout_service.stats if self.payout_service is not None else None,
            deadline=self.deadline_reminder,
            probe=self.probe_service.stats if self.probe_service is not None else None,
            security=self.security_writer.stats if self.security_writer is not None else None,
            web=self.web.stats if self.web is not None else None,
            clock=self.clock_watch,
        )
        self.metrics_server, _ = start_metrics(
            cfg.metrics.host, cfg.metrics.port, self.stats, sources=sources
        )
        addr = self.metrics_server.server_address
        self.metrics_address = (addr[0], addr[1])

    async def _start_probe(self) -> None:
        """Issue 15: probe authorized miners' firmware in the background ([probe])."""
        from poolserver.probe_service import ProbeService, RegisterView
        from poolserver.probe_store import ProbeStore
        from poolserver.register.repository import RegisterRepository
        from poolserver.storage_config import create_engine_from_config

        cfg = self.config
        engine = self.storage.engine if self.storage is not None else None
        if engine is None:
            engine = self._probe_engine = create_engine_from_config(cfg)
        repo = RegisterRepository(engine, network=cfg.register.network or cfg.chain.network)
        self.probe_service = ProbeService(
            cfg.probe, ProbeStore(engine), RegisterView(repo),
            capacity_limit_pct=cfg.register.capacity_limit_pct,
        )  # fmt: skip
        await self.probe_service.start()

    async def _start_register(self) -> None:
        """License enforcement: the register's policy answers mining.authorize."""
        from poolserver.register.policy import RegisterAccountPolicy
        from poolserver.register.repository import RegisterRepository
        from poolserver.storage_config import create_engine_from_config

        cfg = self.config
        engine = (
            self.storage.engine
            if self.storage is not None
            else create_engine_from_config(cfg)
        )
        self._register_engine = None if self.storage is not None else engine
        repo = RegisterRepository(engine, network=cfg.register.network or cfg.chain.network)
        self.register_policy = RegisterAccountPolicy(
            repo,
            poll_interval_s=cfg.register.poll_interval_s,
            warning_days=cfg.register.expiry_warning_days,
        )
        await self.register_policy.start()
        self.policy = self.register_policy
        log.info("mining.authorize: license enforcement ON (miner register)")

    def _on_job(self, job: Job) -> None:
        assert self.server is not None
        took = self.server.new_job(job)
        if job.clean_jobs:
            self.notify_seconds.observe(took)
        log.debug(
            "job %s height %d%s sent to %d miners in %.1f ms",
            job.job_id,
            job.height,
            " (new block)" if job.clean_jobs else "",
            self.stats.authorized_current,
            took * 1000,
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._network_task)
        await cancel_and_wait(self._feed_task)
        if self.server is not None:
            await self.server.shutdown()
        if self.probe_service is not None:
            await self.probe_service.stop()
        if self._probe_engine is not None:
            await self._probe_engine.dispose()
        if self.security_writer is not None:
            await self.security_writer.stop()  # after the server: its last flood summaries
        if self.web is not None:
            await self.web.stop()
        if self.block_recovery is not None:
            await self.block_recovery.stop()
        if self.block_sink is not None:
            await self.block_sink.drain()
        for sampler in (self.loop_sampler, self.db_poller, self.deadline_reminder,
                        self.clock_watch):  # fmt: skip
            if sampler is not None:
                await sampler.stop()
        if self.payout_service is not None:
            await self.payout_service.stop()
        if self._unsubscribe_cutoff is not None:
            self._unsubscribe_cutoff()
        if self.register_policy is not None:
            await self.register_policy.stop()
        if self._register_engine is not None:
            await self._register_engine.dispose()
        if self.instance_lease is not None:
            await self.instance_lease.release()
        if self.storage is not None:
            await self.storage.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if self._owns_rpc and self.rpc is not None and hasattr(self.rpc, "close"):
            await self.rpc.close()
        log.info("qazpool stopped")
