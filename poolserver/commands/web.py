"""`poolserver web ...`: read tokens for the web page and API (issue 16).

* ``token issue ACCOUNT [--note TEXT]``: a new read token for a registered miner's account,
  printed once (only its SHA-256 is stored); give it to the miner with the page's address.
* ``token revoke ACCOUNT [--id N]``: revoke the account's live tokens (or one of them).
* ``token list [ACCOUNT]``: tokens with their prefix, note, issue and revocation times.
* ``regulator-token``: a new regulator token and the ``[web] regulator_token_sha256`` line to
  put in the config (the token itself is never stored by the pool).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from poolserver.config import load_config
from poolserver.register.timeutil import show


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="web page and API: miners' read tokens, regulator token")
    wsub = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    tok = wsub.add_parser("token", help="miners' read tokens: issue, revoke, list")
    tsub = tok.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = tsub.add_parser("issue", help="a new read token for a registered miner's account")
    issue.add_argument("account", metavar="ACCOUNT")
    issue.add_argument("--note", default="", help="whom it was given to (shown by list)")
    issue.set_defaults(func=lambda a: _run(a, _issue))
    revoke = tsub.add_parser("revoke", help="revoke an account's read tokens")
    revoke.add_argument("account", metavar="ACCOUNT")
    revoke.add_argument("--id", type=int, help="only this token (see list)")
    revoke.set_defaults(func=lambda a: _run(a, _revoke))
    ls = tsub.add_parser("list", help="read tokens (prefix, note, issued, revoked)")
    ls.add_argument("account", metavar="ACCOUNT", nargs="?")
    ls.set_defaults(func=lambda a: _run(a, _list))
    reg = wsub.add_parser("regulator-token", help="a new regulator token and its config line")
    reg.set_defaults(func=_regulator)


def _run(args: argparse.Namespace, body: Any) -> int:
    from poolserver.storage_config import run_on_database

    config = load_config(args.config)
    return asyncio.run(run_on_database(config, "web", lambda engine: body(engine, config, args)))


async def _issue(engine: Any, config: Any, args: argparse.Namespace) -> int:
    from poolserver.register.repository import RegisterRepository
    from poolserver.web.params import ParamError, account
    from poolserver.web.tokens import WebTokens

    try:
        name = account(args.account)
    except ParamError as exc:
        print(f"poolserver web token issue: ACCOUNT {args.account!r}: {exc.reason}",
              file=sys.stderr)  # fmt: skip
        return 2
    repo = RegisterRepository(engine, network=config.register.network or config.chain.network)
    if await repo.get_miner(name) is None:
        print(f"poolserver web token issue: ACCOUNT {name!r} is not in the miner register "
              "(poolserver miners list)", file=sys.stderr)  # fmt: skip
        return 2
    token = await WebTokens(engine).issue(name, args.note)
    print(f"read token for {name} (shown once; only its hash is stored):\n{token}")
    print(
        f"the miner opens the pool page (e.g. http://{config.web.host}:{config.web.port}/ "
        "behind your TLS proxy) and enters the account and this token"
    )
    return 0


async def _revoke(engine: Any, config: Any, args: argparse.Namespace) -> int:
    from poolserver.web.tokens import WebTokens

    n = await WebTokens(engine).revoke(args.account, args.id)
    print(
        f"revoked {n} token(s) of {args.account}"
        if n
        else f"{args.account} has no live token{'' if args.id is None else f' with id {args.id}'}"
    )
    return 0 if n else 1


async def _list(engine: Any, config: Any, args: argparse.Namespace) -> int:
    from poolserver.web.tokens import WebTokens

    print("id\taccount\tprefix\tnote\tissued_utc+5\trevoked_utc+5")
    for t in await WebTokens(engine).list(args.account):
        print(
            f"{t.id}\t{t.account}\t{t.prefix}…\t{t.note or '-'}\t{show(t.created_at)}\t"
            f"{show(t.revoked_at) if t.revoked_at else '-'}"
        )
    return 0


def _regulator(args: argparse.Namespace) -> int:
    from poolserver.web.tokens import REGULATOR_PREFIX, new_token, token_hash

    token = new_token(REGULATOR_PREFIX)
    print(f"regulator token (give it to the authorized body; it is not stored):\n{token}\n")
    print("put this line in the [web] section of the pool's config and restart the pool:")
    print(f'regulator_token_sha256 = "{token_hash(token)}"')
    return 0
