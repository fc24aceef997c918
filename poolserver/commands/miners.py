"""`poolserver miners ...`: the miner register (add, list, show, payout address, fee rates,
CSV import with a per-row error report, CSV export). Times are shown in Kazakhstan time."""

from __future__ import annotations

import argparse
from datetime import datetime
from decimal import Decimal

from poolserver.config import Config
from poolserver.register import cli_support as cs
from poolserver.register.csvrows import miner_schema, to_csv
from poolserver.register.history import format_fee, parse_fee_percent
from poolserver.register.repository import RegisterRepository
from poolserver.register.timeutil import parse_time, show

EXPORT_COLUMNS = ["account", "legal_name", "iin_bin", "contact", "payout_address", "fee_percent"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("miners", help="miner register: add, list, addresses, fees, import/export")
    msub = p.add_subparsers(dest="miners_command", metavar="ACTION", required=True)

    add = msub.add_parser("add", help="register a licensed miner")
    add.add_argument("account", help="Stratum account name")
    add.add_argument("--name", required=True, help="legal name")
    add.add_argument("--iin-bin", required=True, help="12-digit IIN/BIN")
    add.add_argument("--contact", default="")
    add.add_argument("--payout-address")
    add.add_argument("--fee", metavar="PERCENT", help="the miner's own pool fee, e.g. 1.5")
    cs.add_who(add)
    add.set_defaults(func=lambda a: cs.run(a, _add))

    ls = msub.add_parser("list", help="list miners with their license state now")
    ls.set_defaults(func=lambda a: cs.run(a, _list))

    show_p = msub.add_parser("show", help="one miner: licenses, suspensions, address, fee")
    show_p.add_argument("account")
    show_p.set_defaults(func=lambda a: cs.run(a, _show))

    addr = msub.add_parser("set-address", help="new payout address from a time on (dated)")
    addr.add_argument("account")
    addr.add_argument("address")
    addr.add_argument("--from", dest="effective_from", help="YYYY-MM-DD (UTC+5) or ISO time")
    cs.add_who(addr)
    addr.set_defaults(func=lambda a: cs.run(a, _set_address))

    fee = msub.add_parser("set-fee", help="a miner's own pool fee from a time on (dated)")
    fee.add_argument("account")
    fee.add_argument("percent")
    fee.add_argument("--from", dest="effective_from")
    cs.add_who(fee)
    fee.set_defaults(func=lambda a: cs.run(a, _set_fee))

    pool_fee = msub.add_parser("pool-fee", help="the pool-wide fee from a time on (dated)")
    pool_fee.add_argument("percent")
    pool_fee.add_argument("--from", dest="effective_from")
    pool_fee.add_argument("--note", default="")
    cs.add_who(pool_fee)
    pool_fee.set_defaults(func=lambda a: cs.run(a, _pool_fee))

    cs.add_csv_commands(msub, "miners", EXPORT_COLUMNS, miner_schema, _export)


def _when(text: str | None) -> datetime | None:
    return parse_time(text, "--from") if text else None


async def _add(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    who = cs.who(config, args)
    fee = parse_fee_percent(args.fee, "--fee") if args.fee is not None else None
    if args.payout_address:  # check before anything is written
        from poolserver.register.address import validate_address

        validate_address(args.payout_address, repo.network, "--payout-address")
    info = await repo.add_miner(who, args.account, args.name, args.iin_bin, args.contact)
    if args.payout_address:
        await repo.set_payout_address(who, info.account, args.payout_address)
    if fee is not None:
        await repo.set_miner_fee(who, info.account, fee)
    print(f"miner {info.account} registered ({info.kind} {info.iin_bin})")
    return 0


async def _list(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    snap = await repo.snapshot()
    now = snap.taken_at
    print("account\tkind\tiin_bin\tlicense\tstate\tlegal_name")
    for account in sorted(snap.miners):
        m = snap.miners[account]
        st = snap.status(account, now)
        number = st.license.number if st.license else "-"
        print(f"{account}\t{m.kind}\t{m.iin_bin}\t{number}\t{st.state.value}\t{m.legal_name}")
    return 0


async def _show(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    info = await repo.get_miner(args.account)
    if info is None:
        from poolserver.register.errors import NotFound

        raise NotFound("account", f"no miner with account {args.account[:64]}")
    now = repo.clock()
    lics = await repo.licenses_of(info.account)
    print(f"account:        {info.account}")
    print(f"legal name:     {info.legal_name}")
    print(f"{info.kind}:            {info.iin_bin}")
    print(f"contact:        {info.contact or '-'}")
    print(f"registered:     {show(info.created_at)}")
    print(f"payout address: {await repo.payout_address_at(info.account, now) or '-'}")
    fee = await repo.fee_at(info.account, now)
    print(f"fee now:        {format_fee(fee) if fee is not None else '-'}")
    for lic in lics:
        state = lic.state_at(now).value
        print(
            f"license {lic.number}: subtype {lic.subtype.value}, issued {lic.issued_on}, "
            f"in force until {lic.expires_on} (exclusive, UTC+5), now {state}"
        )
        for s in lic.suspensions:
            lifted = f", lifted {show(s.lifted_at)}" if s.lifted_at else ""
            print(f"  suspended {show(s.starts_at)} .. {show(s.ends_at)}{lifted}: {s.reason}")
        if lic.revoked_at:
            print(f"  revoked {show(lic.revoked_at)}: {lic.revocation_reason}")
    return 0


async def _set_address(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    when = _when(args.effective_from)
    addr = await repo.set_payout_address(cs.who(config, args), args.account, args.address, when)
    print(f"{args.account}: payout address {addr} from {show(when or repo.clock())}")
    return 0


async def _set_fee(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    bps = parse_fee_percent(args.percent, "percent")
    when = _when(args.effective_from)
    await repo.set_miner_fee(cs.who(config, args), args.account, bps, when)
    print(f"{args.account}: fee {format_fee(bps)} from {show(when or repo.clock())}")
    return 0


async def _pool_fee(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    bps = parse_fee_percent(args.percent, "percent")
    when = _when(args.effective_from)
    await repo.set_pool_fee(cs.who(config, args), bps, when, args.note)
    print(f"pool fee {format_fee(bps)} from {show(when or repo.clock())}")
    return 0


async def _export(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    now = repo.clock()
    rows = []
    for m in await repo.miners():
        own_fee = await repo.own_fee_at(m.account, now)
        rows.append(
            [
                m.account,
                m.legal_name,
                m.iin_bin,
                m.contact,
                await repo.payout_address_at(m.account, now),
                None if own_fee is None else f"{Decimal(own_fee) / 100:.2f}",
            ]
        )
    cs.write_text(args.file, to_csv(EXPORT_COLUMNS, rows))
    return 0
