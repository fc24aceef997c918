"""The `poolserver` command. Subcommands live in poolserver/commands/, one module each."""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
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
    "probe",
    "security_log",
    "web",
    "security-suite",
    "backup",
    "service",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolserver", description="qazpool: a Bitcoin mining pool server (Stratum V1)"
    )
    parser.add_argument("--version", action="version", version=f"qazpool {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config (default: embedded defaults)")
    parser.add_argument(
        "--operator",
        metavar="NAME",
        help="who runs this, for the audit and security logs (default: [register].operator, "
        "else $SUDO_USER, else $USER)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"poolserver.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from poolserver.config import ConfigError

    # The operator's name, resolved once here and passed down in args (modules never read the
    # environment): --who on a command, then --operator, then [register].operator, then this.
    args.os_user = os.environ.get("SUDO_USER") or os.environ.get("USER") or getpass.getuser()
    try:
        rc = int(args.func(args) or 0)
        _record_cli_action(args, sys.argv[1:] if argv is None else argv, rc)
        return rc
    except ConfigError as exc:
        print(f"poolserver: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _record_cli_action(args: argparse.Namespace, argv: list[str], rc: int) -> None:
    """Mutating subcommands go into the security log with the operator's name."""
    from poolserver.security import cli_actions

    if not cli_actions.is_mutating(args):
        return
    from poolserver.config import load_config
    from poolserver.register.cli_support import who

    operator = who(load_config(args.config), args)
    if getattr(args, "command", "") == "restore" and getattr(args, "into", None):
        # `restore --into DIR`: the event belongs to the restored database
        from poolserver.commands.backup import record_restore

        record_restore(args, operator, argv, rc)
        return
    cli_actions.record(args.config, operator, args, argv, rc)


if __name__ == "__main__":
    sys.exit(main())
