"""`poolserver db upgrade|current|check`: the database schema (Alembic migrations);
`poolserver db retention`: what each table holds and how long it is kept (issue 17)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from poolserver.config import Config, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema: upgrade, show the current revision, check")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply migrations up to REVISION (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=run, action="upgrade")
    cur = dsub.add_parser("current", help="show the database's revision and the code's")
    cur.set_defaults(func=run, action="current")
    chk = dsub.add_parser(
        "check", help="exit 1 unless the schema is at the code's head and matches the models"
    )
    chk.set_defaults(func=run, action="check")
    ret = dsub.add_parser(
        "retention", help="per table: what it holds, how long it is kept, rows, oldest row"
    )
    ret.set_defaults(func=run, action="retention")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return asyncio.run(_run(config, args))


async def _run(config: Config, args: argparse.Namespace) -> int:
    from poolserver.storage import schema
    from poolserver.storage_config import create_engine_from_config

    engine = create_engine_from_config(config)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        if args.action == "upgrade":
            before = await schema.current(engine)
            after = await schema.upgrade(engine, args.revision)
            print(f"{shown}: {_fmt(before)} -> {_fmt(after)}")
            return 0
        if args.action == "retention":
            return await _retention(config, engine)
        have, need = await schema.current(engine), schema.heads()
        print(f"database: {shown}\ncurrent:  {_fmt(have)}\ncode:     {_fmt(need)}")
        if args.action == "current":
            return 0
        try:
            await schema.check_schema(engine)
        except schema.SchemaError as exc:
            print(f"FAIL: {exc}", file=sys.stderr)
            return 1
        drift = await schema.model_drift(engine)
        if drift:
            print("FAIL: the schema differs from the models:", file=sys.stderr)
            for line in drift:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("OK: schema is current")
        return 0
    except OSError as exc:
        print(f"poolserver db: cannot reach {shown}: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def _retention(config: Config, engine: object) -> int:
    from poolserver.register.timeutil import show
    from poolserver.storage.retention import retention_status
    from poolserver.storage_config import storage_settings

    settings = storage_settings(config)
    print("table\tkept\trows\toldest_utc+5\tkeep_until_utc+5\tholds")
    for r in await retention_status(  # type: ignore[arg-type]
        engine, settings.retention_days, settings.legal_retention_years
    ):
        print(f"{r.table}\t{r.kept}\t{r.rows}\t{show(r.oldest)}\t{show(r.keep_until)}\t{r.holds}")
    return 0


def _fmt(revs: tuple[str, ...]) -> str:
    return ", ".join(revs) if revs else "(empty: no schema)"
