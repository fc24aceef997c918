"""`poolserver security-log ...`: the hash-chained security event log (issue 17).

``export --from DATE --to DATE [--format csv|json] [--out FILE]``: the events of those
Kazakhstan days (inclusive) for the accreditation file; ``verify [--anchor SEQ:HASH]``: walk the
whole chain and name the first edited or deleted event (exit 1); ``head``: ``SEQ:HASH`` of the
newest event, to record elsewhere so deleting the newest events is caught too."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from poolserver.config import Config, load_config
from poolserver.register.chain import parse_anchor
from poolserver.register.errors import RegisterError
from poolserver.register.timeutil import parse_date


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("security-log", help="security event log: export, verify, head")
    ssub = p.add_subparsers(dest="security_log_command", metavar="ACTION", required=True)
    exp = ssub.add_parser("export", help="events of a date range (UTC+5 days) as CSV or JSON")
    exp.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    exp.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    exp.set_defaults(func=lambda a: run(a, _export))
    ver = ssub.add_parser("verify", help="check the hash chain; name the first bad event")
    ver.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a head recorded earlier (repeatable)",
    )
    ver.set_defaults(func=lambda a: run(a, _verify))
    head = ssub.add_parser("head", help="print SEQ:HASH of the newest event")
    head.set_defaults(func=lambda a: run(a, _head))


def run(args: argparse.Namespace, body: Any) -> int:
    config = load_config(args.config)
    return asyncio.run(_run(config, args, body))


async def _run(config: Config, args: argparse.Namespace, body: Any) -> int:
    from poolserver.security.log import SecurityLog
    from poolserver.storage_config import run_on_database

    async def on_db(engine: Any) -> int:
        try:
            return int(await body(SecurityLog(engine), args))
        except (RegisterError, ValueError) as exc:
            print(f"poolserver security-log: {exc}", file=sys.stderr)
            return 2

    return await run_on_database(config, "security-log", on_db)


async def _export(seclog: Any, args: argparse.Namespace) -> int:
    from pathlib import Path

    from poolserver.security import export

    first = parse_date(args.date_from, "--from")
    last = parse_date(args.date_to, "--to")
    start, end = export.day_range(first, last)
    entries = await seclog.between(start, end)
    text = export.to_csv(entries) if args.format == "csv" else export.to_json(entries, first, last)
    if args.out and args.out != "-":
        Path(args.out).write_text(text, encoding="utf-8", newline="")
        print(f"{len(entries)} event(s) written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def _verify(seclog: Any, args: argparse.Namespace) -> int:
    anchors = [parse_anchor(a) for a in args.anchor] or [None]
    for anchor in anchors:
        report = await seclog.verify(anchor)
        if not report.ok:
            print(f"FAIL: {report.problem} ({report.checked} events verified before it)")
            return 1
    head = f"{report.head.seq}:{report.head.hash}" if report.head else "empty"
    print(f"OK: {report.checked} events, head {head}")
    return 0


async def _head(seclog: Any, args: argparse.Namespace) -> int:
    last = await seclog.head()
    print(f"{last.seq}:{last.hash}" if last else "0:" + "0" * 64)
    return 0
