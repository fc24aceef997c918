"""`poolserver licenses ...`: mining licenses (Law 193-VII Art. 9): add, list, suspend for 1 to
6 months, lift a suspension, revoke, CSV import/export. Dates are Kazakhstan calendar dates."""

from __future__ import annotations

import argparse

from poolserver.config import Config
from poolserver.register import cli_support as cs
from poolserver.register.csvrows import LICENSE_SCHEMA, to_csv
from poolserver.register.licensing import LicenseState, expiry_warning
from poolserver.register.repository import RegisterRepository
from poolserver.register.timeutil import parse_date, parse_time, show

EXPORT_COLUMNS = ["account", "number", "issued_on", "subtype", "expires_on"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("licenses", help="mining licenses: add, list, suspend, revoke, import")
    lsub = p.add_subparsers(dest="licenses_command", metavar="ACTION", required=True)

    add = lsub.add_parser("add", help="register a license of a miner")
    add.add_argument("account")
    add.add_argument("number")
    add.add_argument("--issued", required=True, help="issue date YYYY-MM-DD")
    add.add_argument("--subtype", required=True, help="I (own data centre) or II")
    add.add_argument("--expires", help="first day no longer in force (default issue + 3 years)")
    cs.add_who(add)
    add.set_defaults(func=lambda a: cs.run(a, _add))

    ls = lsub.add_parser("list", help="licenses with their state now")
    ls.add_argument("--expiring", type=int, metavar="DAYS", help="only those ending within DAYS")
    ls.set_defaults(func=lambda a: cs.run(a, _list))

    sus = lsub.add_parser("suspend", help="suspend a license for 1 to 6 months (Art. 9(4))")
    sus.add_argument("number")
    length = sus.add_mutually_exclusive_group(required=True)
    length.add_argument("--months", type=int, help="1..6")
    length.add_argument("--until", help="end: YYYY-MM-DD (00:00 UTC+5) or ISO time")
    sus.add_argument("--from", dest="starts", help="start (default now); may be in the past")
    sus.add_argument("--reason", required=True)
    cs.add_who(sus)
    sus.set_defaults(func=lambda a: cs.run(a, _suspend))

    lift = lsub.add_parser("lift", help="end the current suspension early (Art. 9(6))")
    lift.add_argument("number")
    lift.add_argument("--at", help="time (default now)")
    cs.add_who(lift)
    lift.set_defaults(func=lambda a: cs.run(a, _lift))

    rev = lsub.add_parser("revoke", help="record a revocation by court (Art. 9(7))")
    rev.add_argument("number")
    rev.add_argument("--reason", required=True)
    rev.add_argument("--at", help="effective time (default now)")
    cs.add_who(rev)
    rev.set_defaults(func=lambda a: cs.run(a, _revoke))

    cs.add_csv_commands(lsub, "licenses", EXPORT_COLUMNS, lambda _: LICENSE_SCHEMA, _export)


async def _add(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    issued = parse_date(args.issued, "--issued")
    expires = parse_date(args.expires, "--expires") if args.expires else None
    lic = await repo.add_license(
        cs.who(config, args), args.account, args.number, issued, args.subtype, expires
    )
    print(
        f"license {lic.number} of {args.account}: subtype {lic.subtype.value}, in force "
        f"{lic.issued_on} .. {lic.expires_on} (exclusive, UTC+5)"
    )
    return 0


async def _list(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    snap = await repo.snapshot()
    now = snap.taken_at
    print("account\tnumber\tsubtype\tissued_on\texpires_on\tstate\twarning")
    days = [args.expiring] if args.expiring is not None else config.register.expiry_warning_days
    for account in sorted(snap.licenses):
        lics = snap.licenses[account]
        warn = expiry_warning(lics, now, days)
        for lic in sorted(lics, key=lambda lic: lic.issued_on):
            state = lic.state_at(now)
            note = ""
            if warn is not None and warn.license == lic:
                note = f"expires within {warn.threshold} days ({warn.days_left} left)"
            if args.expiring is not None and not note:
                continue
            if state is LicenseState.SUSPENDED:
                s = lic.suspension_at(now)
                note = f"until {show(s.effective_end) if s else '-'}"
            print(
                f"{account}\t{lic.number}\t{lic.subtype.value}\t{lic.issued_on}\t"
                f"{lic.expires_on}\t{state.value}\t{note}"
            )
    return 0


async def _suspend(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    starts = parse_time(args.starts, "--from") if args.starts else repo.clock()
    until = parse_time(args.until, "--until") if args.until else None
    s = await repo.suspend(
        cs.who(config, args), args.number, starts, args.reason, months=args.months, ends_at=until
    )
    print(
        f"license {args.number} suspended {show(s.starts_at)} .. {show(s.ends_at)}; the running "
        f"pool cuts off its miner within {config.register.poll_interval_s:g} s"
    )
    return 0


async def _lift(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    at = parse_time(args.at, "--at") if args.at else None
    await repo.lift_suspension(cs.who(config, args), args.number, at)
    print(f"license {args.number}: suspension lifted at {show(at or repo.clock())}")
    return 0


async def _revoke(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    at = parse_time(args.at, "--at") if args.at else repo.clock()
    await repo.revoke(cs.who(config, args), args.number, at, args.reason)
    print(f"license {args.number} revoked from {show(at)}")
    return 0


async def _export(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    snap = await repo.snapshot()
    rows = [
        [account, lic.number, lic.issued_on, lic.subtype.value, lic.expires_on]
        for account in sorted(snap.licenses)
        for lic in sorted(snap.licenses[account], key=lambda lic: lic.issued_on)
    ]
    cs.write_text(args.file, to_csv(EXPORT_COLUMNS, rows))
    return 0
