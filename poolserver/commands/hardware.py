"""`poolserver hardware ...`: the register of mining machines (add, list, remove, CSV
import/export) and the capacity check against an observed hashrate."""

from __future__ import annotations

import argparse

from poolserver.config import Config
from poolserver.register import cli_support as cs
from poolserver.register.csvrows import (
    HARDWARE_SCHEMA,
    HardwareRow,
    positive_int,
    to_csv,
)
from poolserver.register.hardware import (
    capacity_check,
    format_hashrate,
    parse_hashrate,
    registered_capacity,
)
from poolserver.register.repository import RegisterRepository
from poolserver.register.timeutil import parse_date

EXPORT_COLUMNS = list(HARDWARE_SCHEMA.columns)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hardware", help="machine register: add, list, remove, import, capacity")
    hsub = p.add_subparsers(dest="hardware_command", metavar="ACTION", required=True)

    add = hsub.add_parser("add", help="register a machine (serials are unique across miners)")
    add.add_argument("serial")
    add.add_argument("--account", required=True, help="owner miner's account")
    add.add_argument("--manufacturer", required=True)
    add.add_argument("--model", required=True)
    add.add_argument("--hashrate", required=True, help="rated hashrate, e.g. 200T or 110 TH/s")
    add.add_argument("--power", required=True, help="rated power in watts")
    add.add_argument("--data-centre", required=True)
    add.add_argument("--registry-number", default="")
    add.add_argument("--registry-date", help="YYYY-MM-DD")
    cs.add_who(add)
    add.set_defaults(func=lambda a: cs.run(a, _add))

    ls = hsub.add_parser("list", help="registered machines")
    ls.add_argument("--account")
    ls.set_defaults(func=lambda a: cs.run(a, _list))

    rm = hsub.add_parser("remove", help="remove a machine from the register")
    rm.add_argument("serial")
    cs.add_who(rm)
    rm.set_defaults(func=lambda a: cs.run(a, _remove))

    cap = hsub.add_parser("capacity", help="compare an observed hashrate with the register")
    cap.add_argument("account")
    cap.add_argument("--observed", required=True, help="observed hashrate, e.g. 250T")
    cap.set_defaults(func=lambda a: cs.run(a, _capacity))

    cs.add_csv_commands(hsub, "machines", EXPORT_COLUMNS, lambda _: HARDWARE_SCHEMA, _export)


async def _add(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    row = HardwareRow(
        serial=args.serial,
        manufacturer=args.manufacturer,
        model=args.model,
        rated_hashrate=parse_hashrate(args.hashrate, "--hashrate"),
        power_w=positive_int(args.power, "--power"),
        account=args.account,
        data_centre=args.data_centre,
        registry_number=args.registry_number,
        registry_date=parse_date(args.registry_date, "--registry-date")
        if args.registry_date
        else None,
    )
    m = await repo.add_machine(cs.who(config, args), row)
    print(
        f"machine {m.serial} ({m.manufacturer} {m.model}, {format_hashrate(m.rated_hashrate)}) "
        f"registered to {m.owner}"
    )
    return 0


async def _list(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    print("serial\taccount\tmanufacturer\tmodel\trated\tpower_w\tdata_centre\tregistry")
    for m in await repo.machines(args.account):
        reg = f"{m.registry_number} {m.registry_date or ''}".strip() or "-"
        print(
            f"{m.serial}\t{m.owner}\t{m.manufacturer}\t{m.model}\t"
            f"{format_hashrate(m.rated_hashrate)}\t{m.power_w}\t{m.data_centre}\t{reg}"
        )
    return 0


async def _remove(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    await repo.remove_machine(cs.who(config, args), args.serial)
    print(f"machine {args.serial} removed")
    return 0


async def _capacity(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    observed = parse_hashrate(args.observed, "--observed")
    machines = await repo.machines(args.account)
    finding = capacity_check(args.account, machines, observed, config.register.capacity_limit_pct)
    if finding is None:
        cap = registered_capacity(machines, args.account)
        print(
            f"{args.account}: observed {format_hashrate(observed)} within "
            f"{config.register.capacity_limit_pct} % of {format_hashrate(cap)}"
        )
        return 0
    print(f"{finding.finding.value}: {finding.detail}")
    return 1


async def _export(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    rows = [
        [
            m.serial,
            m.manufacturer,
            m.model,
            m.rated_hashrate,
            m.power_w,
            m.owner,
            m.data_centre,
            m.registry_number,
            m.registry_date,
        ]
        for m in await repo.machines()
    ]
    cs.write_text(args.file, to_csv(EXPORT_COLUMNS, rows))
    return 0
