"""Prometheus exporter: every ``qazpool_`` family, read from the components' plain stats objects.

Components keep plain counters (``stratum.stats.StratumStats``, the template feed's ``FeedStats``,
the block submitter's ``BlockStats``, the journal's ``JournalStats``) and ``poolserver.telemetry``
keeps what no component owns (node RPC latency, loop lag, workers by firmware, database figures
polled periodically). ``PoolCollector`` turns them into families at scrape time on
prometheus-client's HTTP server thread (``[metrics]`` host:port, default 127.0.0.1:9108); it only
reads, copying dicts before iterating since the event loop thread writes them.

Conventions: base units (seconds, bytes, satoshis, hashes), ``_total`` counters, bounded label
values only (reject reasons from ``stratum.validate.Reject``, firmware families, configured node
names, fixed state sets). ``FAMILIES`` lists every family name and type (tests and the dashboards'
checks read it).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import poolserver
from poolserver.telemetry import (
    FIRMWARE_LABELS,
    NOTIFY_BUCKETS,
    DbSnapshot,
    Histogram,
    LoopSnapshot,
    RpcStats,
    pplns_fill,
)
from stratum import hashcore
from stratum.difficulty import DIFF1
from stratum.stats import StratumStats

log = logging.getLogger(__name__)

HASHES_PER_DIFFICULTY = 2**32  # difficulty-1 share = 2^32 hashes on average
BLOCK_OUTCOMES = ("accepted", "rejected", "inconclusive", "unsettled")
# stratum.server's refusal reasons, exported as 0 before the first refusal
REFUSAL_REASONS = ("banned", "per_ip_cap", "global_cap", "shutting_down")


@dataclass
class Sources:
    """What the collector reads; ``None`` = that part of the pool is not running."""

    stratum: StratumStats
    feed: Any = None  # poolserver.bitcoin.template_feed.TemplateFeed (stats + current job)
    feed_stats: Any = None  # FeedStats (when only the stats are at hand)
    block_stats: Any = None  # poolserver.bitcoin.blocks.BlockStats
    journal_stats: Any = None  # poolserver.storage.journal.JournalStats
    rpc: RpcStats | None = None
    loop: LoopSnapshot | None = None
    db: Any = None  # telemetry.DbPoller (its .snapshot is replaced at each poll)
    payouts: Any = None  # poolserver.payout_service.PayoutStats (None: no payout service)
    notify: Histogram = field(default_factory=lambda: Histogram(NOTIFY_BUCKETS))
    deadline: Any = None  # poolserver.report_deadline.DeadlineReminder (.current() -> stats)
    probe: Any = None  # poolserver.probe_service.ProbeStats (None: [probe] disabled)
    security: Any = None  # poolserver.security.writer.SecurityLogStats
    web: Any = None  # poolserver.web.stats.WebStats (None: no web server)
    clock: Any = None  # poolserver.bitcoin.clock.ClockWatch (.last reading, .checks)


def _gauge(name: str, doc: str, value: float, unit: str = "") -> Metric:
    g = GaugeMetricFamily(name, doc, unit=unit)
    g.add_metric([], value)
    return g


def _counter(name: str, doc: str, value: float) -> Metric:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


def _labelled_counter(
    name: str, doc: str, label: str, counts: dict[str, Any], keys: tuple[str, ...] = ()
) -> Metric:
    c = CounterMetricFamily(name, doc, labels=[label])
    values = {k: 0 for k in keys}
    values.update(dict(counts))  # copy: the event loop thread mutates it
    for key, value in sorted(values.items()):
        c.add_metric([str(key)], value)
    return c


def _labelled_gauge(name: str, doc: str, labels: list[str], values: dict[Any, Any]) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(dict(values).items(), key=lambda kv: str(kv[0])):
        g.add_metric(list(key) if isinstance(key, tuple) else [str(key)], value)
    return g


def _histogram(
    name: str,
    doc: str,
    h: Histogram,
    labels: list[str] | None = None,
    label_values: list[str] | None = None,
    family: HistogramMetricFamily | None = None,
) -> HistogramMetricFamily:
    fam = family or HistogramMetricFamily(name, doc, labels=labels)
    fam.add_metric(label_values or [], h.cumulative(), h.total)
    return fam


class PoolCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._build()
        yield from self._stratum()
        yield from self._feed()
        yield from self._blocks()
        yield from self._journal()
        yield from self._rpc()
        yield from self._loop()
        yield from self._db()
        yield from self._payouts()
        yield from self._report_deadline()
        yield from self._probe()
        yield from self._security_log()
        yield from self._web()
        yield from self._clock()

    # ---- families ---------------------------------------------------------------------------
    def _build(self) -> Iterator[Metric]:
        info = InfoMetricFamily("qazpool_build", "Pool version, hash core and Python in use")
        info.add_metric(
            [],
            {
                "version": poolserver.__version__,
                "hashcore": hashcore.backend(),
                "python": platform.python_version(),
            },
        )
        yield info
        core = GaugeMetricFamily(
            "qazpool_hashcore_info", "SHA-256 path of the share hash core", labels=["backend"]
        )
        core.add_metric([hashcore.backend()], 1)
        yield core

    def _stratum(self) -> Iterator[Metric]:
        s = self.s.stratum
        yield _gauge(
            "qazpool_stratum_connections_open", "Open Stratum connections", s.connections_current
        )
        yield _gauge(
            "qazpool_stratum_connections_max",
            "Global cap on open Stratum connections in force ([stratum].max_connections; 0 = none)",
            s.connections_max,
        )
        yield _gauge(
            "qazpool_stratum_authorized_connections",
            "Connections with an authorized worker",
            s.authorized_current,
        )
        yield _counter("qazpool_stratum_connections", "Accepted connections", s.connections_total)
        yield _labelled_counter(
            "qazpool_stratum_connections_refused",
            "Refused connections",
            "reason",
            s.connections_refused,
            REFUSAL_REASONS,
        )
        yield _labelled_counter(
            "qazpool_stratum_disconnects", "Closed connections by reason", "reason", s.disconnects
        )
        shares = dict(s.shares)
        yield _labelled_counter(
            "qazpool_stratum_shares",
            "Submitted shares by result (accepted or the validator's reject reason)",
            "result",
            shares,
            ("accepted",),
        )
        difficulty = dict(s.share_difficulty)
        yield _labelled_counter(
            "qazpool_stratum_share_difficulty",
            "Summed difficulty of submitted shares by result",
            "result",
            difficulty,
            ("accepted",),
        )
        yield _counter(
            "qazpool_stratum_accepted_work_hashes",
            "Expected hashes behind accepted shares (difficulty x 2^32); rate() is the hashrate",
            float(difficulty.get("accepted", 0.0)) * HASHES_PER_DIFFICULTY,
        )
        yield _labelled_counter(
            "qazpool_stratum_protocol_errors", "Protocol errors by kind", "kind", s.protocol_errors
        )
        yield _counter("qazpool_stratum_blocks_found", "Block candidates found", s.blocks_found)
        yield _counter(
            "qazpool_stratum_jobs_broadcast", "Jobs sent to all miners", s.jobs_broadcast
        )
        yield _gauge(
            "qazpool_stratum_last_broadcast_seconds",
            "Time to write the last job to every miner",
            s.last_broadcast_seconds,
        )
        yield _histogram(
            "qazpool_stratum_new_block_notify_seconds",
            "New block template to clean job written to every miner",
            self.s.notify,
        )
        yield _gauge("qazpool_stratum_banned", "Currently banned IPs and names", s.bans_current)
        yield _counter("qazpool_stratum_bans", "Bans imposed", s.bans_total)
        yield _counter(
            "qazpool_stratum_share_sink_errors", "Shares the sink refused", s.sink_errors
        )
        yield _counter(
            "qazpool_stratum_share_check_batches",
            "Batches of shares hashed by the core",
            s.check_batches,
        )
        yield _counter(
            "qazpool_stratum_checked_shares", "Shares hashed by the core", s.checked_shares
        )
        yield _histogram(
            "qazpool_stratum_share_check_seconds",
            "Share check latency: one hash batch (check_shares + judge), one observation per batch",
            s.check_seconds,
        )
        yield _counter(
            "qazpool_stratum_block_solves_on_rejected_shares",
            "Block solves found on shares refused after hashing (submitted all the same)",
            s.blocks_found_rejected,
        )
        yield _counter(
            "qazpool_stratum_storage_duplicates",
            "Shares storage already held (a restart, another instance): answered duplicate",
            s.storage_duplicates,
        )
        requests = CounterMetricFamily(
            "qazpool_stratum_requests",
            "Stratum requests by method and outcome (mining.submit: accepted or rejected)",
            labels=["method", "outcome"],
        )
        counts: dict[tuple[str, str], float] = dict(s.requests)
        counts[("mining.submit", "accepted")] = shares.get("accepted", 0)
        counts[("mining.submit", "rejected")] = sum(
            n for r, n in shares.items() if r != "accepted"
        )
        for (method, outcome), n in sorted(counts.items()):
            requests.add_metric([method, outcome], n)
        yield requests
        opened = CounterMetricFamily(
            "qazpool_stratum_connections_opened",
            "Admitted connections by listener (bound port)",
            labels=["listener"],
        )
        for listener, n in sorted(dict(s.listener_opened).items()):
            opened.add_metric([listener], n)
        yield opened
        closed = CounterMetricFamily(
            "qazpool_stratum_connections_closed",
            "Closed connections by listener (bound port) and reason",
            labels=["listener", "reason"],
        )
        for (listener, reason), n in sorted(dict(s.listener_closed).items()):
            closed.add_metric([listener, reason], n)
        yield closed

    def _feed(self) -> Iterator[Metric]:
        feed = self.s.feed
        fs = feed.stats if feed is not None else self.s.feed_stats
        if fs is None:
            return
        yield _gauge(
            "qazpool_node_up",
            "1 while the template source answers, 0 during an outage",
            1.0 if fs.node_up else 0.0,
        )
        yield _counter("qazpool_templates_fetched", "Block templates fetched", fs.templates_fetched)
        yield _counter("qazpool_template_fetch_errors", "Failed template fetches", fs.fetch_errors)
        yield _counter("qazpool_jobs_published", "Jobs built from templates", fs.jobs_published)
        yield _counter(
            "qazpool_templates_unchanged",
            "Templates that changed nothing the miner hashes (no new job minted)",
            fs.templates_unchanged,
        )
        yield _counter(
            "qazpool_chain_new_blocks", "New chain tips seen (prevhash changes)", fs.new_blocks
        )
        outage = fs.outage_since
        yield _gauge(
            "qazpool_node_outage_seconds",
            "Seconds the template source has been down",
            max(0.0, time.time() - outage) if outage and not fs.node_up else 0.0,
        )
        if fs.last_job_at:
            yield _gauge(
                "qazpool_template_age_seconds",
                "Seconds since the last job was built",
                max(0.0, time.time() - fs.last_job_at),
            )
        job = feed.current_job if feed is not None else None
        if job is not None:
            yield _gauge("qazpool_chain_height", "Height of the block being mined", job.height)
            target = job.network_target or 1
            yield _gauge(
                "qazpool_network_difficulty",
                "Network difficulty of the current job",
                DIFF1 / target,
            )
            yield _gauge(
                "qazpool_template_transactions",
                "Transactions in the current template",
                len(job.template.transactions),
            )
            yield _gauge(
                "qazpool_template_coinbase_value_satoshis",
                "Coinbase value (subsidy + fees) of the current template",
                job.template.coinbase_value,
            )

    def _blocks(self) -> Iterator[Metric]:
        bs = self.s.block_stats
        if bs is None:
            return
        yield _counter("qazpool_blocks_found", "Found blocks persisted for submission", bs.found)
        yield _labelled_counter(
            "qazpool_block_submissions",
            "Found blocks by submit outcome",
            "outcome",
            {o: getattr(bs, o) for o in BLOCK_OUTCOMES},
        )
        yield _counter(
            "qazpool_block_submit_errors", "submitblock calls that failed", bs.submit_errors
        )
        yield _counter(
            "qazpool_block_record_errors",
            "Found blocks whose local fsync'd record failed (submitted all the same)",
            bs.record_errors,
        )
        yield _counter(
            "qazpool_block_db_errors",
            "Failed database writes of found blocks (each retried in the background)",
            bs.db_errors,
        )
        yield _gauge(
            "qazpool_block_db_behind",
            "Found blocks the database does not hold completely yet (retrying)",
            bs.db_behind,
        )
        yield _counter(
            "qazpool_blocks_recovered_from_chain",
            "Blocks paying the pool found on the chain but missing from the database, imported",
            bs.recovered_from_chain,
        )
        latency = HistogramMetricFamily(
            "qazpool_block_submit_latency_seconds",
            "Solving share read to submitblock handed to the node's client, by node",
            labels=["node"],
        )
        for node, h in sorted(dict(bs.submit_latency).items()):
            latency.add_metric([node], h.cumulative(), h.total)
        yield latency

    def _journal(self) -> Iterator[Metric]:
        js = self.s.journal_stats
        if js is None:
            return
        yield _counter(
            "qazpool_journal_committed_shares",
            "Shares committed directly to the database",
            js.committed,
        )
        yield _counter(
            "qazpool_journal_spooled_shares",
            "Shares acknowledged from the disk spool (database unavailable)",
            js.spooled,
        )
        yield _counter(
            "qazpool_journal_replayed_shares",
            "Spooled shares inserted into the database at replay",
            js.replayed,
        )
        yield _counter("qazpool_journal_flushes", "Group-commit batches written", js.batches)
        yield _counter(
            "qazpool_journal_db_failures", "Batches the database refused", js.db_failures
        )
        yield _counter(
            "qazpool_journal_duplicate_shares",
            "Shares refused by storage: their header hash is already stored (share_conflicts)",
            js.duplicates,
        )
        yield _counter(
            "qazpool_journal_replay_conflicts",
            "Spooled (acknowledged) shares whose hash was already stored at replay: not credited",
            js.replay_conflicts,
        )
        yield _histogram(
            "qazpool_journal_flush_seconds",
            "Duration of one group commit (database or spool)",
            js.flush_seconds,
        )
        yield _histogram(
            "qazpool_journal_batch_size", "Shares in one group commit", js.batch_size
        )

    def _rpc(self) -> Iterator[Metric]:
        rs = self.s.rpc
        if rs is None:
            return
        up = GaugeMetricFamily(
            "qazpool_node_rpc_up", "1 if the node answered its last RPC", labels=["node"]
        )
        calls = CounterMetricFamily(
            "qazpool_node_rpc_calls", "RPC calls by node and method", labels=["node", "method"]
        )
        errors = CounterMetricFamily(
            "qazpool_node_rpc_errors", "Failed RPC calls by kind", labels=["node", "method", "kind"]
        )
        latency = HistogramMetricFamily(
            "qazpool_node_rpc_duration_seconds",
            "RPC round trip by node and method",
            labels=["node", "method"],
        )
        for name, ns in sorted(dict(rs.nodes).items()):
            up.add_metric([name], 1.0 if ns.up else 0.0)
            for method, n in sorted(dict(ns.calls).items()):
                calls.add_metric([name, method], n)
            for (method, kind), n in sorted(dict(ns.errors).items()):
                errors.add_metric([name, method, kind], n)
            for method, h in sorted(dict(ns.latency).items()):
                latency.add_metric([name, method], h.cumulative(), h.total)
        yield from (up, calls, errors, latency)

    def _loop(self) -> Iterator[Metric]:
        ls = self.s.loop
        if ls is None:
            return
        yield _histogram(
            "qazpool_event_loop_lag_seconds", "How late the event loop wakes a short sleep", ls.lag
        )
        yield _gauge(
            "qazpool_event_loop_last_lag_seconds", "The last loop lag sample", ls.last_lag_seconds
        )
        workers = {f: 0 for f in FIRMWARE_LABELS}
        workers.update(ls.workers_by_firmware)
        yield _labelled_gauge(
            "qazpool_stratum_authorized_workers",
            "Authorized workers by firmware family (from the user agent)",
            ["firmware"],
            workers,
        )
        if self.s.journal_stats is not None:
            yield _gauge(
                "qazpool_journal_spool_bytes",
                "Acknowledged shares waiting in the disk spool",
                ls.spool_bytes,
            )
            yield _gauge(
                "qazpool_journal_spool_files", "Spool files waiting for replay", ls.spool_files
            )

    def _db(self) -> Iterator[Metric]:
        poller = self.s.db
        if poller is None:
            return
        d: DbSnapshot = poller.snapshot
        yield _counter(
            "qazpool_db_poll_errors", "Failed periodic reads of the database figures", d.errors
        )
        if not d.ok:
            return
        yield _gauge(
            "qazpool_db_poll_timestamp_seconds",
            "Unix time of the last successful read of the database figures",
            d.polled_at,
        )
        yield _gauge(
            "qazpool_db_poll_duration_seconds",
            "Duration of the last read of the database figures",
            d.poll_seconds,
        )
        yield _labelled_gauge(
            "qazpool_ledger_balance_satoshis",
            "Ledger balances: immature (allocated, not yet credited), mature "
            "(credited to miners, not paid), pending_payout (in unsettled "
            "payments), pool (the pool's own account)",
            ["state"],
            d.ledger_satoshis,
        )
        yield _labelled_gauge(
            "qazpool_payments", "Payment batches by status", ["status"], d.payments
        )
        yield _labelled_gauge(
            "qazpool_payment_amount_satoshis",
            "Satoshis in payment batches by status",
            ["status"],
            d.payment_satoshis,
        )
        yield _labelled_gauge(
            "qazpool_found_blocks",
            "Found blocks in the database by status",
            ["status"],
            d.found_blocks,
        )
        yield _labelled_gauge(
            "qazpool_miners_by_license_state",
            "Registered miners by license state now",
            ["state"],
            d.miners_by_license_state,
        )
        yield _labelled_gauge(
            "qazpool_licenses_expiring",
            "Miners whose license in force ends within N days (cumulative)",
            ["within_days"],
            {str(k): v for k, v in d.licenses_expiring.items()},
        )
        yield _counter(
            "qazpool_payment_fees_satoshis",
            "Network fees of all sent payment transactions (payments.fee_sats, either policy)",
            d.payment_fees_satoshis,
        )
        yield _gauge(
            "qazpool_pplns_window_difficulty",
            "PPLNS window N = pplns_k x network difficulty",
            d.pplns_window_difficulty,
        )
        yield _gauge(
            "qazpool_pplns_window_fill_ratio",
            "Share difficulty present in the PPLNS window / N (1 = full)",
            pplns_fill(d.pplns_window_work_difficulty, d.pplns_window_difficulty),
        )

    def _payouts(self) -> Iterator[Metric]:
        st = self.s.payouts
        if st is None:
            return
        yield _counter(
            "qazpool_payment_batches_planned", "Payment batches planned", st.batches_planned_total
        )
        yield _counter(
            "qazpool_payout_outputs_held",
            "Payout outputs the wallet refused alone, held by this process",
            st.outputs_held_total,
        )
        yield _counter(
            "qazpool_payment_underfunded_refusals",
            "Wallet refusals for lack of funds (planning paused)",
            st.underfunded_refusals_total,
        )
        lease = getattr(st, "lease", None)
        if lease is not None:  # several instances on one database: who leads the payouts
            yield _gauge(
                "qazpool_payout_leader",
                "1 while this instance holds the payout/maturity leader lease, else 0",
                int(lease.leader),
            )
            yield _gauge("qazpool_payout_leader_epoch", "Epoch of the payout lease held last",
                         lease.epoch)  # fmt: skip
            yield _counter(
                "qazpool_payout_leader_takeovers",
                "Payout leadership taken over from another (lapsed) instance",
                lease.takeovers,
            )
            yield _counter(
                "qazpool_payout_leader_losses",
                "Payout leadership lost while running (lease lapsed or taken)",
                lease.losses,
            )
        yield _counter("qazpool_reconcile_runs", "Periodic reconcile runs", st.reconcile_runs_total)
        yield _counter(
            "qazpool_reconcile_errors",
            "Periodic reconcile runs that failed",
            st.reconcile_errors_total,
        )
        if not st.leader:  # the payout leader's figures only (several instances, one database)
            return
        if st.wallet_spendable_sats >= 0:
            yield _gauge(
                "qazpool_wallet_spendable_satoshis",
                "Spendable wallet balance at the last payment run",
                st.wallet_spendable_sats,
            )
            yield _gauge(
                "qazpool_wallet_required_satoshis",
                "Spendable satoshis the next payment run needs (payable balances + fee reserve)",
                st.wallet_required_sats,
            )
            yield _gauge(
                "qazpool_wallet_low_balance",
                "1 when the spendable balance is below what the next payments need or below "
                "[payouts].low_balance_warning_sats",
                int(st.wallet_low_balance),
            )
        yield _gauge(
            "qazpool_payments_awaiting_approval",
            "Payment batches the hot-wallet caps hold for `poolserver payouts approve`",
            st.payments_awaiting_approval,
        )
        yield _gauge(
            "qazpool_payments_waiting_for_funds",
            "Miners over the payout threshold the wallet cannot fund yet",
            st.payments_waiting_for_funds,
        )
        yield _gauge(
            "qazpool_payouts_held",
            "Miners whose payout is held (the wallet refused their output)",
            st.payouts_held,
        )
        if st.wallet_ledger_difference_sats is not None:
            yield _gauge(
                "qazpool_wallet_ledger_difference_satoshis",
                "Wallet total minus what the books say it must hold (last reconcile; 0 = agree)",
                st.wallet_ledger_difference_sats,
            )
            yield _gauge(
                "qazpool_reconcile_last_run_timestamp_seconds",
                "Unix time of the last successful reconcile",
                st.reconcile_last_run_at,
            )

    def _probe(self) -> Iterator[Metric]:
        """Issue 15: firmware probe outcomes and register findings (bounded label values)."""
        st = self.s.probe
        if st is None:
            return
        from firmware_probe import Outcome
        from poolserver.probe_service import SKIP_REASONS

        yield _labelled_counter(
            "qazpool_probe_results",
            "Firmware probes finished, by outcome",
            "outcome",
            st.outcomes,
            tuple(o.value for o in Outcome),
        )
        yield _labelled_counter(
            "qazpool_probe_skipped",
            "Authorized miners not probed, by reason",
            "reason",
            st.skipped,
            SKIP_REASONS,
        )
        yield _labelled_gauge(
            "qazpool_probe_machines_flagged",
            "Probed machines whose latest result has this hardware-register finding",
            ["finding"],
            st.findings(),
        )
        yield _gauge(
            "qazpool_probe_machines_serial_unknown",
            "Probed machines whose read-only API exposes no serial (register match unknown)",
            st.serial_unknown(),
        )
        yield _gauge("qazpool_probe_in_flight", "Firmware probes running now", st.in_flight)
        yield _gauge("qazpool_probe_queued", "Addresses waiting for a probe", st.queued)
        yield _counter(
            "qazpool_probe_store_failures", "Probe results not stored (database error)",
            st.store_failures,
        )  # fmt: skip

    def _report_deadline(self) -> Iterator[Metric]:
        """Issue 13: the previous month's income reports are due (reporting.deadline)."""
        if self.s.deadline is None:
            return
        st = self.s.deadline.current()
        generated = "true" if self.s.deadline.generated(st) else "false"  # one stat() call
        yield _labelled_gauge(
            "qazpool_report_deadline_timestamp_seconds",
            "End of the due day (UTC+5) of the previous month's income reports, Unix time; "
            "generated: its miners' report is in [reports].out_dir",
            ["period", "generated"],
            {(st.period, generated): st.deadline_timestamp_seconds},
        )
        # Whole calendar days (UTC+5) to the due day, in seconds: promtool's lint refuses a
        # "days" unit in a family name, so the "days_left" is exported in base units.
        yield _gauge(
            "qazpool_report_deadline_remaining_seconds",
            "Calendar days (UTC+5) until the due day of the previous month's income reports, "
            "x 86400 (0 on the due day, negative once overdue)",
            st.days_left * 86400,
        )

    def _clock(self) -> Iterator[Metric]:
        """Issue 17: the host clock's distance outside the chain's bounds (bitcoin/clock.py)."""
        if self.s.clock is None or self.s.clock.last is None:
            return
        yield _gauge(
            "qazpool_clock_skew_seconds",
            "Host clock minus the nearest bound the chain puts on the real time (0 inside the "
            "bounds, negative = host behind); a lower bound on the real skew",
            self.s.clock.skew_s,
        )
        yield _counter(
            "qazpool_clock_check_failures",
            "Periodic clock checks the node did not answer",
            self.s.clock.failures,
        )

    def _web(self) -> Iterator[Metric]:
        """Issue 16: the web page and API (labels: route template, status class)."""
        if self.s.web is None:
            return
        w = self.s.web
        yield _multi_label_counter(
            "qazpool_web_requests_total", "Web/API requests by route template and status class",
            ["route", "status_class"], dict(w.requests),
        )
        fam = HistogramMetricFamily(
            "qazpool_web_request_duration_seconds", "Web/API request duration by route",
            labels=["route"],
        )
        for route, hist in sorted(dict(w.seconds).items()):
            _histogram("", "", hist, label_values=[route], family=fam)
        yield fam
        yield _counter(
            "qazpool_web_rate_limited_total", "Web/API requests refused with 429 (per-IP limit)",
            w.rate_limited,
        )


    def _security_log(self) -> Iterator[Metric]:
        """Issue 17: the security event log's writer (drops = the queue overflowed)."""
        st = self.s.security
        if st is None:
            return
        yield _counter("qazpool_security_events", "Security events emitted", st.emitted_total)
        yield _counter(
            "qazpool_security_events_written", "Security events written", st.written_total
        )
        yield _counter(
            "qazpool_security_events_dropped",
            "Security events dropped because the writer's queue was full",
            st.dropped_total,
        )
        yield _counter(
            "qazpool_security_log_write_errors",
            "Failed security-log writes (events kept and retried)",
            st.write_errors_total,
        )
        yield _gauge("qazpool_security_events_queued", "Security events waiting", st.queued)


def _multi_label_counter(name: str, doc: str, labels: list[str],
                        counts: dict[tuple[str, ...], Any]) -> Metric:  # fmt: skip
    c = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(counts.items()):
        c.add_metric(list(key), value)
    return c


def start_metrics(
    host: str,
    port: int,
    stats: StratumStats,
    *,
    feed_stats: Any = None,
    block_stats: Any = None,
    sources: Sources | None = None,
) -> tuple[Any, CollectorRegistry]:
    """Serve /metrics on host:port in a daemon thread; returns (http server, registry).

    ``sources`` carries every stats object; ``feed_stats`` / ``block_stats`` are the short form
    for callers that have only those. Process metrics (``qazpool_process_*``) come with it."""
    src = sources or Sources(stats, feed_stats=feed_stats, block_stats=block_stats)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PoolCollector(src))
    ProcessCollector(namespace="qazpool", registry=registry)
    result = start_http_server(port, addr=host, registry=registry)
    server = result[0] if isinstance(result, tuple) else result
    bound = server.server_address if server is not None else (host, port)
    log.info("metrics on http://%s:%d/metrics", bound[0], bound[1])
    return server, registry
