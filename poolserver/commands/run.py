"""`poolserver run`: start the pool (embedded regtest chain when no node is set) until SIGINT or
SIGTERM, then shut down gracefully (client.reconnect, drain shares, flush the journal)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from poolserver.config import load_config
from poolserver.logs import configure_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pool (embedded regtest chain when no node is set)")
    p.set_defaults(func=run)


async def serve(config_path: str | None) -> int:
    from poolserver.app import PoolApp

    config = load_config(config_path)
    app = PoolApp(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except Exception as exc:
        logging.getLogger("poolserver").error("startup failed: %s", exc)
        await app.stop()
        return 1
    await stop.wait()
    logging.getLogger("poolserver").info("signal received, shutting down")
    await app.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.pool.log_level, config.pool.log_format)
    from poolserver.fdlimit import check_open_files_limit

    check_open_files_limit(config.stratum.max_connections_per_ip)
    from stratum.server import new_loop

    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(serve(args.config))
