"""`poolserver demo`: the whole pool in one command. Embedded regtest chain, SQLite under
``./qazpool-demo/`` (never the production data dir), metrics, registered demo miners (one
suspended), simulated ASICs mining real shares over real Stratum connections, fast timings
(``poolserver.demo.settings``), a live view on a TTY or plain lines otherwise, and a summary at
the end (Ctrl-C or ``--duration``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

from poolserver.aio import wait_event


def register(sub: argparse._SubParsersAction) -> None:
    from poolserver.demo.settings import DEMO_DIR

    p = sub.add_parser(
        "demo",
        help="the whole pool in one command: simulated miners, blocks, "
        "credits and payments on the embedded chain (not for production)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    p.add_argument(
        "--dir",
        default=DEMO_DIR,
        metavar="DIR",
        help=f"the demo's data folder (default ./{DEMO_DIR})",
    )
    p.add_argument(
        "--stratum-port",
        type=int,
        default=3333,
        metavar="PORT",
        help="ASIC port (0 = any free port)",
    )
    p.add_argument(
        "--cpu-port",
        type=int,
        default=3334,
        metavar="PORT",
        help="low-difficulty port for a CPU miner (0 = any free port)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9108,
        metavar="PORT",
        help="Prometheus /metrics port (0 = any free port)",
    )
    p.add_argument(
        "--web-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="the pool web page and API (0 = any free port)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="delete the demo folder first (only a folder the demo made)",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="plain progress lines even on a terminal (always so without a TTY)",
    )
    p.set_defaults(func=run)  # fmt: skip


def _check_port(value: int, field: str) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"{field}: must be 0..65535, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from stratum.server import new_loop

    if args.config:
        print(
            "poolserver demo: --config is not used; the demo writes its own config into "
            f"{args.dir}/ (production: poolserver --config FILE run)",
            file=sys.stderr,
        )
        return 2
    try:
        for name in ("stratum_port", "cpu_port", "metrics_port", "web_port"):
            _check_port(getattr(args, name), "--" + name.replace("_", "-"))
        if args.duration < 0:
            raise ValueError(f"--duration: must be >= 0, got {args.duration}")
    except ValueError as exc:
        print(f"poolserver demo: {exc}", file=sys.stderr)
        return 2
    from poolserver.demo.settings import CONFIG_NAME, DemoPorts, demo_dir_problem

    data_dir = Path(args.dir).resolve()
    if args.fresh and (data_dir / CONFIG_NAME).exists():
        shutil.rmtree(data_dir)
    ports = DemoPorts(args.stratum_port, args.cpu_port, args.metrics_port, args.web_port)
    problem = demo_dir_problem(data_dir, ports)
    if problem is not None:
        print(f"poolserver demo: --dir: {problem}", file=sys.stderr)
        return 2
    from poolserver.fdlimit import raise_open_files_limit

    raise_open_files_limit()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(_demo(args))


def _log_to_file(path: Path) -> None:
    from poolserver.logs import FORMAT, KazakhstanTimeFormatter

    handler = logging.FileHandler(path)
    handler.setFormatter(KazakhstanTimeFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


async def _demo(args: argparse.Namespace) -> int:
    from poolserver.app import PoolApp
    from poolserver.config import load_config
    from poolserver.demo import view
    from poolserver.demo.asic import SimulatedAsic
    from poolserver.demo.figures import Snapshot, read_database
    from poolserver.demo.seed import MINERS, seed_register, seed_web_token
    from poolserver.demo.settings import WEB_DEMO_MINER, DemoPorts, write_demo_config
    from poolserver.register.repository import RegisterRepository
    from poolserver.register.timeutil import kz_date
    from poolserver.storage_config import open_storage_from_config

    data_dir = Path(args.dir).resolve()
    cfg_path = write_demo_config(data_dir, DemoPorts(args.stratum_port, args.cpu_port,
                                                     args.metrics_port, args.web_port))  # fmt: skip
    log_path = data_dir / "pool.log"
    _log_to_file(log_path)
    config = load_config(str(cfg_path))
    live = sys.stdout.isatty() and not args.plain
    out = print
    storage = await open_storage_from_config(config)
    try:
        repo = RegisterRepository(storage.engine, network=config.chain.network)
        from datetime import UTC, datetime

        if await seed_register(repo, kz_date(datetime.now(UTC))):
            out(f"demo: registered {len(MINERS)} demo miners (license of "
                f"{[m.account for m in MINERS if m.suspended]} suspended)", flush=True)  # fmt: skip
        web_token = await seed_web_token(storage.engine, data_dir, WEB_DEMO_MINER)
    finally:
        await storage.close()
    app = PoolApp(config)
    try:
        await app.start()
    except Exception as exc:
        print(f"poolserver demo: the pool did not start: {exc} (log: {log_path})", file=sys.stderr)
        await app.stop()
        return 1
    started = time.monotonic()
    (sh, sp), (ch, cp) = app.stratum_addresses[0], app.stratum_addresses[1]
    metrics = (f"http://{app.metrics_address[0]}:{app.metrics_address[1]}/metrics"
               if app.metrics_address else None)  # fmt: skip
    web = view.WebPage(f"http://{app.web_address[0]}:{app.web_address[1]}/", WEB_DEMO_MINER,
                       web_token) if app.web_address else None  # fmt: skip
    out(f"demo: qazpool started: stratum+tcp://{sh}:{sp} (ASICs), stratum+tcp://{ch}:{cp} "
        f"(CPU miners), metrics {metrics}, database {app.storage.url}", flush=True)  # fmt: skip
    if web is not None:
        out(view.web_line(web), flush=True)
    asics = [SimulatedAsic(sh if not m.cpu_port else ch, sp if not m.cpu_port else cp,
                           f"{m.account}.rig1", m.firmware, m.user_agent, m.sim_hashrate)
             for m in MINERS]  # fmt: skip
    tasks = [asyncio.get_running_loop().create_task(a.run()) for a in asics]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    snap = Snapshot()
    history: list[tuple[float, float]] = []  # (time, accepted difficulty so far)
    reported_refusals: set[str] = set()
    last_line = 0.0

    async def refresh() -> Snapshot:
        s = Snapshot(elapsed_s=time.monotonic() - started, height=app.rpc.height,
                     connections=app.stats.connections_current,
                     authorized=app.stats.authorized_current,
                     shares=app.stats.shares.copy())  # fmt: skip
        now = time.monotonic()
        history.append((now, float(app.stats.share_difficulty.get("accepted", 0.0))))
        while len(history) > 2 and now - history[0][0] > 15:
            history.pop(0)
        if len(history) > 1 and history[-1][0] > history[0][0]:
            s.hashrate = ((history[-1][1] - history[0][1]) * 2**32
                          / (history[-1][0] - history[0][0]))  # fmt: skip
        await read_database(app.storage.engine, s)
        return s

    def plain_progress(s: Snapshot) -> None:
        nonlocal last_line
        for a in asics:
            if a.stats.refusals and a.worker not in reported_refusals:
                reported_refusals.add(a.worker)
                out(view.refusal_line(a), flush=True)
        if s.elapsed_s - last_line >= 5 or stop.is_set():
            last_line = s.elapsed_s
            out(view.progress_line(s), flush=True)

    title = f"qazpool demo — stratum+tcp://{sh}:{sp}, database {app.storage.url}"
    if web is not None:
        title += f", page {web.url}"
    try:
        if live:
            from rich.live import Live

            with Live(view.render(snap, asics, title), refresh_per_second=4,
                      screen=False) as screen:  # fmt: skip
                while not stop.is_set():
                    snap = await refresh()
                    screen.update(view.render(snap, asics, title))
                    await _tick(stop, started, args.duration)
        else:
            while not stop.is_set():
                snap = await refresh()
                plain_progress(snap)
                await _tick(stop, started, args.duration)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if app.server is not None:  # shares still in flight: stored and answered first
            await app.server.wait_drained(5.0)
        snap = await refresh()
        if not live:
            out(view.progress_line(snap), flush=True)
        await app.stop()
    ctx = view.DemoContext(config_path=cfg_path, database=app.storage.url, log_path=log_path,
                           stratum=(sh, sp), cpu=(ch, cp), metrics=metrics,
                           web=web)  # fmt: skip
    out(view.summary(snap, asics, ctx), flush=True)
    return 0


async def _tick(stop: asyncio.Event, started: float, duration: float) -> None:
    """Wait one refresh interval, or less when the duration ends first; sets ``stop`` then."""
    wait = 1.0
    if duration > 0:
        left = duration - (time.monotonic() - started)
        if left <= 0:
            stop.set()
            return
        wait = min(wait, left)
    await wait_event(stop, wait)
