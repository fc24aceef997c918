"""The demo's terminal output: a live rich view on a TTY, plain progress lines otherwise (CI, a
pipe), and the closing summary.

``SUMMARY_HOOKS`` is the seam for later features (web page, income reports, dashboards): each
hook gets the demo's context and returns ``(title, lines)`` added to the summary. Only what
exists is listed; a feature that lands appends its hook here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from poolserver.demo.asic import SimulatedAsic
from poolserver.demo.figures import Snapshot


def btc(sats: int) -> str:
    return f"{Decimal(sats) / 100_000_000:.8f}"


def rate(hps: float) -> str:
    for unit, scale in (("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if hps >= scale:
            return f"{hps / scale:.1f} {unit}"
    return f"{hps:.0f} H/s"


def progress_line(s: Snapshot) -> str:
    """One plain line per interval (no TTY)."""
    return (f"demo t={s.elapsed_s:5.0f}s height={s.height} connections={s.connections} "
            f"authorized={s.authorized} hashrate={rate(s.hashrate)} shares={s.accepted} "
            f"rejects={s.rejected} ({_reasons(s)}) stored={s.shares_stored} "
            f"blocks={s.blocks_found} "
            f"credited_blocks={s.blocks_credited} credited_sats={sum(s.credited.values())} "
            f"payments={s.payments} paid_sats={sum(s.paid.values())}")  # fmt: skip


def _reasons(s: Snapshot) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(s.shares.items()) if k != "accepted") or "-"


def _refusal_reason(message: str) -> str:
    """A short reason for the table (the whole message is in the footer and the summary)."""
    for word in ("suspended", "revoked", "expired", "not registered", "no license"):
        if word in message:
            return "license " + word if word in ("suspended", "revoked", "expired") else word
    return "authorization refused"


def refusal_line(asic: SimulatedAsic) -> str:
    return f"demo refused: {asic.worker} ({asic.user_agent}): {asic.stats.last_refusal}"


def render(s: Snapshot, asics: list[SimulatedAsic], title: str) -> Any:
    """The live view (a rich renderable)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    head = Table.grid(padding=(0, 3))
    for _ in range(4):
        head.add_column()
    head.add_row(f"up {s.elapsed_s:.0f}s", f"chain height {s.height}",
                 f"connections {s.connections} ({s.authorized} authorized)",
                 f"pool hashrate {rate(s.hashrate)}")  # fmt: skip
    head.add_row(f"shares {s.accepted} ({s.shares_stored} stored)", f"rejects {s.rejected}",
                 f"blocks found {s.blocks_found} (credited {s.blocks_credited})",
                 f"payments {s.payments}")  # fmt: skip
    miners = Table(expand=True)
    for col in ("worker", "firmware", "state", "accepted", "rejected", "blocks", "credited BTC",
                "balance BTC", "paid BTC"):  # fmt: skip
        numeric = col in ("accepted", "rejected", "blocks") or col.endswith("BTC")
        miners.add_column(col, justify="right" if numeric else "left")
    for a in asics:
        account = a.worker.split(".")[0]
        state = a.stats.state
        if state == "refused":
            state = f"[red]refused[/red] ({_refusal_reason(a.stats.last_refusal)})"
        elif state == "mining":
            state = "[green]mining[/green]"
        miners.add_row(a.worker, a.user_agent, state, str(a.stats.accepted),
                       str(sum(a.stats.rejected.values())), str(a.stats.blocks),
                       btc(s.credited.get(account, 0)), btc(s.balances.get(account, 0)),
                       btc(s.paid.get(account, 0)))  # fmt: skip
    rejects = _reasons(s)
    txs = ", ".join(t[:16] + "…" for t in s.payment_txids[-3:]) or "-"
    refused = "".join(f"\n{refusal_line(a)}" for a in asics if a.stats.refusals)
    foot = (f"rejects by reason: {rejects}\npayment txids: {txs}{refused}\n"
            "Ctrl-C stops the demo")  # fmt: skip
    return Panel(Group(head, miners, foot), title=title)


@dataclass(frozen=True)
class WebPage:
    url: str
    account: str
    token: str


def web_line(web: WebPage) -> str:
    return f"demo: web page {web.url} — look up account {web.account} with read token {web.token}"


@dataclass
class DemoContext:
    config_path: Path
    database: str
    log_path: Path
    stratum: tuple[str, int]
    cpu: tuple[str, int]
    metrics: str | None
    web: WebPage | None = None


def _operator_commands(ctx: DemoContext) -> tuple[str, list[str]]:
    c = f"poolserver --config {ctx.config_path}"
    return "Look at the books (operator commands on the demo's database)", [
        f"{c} payouts balances       # ledger balance per miner",
        f"{c} payouts blocks         # found blocks, confirmations, allocation",
        f"{c} payouts distributions  # PPLNS credit per block and miner",
        f"{c} payouts payments       # payment outputs and txids",
        f"{c} payouts reconcile      # books against the wallet (0 difference)",
        f"{c} miners list            # the register; also: licenses, hardware, audit verify",
    ]


def _metrics(ctx: DemoContext) -> tuple[str, list[str]]:
    return "Metrics (Prometheus)", [ctx.metrics or "metrics disabled"]


def _web(ctx: DemoContext) -> tuple[str, list[str]]:
    if ctx.web is None:
        return "Web page", ["web page disabled"]
    w = ctx.web
    return "Web page (run the demo again to open it: it lives in the pool process)", [
        f"{w.url}   account {w.account}   read token {w.token}",
        f"the API: curl -H 'Authorization: Bearer {w.token}' {w.url}api/v1/accounts/"
        f"{w.account}/balance",
        f"another miner's token: poolserver --config {ctx.config_path} web token issue ACCOUNT",
    ]


SummaryHook = Callable[[DemoContext], tuple[str, list[str]]]
# Extended by later features (web page, income reports, dashboards) when they land.
SUMMARY_HOOKS: list[SummaryHook] = [_operator_commands, _metrics, _web]


def summary(s: Snapshot, asics: list[SimulatedAsic], ctx: DemoContext) -> str:
    lines = [
        "",
        f"qazpool demo stopped after {s.elapsed_s:.0f}s: {s.blocks_found} blocks found, "
        f"{s.blocks_credited} credited, {s.accepted} shares accepted, {s.rejected} rejected, "
        f"{s.payments} payments ({btc(sum(s.paid.values()))} BTC paid)",
        *(refusal_line(a) for a in asics if a.stats.refusals),
        f"Database: {ctx.database}",
        f"Config:   {ctx.config_path}   Pool log: {ctx.log_path}",
    ]
    for hook in SUMMARY_HOOKS:
        title, body = hook(ctx)
        lines += ["", title + ":", *("  " + b for b in body)]
    sh, sp = ctx.stratum
    ch, cp = ctx.cpu
    lines += [
        "", "Point a real miner at the demo while it runs (user account.worker of a registered",
        "miner, e.g. aigerim; the register refuses unknown accounts):",
        f"  ASIC port:  stratum+tcp://{sh}:{sp}  user aigerim.rig1  password x",
        f"  CPU miner (low-difficulty port): cpuminer -a sha256d -o stratum+tcp://{ch}:{cp} "
        "-u erlan.cpu1 -p x",
        "Production: poolserver --config pool.toml run (see README, Configuration).",
    ]  # fmt: skip
    return "\n".join(lines)
