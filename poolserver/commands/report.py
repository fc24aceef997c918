"""`poolserver report ...`: the signed income reports (issue 13; reporting/ builds them).

* ``commission`` (same options): the pool's commission income per day, with the payout network
  fees it paid as an expense; ``statement --miner ACCOUNT`` (same options, also ``pdf``): one
  miner's statement with the Art. 8(4) basis.
* ``miners [--month YYYY-MM | --from DATE --to DATE] [--format csv,json,xml] [--lang kk|ru|en]
  [--out DIR] [--key FILE] [--allow-missing-rates]``: the miners' incomes report (default: the
  previous month, every format, headers in ``[reports].language``, Russian unless set) written
  with the XSD, ``manifest.json`` and the detached Ed25519 signature ``manifest.sig`` to
  ``[reports].out_dir`` (default ``<data_dir>/reports``)``/<report>_<from>_<to>``.
* ``verify DIR [--pubkey FILE]``: checks the signature and every file's hash; names the file
  that was changed. Exit 0 when intact, 1 otherwise.
* ``deadline [--deadline-day N]``: the previous month's reports are due on the N-th (default
  ``[reports].deadline_day``, the 10th) of the following month; prints and logs the
  reminder, exit 1 once overdue.
* ``keygen [--key FILE]``: a new Ed25519 signing key; the private key is written 0600 and never
  printed, the public key beside it (``FILE.pub``), its fingerprint printed.

Dates are Kazakhstan calendar dates (UTC+5). Progress goes to stderr: one line per step and,
while the report is built, one per miner done (and every ``PROGRESS_ROWS`` rows).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from poolserver import __version__
from poolserver.config import Config, load_config
from poolserver.report_deadline import KEY_NAME, check_reports_config, key_path, reports_dir
from reporting.table import PROGRESS_ROWS

log = logging.getLogger("poolserver.report")
COMMANDS = {"miners-income": "miners", "pool-commission": "commission",
            "miner-statement": "statement"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="income reports: generate, sign, verify")
    psub = p.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    m = psub.add_parser("miners", help="miners' incomes (tax office, authorized body)")
    _period_args(m)
    m.set_defaults(func=lambda a: _generate(a, "miners-income"))
    c = psub.add_parser("commission", help="the pool's commission income per day")
    _period_args(c)
    c.set_defaults(func=lambda a: _generate(a, "pool-commission"))
    st = psub.add_parser("statement", help="one miner's statement (also PDF)")
    st.add_argument("--miner", required=True, metavar="ACCOUNT", help="the miner's account")
    _period_args(st, "csv,json,xml,pdf")
    st.set_defaults(func=lambda a: _generate(a, "miner-statement"))
    dl = psub.add_parser("deadline", help="when the previous month's reports are due (logged)")
    dl.add_argument("--deadline-day", type=int, default=None,
                    help="this day of the following month (default [reports].deadline_day, 10)")
    dl.set_defaults(func=_deadline)
    v = psub.add_parser("verify", help="check a report directory's hashes and signature")
    v.add_argument("dir", metavar="DIR")
    v.add_argument("--pubkey", metavar="FILE",
                   help=f"public key (default: <data_dir>/{KEY_NAME}.pub)")
    v.set_defaults(func=_verify)
    k = psub.add_parser("keygen", help="new Ed25519 signing key (private file 0600)")
    k.add_argument("--key", metavar="FILE", help=f"private key path (default: "
                   f"<data_dir>/{KEY_NAME}); the public key goes to FILE.pub")
    k.set_defaults(func=_keygen)


def _period_args(p: argparse.ArgumentParser, formats: str = "csv,json,xml") -> None:
    p.add_argument("--month", metavar="YYYY-MM", help="calendar month (default: the previous)")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD")
    p.add_argument("--format", default=formats, help=f"comma-separated (default {formats})")
    p.add_argument("--lang", default=None, help="column headers: kk, ru or en (default "
                   "[reports].language, ru)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: "
                   "[reports].out_dir or <data_dir>/reports, then /<report>_<from>_<to>)")
    p.add_argument("--key", metavar="FILE", help=f"signing key (default [reports].key_file or "
                   f"<data_dir>/{KEY_NAME})")
    p.add_argument("--allow-missing-rates", action="store_true",
                   help="mark distributions on days without a rate instead of stopping")
    p.add_argument("--deadline-day", type=int, default=None,
                   help="filing deadline: this day of the following month (default "
                   "[reports].deadline_day, 10)")


def parse_period(args: argparse.Namespace, today: date) -> Any:
    from reporting.model import Period

    if args.month and (args.date_from or args.date_to):
        raise ValueError("--month: give either --month or --from/--to, not both")
    if args.month:
        return Period.month(args.month)
    if args.date_from or args.date_to:
        if not (args.date_from and args.date_to):
            raise ValueError("--from/--to: give both")
        days = []
        for text, field in ((args.date_from, "--from"), (args.date_to, "--to")):
            try:
                days.append(date.fromisoformat(text))
            except ValueError:
                raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None
        return Period(days[0], days[1])
    return Period.previous_month(today)


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"poolserver report {command}: {message}", file=sys.stderr)
    return code


def _generate(args: argparse.Namespace, kind: str) -> int:
    from reporting.formats import FORMATS
    from reporting.model import KZ
    from reporting.signing import VerifyError, load_key
    from reporting.table import LANGS

    command = COMMANDS[kind]
    config = load_config(args.config)
    check_reports_config(config.reports)
    if args.lang is None:
        args.lang = config.reports.language
    if args.deadline_day is None:
        args.deadline_day = config.reports.deadline_day
    try:
        args.period = parse_period(args, datetime.now(UTC).astimezone(KZ).date())
        args.formats = [f.strip() for f in args.format.split(",") if f.strip()]
        allowed = (*FORMATS, "pdf") if kind == "miner-statement" else FORMATS
        bad = [f for f in args.formats if f not in allowed]
        if bad or not args.formats:
            raise ValueError(f"--format: {','.join(bad) or '(none)'} not among "
                             f"{','.join(allowed)}")
        if args.lang not in LANGS:
            raise ValueError(f"--lang: {args.lang!r} is not one of {', '.join(LANGS)}")
        if not 1 <= args.deadline_day <= 31:
            raise ValueError(f"--deadline-day: must be 1..31, got {args.deadline_day}")
        key_file = Path(args.key) if args.key else key_path(config)
        if not key_file.exists():
            raise ValueError(f"--key: no signing key at {key_file} (create one with "
                             "`poolserver report keygen`)")
        args.private_key = load_key(key_file)
    except (ValueError, VerifyError) as exc:
        return _fail(command, str(exc))
    args.kind = kind
    who = f"_{args.miner}" if kind == "miner-statement" else ""
    args.out_dir = (Path(args.out) if args.out else
                    reports_dir(config) / f"{kind}{who}_{args.period.label}")

    async def go() -> int:
        from poolserver.storage_config import run_on_database

        return await run_on_database(config, "report", lambda e: _write(e, config, args))

    return asyncio.run(go())


class ProgressPrinter:
    """Prints a build's progress to ``out`` (stderr): after each miner while the report has at
    most ``every_rows`` rows, otherwise about once per ``every_rows`` rows; always the end."""

    def __init__(self, every_rows: int = PROGRESS_ROWS, out: TextIO | None = None) -> None:
        self.every_rows = every_rows
        self.out = out
        self.last = 0

    def __call__(self, rows_done: int, rows_total: int, miners_done: int,
                 miners_total: int) -> None:
        if (rows_total > self.every_rows and rows_done < rows_total
                and rows_done - self.last < self.every_rows):
            return
        self.last = rows_done
        print(f"report: {rows_done}/{rows_total} row(s), {miners_done}/{miners_total} "
              "miner(s) done", file=self.out or sys.stderr)


def build_files(kind: str, period: Any, data: Any, formats: list[str], lang: str,
                allow_missing_rates: bool, miner: str | None = None,
                progress: Any = None) -> tuple[dict[str, bytes], Any]:
    """The report files of one report (pure over the period's data). ``progress`` (the CLI's
    ``ProgressPrinter``) is told how far the rows are built; with it, each format rendered is
    also announced on stderr."""
    from reporting.commission import pool_commission
    from reporting.formats import render, schema_text
    from reporting.miners import miners_income
    from reporting.pdf import statement_pdf
    from reporting.statement import miner_statement

    if kind == "miner-statement":
        table = miner_statement(period, data, miner or "", allow_missing_rates, progress)
        stem = f"{kind}_{miner}_{period.label}"
    elif kind == "miners-income":
        table = miners_income(period, data, allow_missing_rates, progress)
        stem = f"{kind}_{period.label}"
    else:  # one row per day: short
        table = pool_commission(period, data, allow_missing_rates)
        stem = f"{kind}_{period.label}"
    files = {}
    for fmt in formats:
        if progress is not None:
            print(f"report: rendering {fmt} ({len(table.rows)} row(s))", file=sys.stderr)
        files[f"{stem}.{fmt}"] = (statement_pdf(table, lang) if fmt == "pdf"
                                  else render(table, fmt, lang))
    if "xml" in formats:
        files[f"{kind}.xsd"] = schema_text(kind)
    return files, table


async def _write(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.report_source import SqlReportSource
    from reporting.deadline import due_date
    from reporting.rates import MissingRates
    from reporting.signing import write_signed
    from reporting.table import ReportError

    command = COMMANDS[args.kind]
    period = args.period
    print(f"report: reading the ledger for {period.first} .. {period.last} (UTC+5)",
          file=sys.stderr)
    data = await SqlReportSource(engine).period_data(
        period, lambda step: print(f"report: {step}", file=sys.stderr))
    print(f"report: {len(data.miner_events)} miner row(s), {len(data.block_events)} block(s); "
          "building", file=sys.stderr)
    try:
        files, table = build_files(args.kind, period, data, args.formats, args.lang,
                                   args.allow_missing_rates, getattr(args, "miner", None),
                                   ProgressPrinter())
    except MissingRates as exc:
        return _fail(command, str(exc), 1)
    except ReportError as exc:
        return _fail(command, f"refused: {exc}", 1)
    params = {"report": args.kind, **({"miner": args.miner} if args.kind == "miner-statement"
                                      else {}), "period_from": period.first.isoformat(),
              "period_to": period.last.isoformat(), "formats": ",".join(args.formats),
              "lang": args.lang, "allow_missing_rates": str(args.allow_missing_rates).lower(),
              "software": f"qazpool {__version__}"}
    try:
        written = write_signed(args.out_dir, files, params, args.private_key)
    except ValueError as exc:
        return _fail(command, str(exc))
    for path in written:
        print(f"report: wrote {path}", file=sys.stderr)
    missing = dict(table.meta).get("missing_rates")
    if missing:
        print(f"report: WARNING rows marked without a rate for: {missing}", file=sys.stderr)
    due = due_date(period, args.deadline_day)
    log.info("report %s %s written to %s; due %s", args.kind, period.label, args.out_dir, due)
    print(f"report: {len(table.rows)} row(s); signed manifest in {args.out_dir}; "
          f"send by {due.isoformat()} (UTC+5)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from reporting.signing import VerifyError, load_key, verify_dir

    directory = Path(args.dir)
    if not directory.is_dir():
        return _fail("verify", f"DIR: {directory} is not a directory")
    if args.pubkey:
        pub = Path(args.pubkey)
    else:
        key = key_path(load_config(args.config))
        pub = key.with_name(key.name + ".pub")
    try:
        result = verify_dir(directory, load_key(pub))
    except FileNotFoundError:
        return _fail("verify", f"--pubkey: no public key at {pub}")
    except VerifyError as exc:
        print(f"report verify: FAILED: {exc}")
        return 1
    print(f"report verify: OK: {len(result.files)} file(s), signature valid "
          f"({result.parameters.get('report')} {result.parameters.get('period_from')} .. "
          f"{result.parameters.get('period_to')})")
    return 0


def _deadline(args: argparse.Namespace) -> int:
    """Print and log the reminder (for cron: exit 0 while in time, 1 once overdue)."""
    from reporting.deadline import deadline_stats, reminder_line

    config = load_config(args.config)
    check_reports_config(config.reports)
    day = config.reports.deadline_day if args.deadline_day is None else args.deadline_day
    try:
        stats = deadline_stats(datetime.now(UTC), day)
    except ValueError as exc:
        return _fail("deadline", f"--deadline-day: {exc}")
    line = reminder_line(stats)
    log.warning("%s", line)
    print(line)
    return 1 if stats.days_left < 0 else 0


def _keygen(args: argparse.Namespace) -> int:
    from reporting.signing import generate_key

    key = Path(args.key) if args.key else key_path(load_config(args.config))
    pub = key.with_name(key.name + ".pub")
    if key.exists():
        return _fail("keygen", f"--key: {key} already exists (never overwritten)")
    key.parent.mkdir(parents=True, exist_ok=True)
    fp = generate_key(key, pub)
    print(f"report keygen: private key {key} (0600, keep it secret), public key {pub}, "
          f"fingerprint sha256:{fp}")
    return 0
