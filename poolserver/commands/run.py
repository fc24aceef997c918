"""`poolserver run`: start the pool. Until the Stratum server lands this runs the hash-core
self-check and says so; the node/Stratum issues replace the body with the real pool."""

from __future__ import annotations

import argparse

from poolserver.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pool (embedded regtest chain when no node is set)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    load_config(args.config)
    from poolserver.commands.selfcheck import selfcheck

    ok, line = selfcheck()
    print(line)
    print("The Stratum server is not wired in yet; `poolserver run` only self-checks the core.")
    return 0 if ok else 1
