"""`poolserver audit ...`: the hash-chained audit log of register changes.

``verify`` walks the whole chain and names the first edited or deleted entry (exit 1);
``head`` prints ``SEQ:HASH`` to record elsewhere (a report, a ticket) so that deleting the
newest entries is caught too (``verify --anchor SEQ:HASH``); ``log`` shows the entries."""

from __future__ import annotations

import argparse
import json

from poolserver.config import Config
from poolserver.register import cli_support as cs
from poolserver.register.chain import parse_anchor
from poolserver.register.repository import RegisterRepository
from poolserver.register.timeutil import show


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit log of register changes: verify, head, log")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    ver = asub.add_parser("verify", help="check the hash chain; name the first bad entry")
    ver.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a head recorded earlier (repeatable)",
    )
    ver.set_defaults(func=lambda a: cs.run(a, _verify))
    head = asub.add_parser("head", help="print SEQ:HASH of the newest entry")
    head.set_defaults(func=lambda a: cs.run(a, _head))
    log = asub.add_parser("log", help="show entries (newest last)")
    log.add_argument("--limit", type=int, default=50)
    log.set_defaults(func=lambda a: cs.run(a, _log))


async def _verify(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    anchors = [parse_anchor(a) for a in args.anchor] or [None]
    entries = [e async for e in repo.audit_entries()]
    from poolserver.register.chain import verify_chain

    for anchor in anchors:
        report = verify_chain(entries, anchor)
        if not report.ok:
            print(f"FAIL: {report.problem} ({report.checked} entries verified before it)")
            return 1
    head = f"{report.head.seq}:{report.head.hash}" if report.head else "empty"
    print(f"OK: {report.checked} entries, head {head}")
    return 0


async def _head(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    last = None
    async for e in repo.audit_entries():
        last = e
    print(f"{last.seq}:{last.hash}" if last else "0:" + "0" * 64)
    return 0


async def _log(repo: RegisterRepository, config: Config, args: argparse.Namespace) -> int:
    entries = [e async for e in repo.audit_entries()][-max(args.limit, 0) :]
    for e in entries:
        old, new = json.loads(e.old), json.loads(e.new)
        print(
            f"#{e.seq} {show(e.at)} {e.who} {e.action} {e.subject}: "
            f"{json.dumps(old, ensure_ascii=False)} -> {json.dumps(new, ensure_ascii=False)}"
        )
    return 0
