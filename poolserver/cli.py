"""The `poolserver` command. Subcommands live in poolserver/commands/, one module each."""

from __future__ import annotations

import argparse
import importlib
import sys

from poolserver import __version__

# Subcommand modules, in help order. Each has register(subparsers).
COMMANDS = [
    "run",
    "demo",
    "selfcheck",
    "db",
    "miners",
    "licenses",
    "hardware",
    "audit",
    "payouts",
    "rates",
    "report",
    "backup",
    "service",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolserver", description="qazpool: a Bitcoin mining pool server (Stratum V1)"
    )
    parser.add_argument("--version", action="version", version=f"qazpool {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config (default: embedded defaults)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"poolserver.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from poolserver.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"poolserver: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
