"""Shared plumbing of the register's operator commands (miners, licenses, hardware, audit):
open the configured database, check its schema, run one async body, and turn refusals into a
one-line message naming the field (exit 1) instead of a traceback."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from poolserver.config import Config, load_config
from poolserver.register.csvrows import Parsed, Schema, parse_csv
from poolserver.register.errors import RegisterError
from poolserver.register.repository import RegisterRepository

Body = Callable[[RegisterRepository, Config, argparse.Namespace], Awaitable[int]]


def add_who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--who", help="operator name for the audit log ([register].operator / OS user)")


def who(config: Config, args: argparse.Namespace) -> str:
    """The operator: ``--who``, global ``--operator``, ``[register].operator``, then the OS user
    the CLI resolved ($SUDO_USER / $USER)."""
    return (
        getattr(args, "who", None)
        or getattr(args, "operator", None)
        or config.register.operator
        or getattr(args, "os_user", None)
        or getpass.getuser()
    )


def network(config: Config) -> str:
    return config.register.network or config.chain.network


def run(args: argparse.Namespace, body: Body) -> int:
    config = load_config(args.config)
    return asyncio.run(_run(config, args, body))


async def _run(config: Config, args: argparse.Namespace, body: Body) -> int:
    from poolserver.storage_config import run_on_database

    async def on_register(engine: Any) -> int:
        repo = RegisterRepository(engine, network=network(config))
        try:
            return await body(repo, config, args)
        except RegisterError as exc:
            print(f"poolserver: {exc}", file=sys.stderr)
            return 1

    return await run_on_database(config, args.command, on_register)


def read_text(path: str) -> str:
    """A CSV file's text ('-' = stdin); UTF-8 with or without BOM."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RegisterError("file", f"{path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise RegisterError("file", f"{path} is not UTF-8 text (byte {exc.start})") from None


def write_text(path: str | None, data: str) -> None:
    if not path or path == "-":
        sys.stdout.write(data)
    else:
        Path(path).write_text(data, encoding="utf-8")


def add_import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="CSV file with a header row ('-' = stdin)")
    p.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
    p.add_argument("--strict", action="store_true", help="write nothing if any row is refused")
    add_who(p)


def add_csv_commands(
    sub: argparse._SubParsersAction,
    noun: str,
    columns: Sequence[str],
    schema: Callable[[str], Schema[Any]],
    export: Body,
) -> None:
    """A register command's ``import`` and ``export`` actions: import checks the CSV's rows
    against ``schema(network)`` and writes the valid ones; export writes the import format."""
    imp = sub.add_parser("import", help=f"import {noun} from CSV ({', '.join(columns)})")
    add_import_args(imp)

    async def import_csv(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
        parsed = parse_csv(read_text(args.file), schema(repo.network))
        return await do_import(repo, config, args, parsed)

    imp.set_defaults(func=lambda a: run(a, import_csv))
    exp = sub.add_parser("export", help=f"export {noun} as CSV (the import format)")
    exp.add_argument("file", nargs="?", help="output file (default: stdout)")
    exp.set_defaults(func=lambda a: run(a, export))


async def do_import(
    repo: RegisterRepository, config: Config, args: argparse.Namespace, parsed: Parsed[Any]
) -> int:
    report = await repo.import_rows(
        who(config, args), parsed, dry_run=args.dry_run, strict=args.strict
    )
    for err in sorted(report.errors, key=lambda e: e.row):
        print(f"row {err.row}\t{err.field}\t{err.reason}")
    verb = "would import" if args.dry_run else "imported"
    if args.strict and report.errors and not args.dry_run:
        print(f"nothing imported (--strict): {len(report.errors)} error(s)", file=sys.stderr)
        return 1
    print(f"{verb} {len(report.applied)} row(s); {len(report.errors)} error(s)", file=sys.stderr)
    return 1 if report.errors else 0
