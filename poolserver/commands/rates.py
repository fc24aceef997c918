"""`poolserver rates import FILE`: load the operator's daily BTC→KZT rate table (CSV with the
header ``date,rate,source``; ISO dates, Kazakhstan calendar; KZT per 1 BTC as an exact decimal).
A day already stored with a different rate is refused unless ``--replace`` (a closed period's
reports must not change); `poolserver rates list` prints what is stored."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from poolserver.config import Config, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rates", help="BTC/KZT daily rates for the income reports")
    psub = p.add_subparsers(dest="rates_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="load a CSV of date,rate,source")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--replace", action="store_true",
                     help="overwrite days already stored with a different rate")
    imp.set_defaults(func=_import)
    lst = psub.add_parser("list", help="stored rates")
    lst.set_defaults(func=lambda a: _run(a, _list))


def _import(args: argparse.Namespace) -> int:
    from reporting.rates import RateError, parse_rates_csv

    try:
        text = Path(args.file).read_text(encoding="utf-8")
        args.rates = parse_rates_csv(text)
    except OSError as exc:
        print(f"poolserver rates import: FILE: cannot read {args.file}: {exc.strerror}",
              file=sys.stderr)
        return 2
    except (RateError, UnicodeDecodeError) as exc:
        print(f"poolserver rates import: {args.file}: {exc}", file=sys.stderr)
        return 2
    return _run(args, _do_import)


def _run(args: argparse.Namespace, body: Any) -> int:
    config = load_config(args.config)

    async def go() -> int:
        from poolserver.storage_config import run_on_database

        return await run_on_database(config, "rates", lambda engine: body(engine, config, args))

    return asyncio.run(go())


async def _do_import(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.report_source import RateConflict, import_rates

    try:
        added, replaced = await import_rates(engine, args.rates, replace=args.replace)
    except RateConflict as exc:
        print(f"poolserver rates import: {exc}", file=sys.stderr)
        return 1
    days = [r.day for r in args.rates]
    print(f"rates: {len(args.rates)} day(s) in {args.file} ({min(days)} .. {max(days)}): "
          f"{added} added, {replaced} replaced, {len(args.rates) - added - replaced} unchanged")
    return 0


async def _list(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from poolserver.storage.report_models import KztRate

    async with engine.connect() as conn:
        rows = (await conn.execute(select(KztRate.__table__).order_by(KztRate.day))).all()
    print("date\trate_kzt_per_btc\tsource")
    for r in rows:
        print(f"{r.day.isoformat()}\t{r.rate}\t{r.source}")
    return 0
