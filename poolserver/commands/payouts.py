"""`poolserver payouts ...`: the payout service by hand and what it has done.

* ``run-once``: one tick of the payout service (import fallback blocks, allocate, credit or
  reverse by the chain, pay, retention), under the same lock as the running pool's.
* ``balances``: ledger balances per account (satoshis and BTC).
* ``blocks``: found blocks with status, confirmations, reward and allocation hash.
* ``distributions``: one row per (block, miner), labelled ``distribution`` (Art. 10(4) of the
  Law on Digital Assets): gross, fee, net, address, txid(s), status.

Amounts are integer satoshis; times are shown in Kazakhstan time (UTC+5). Output is
tab-separated with a header row, so it can be piped into other tools.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from poolserver.config import Config, load_config
from poolserver.register.timeutil import show

Body = Callable[[Any, Config, argparse.Namespace], Awaitable[int]]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("payouts", help="payouts: run one tick, balances, blocks, distributions")
    psub = p.add_subparsers(dest="payouts_command", metavar="ACTION", required=True)
    once = psub.add_parser("run-once", help="one payout tick: allocate, credit, pay, roll up")
    once.set_defaults(func=lambda a: run(a, _run_once))
    bal = psub.add_parser("balances", help="ledger balance of every account")
    bal.set_defaults(func=lambda a: run(a, _balances))
    blk = psub.add_parser("blocks", help="found blocks: status, confirmations, allocation hash")
    blk.set_defaults(func=lambda a: run(a, _blocks))
    dist = psub.add_parser("distributions", help="per block and miner: gross, fee, net, txid")
    dist.add_argument("--miner", help="only this account")
    dist.add_argument("--status", help="only rows in this status (e.g. confirmed)")
    dist.set_defaults(func=lambda a: run(a, _distributions))


def run(args: argparse.Namespace, body: Body) -> int:
    config = load_config(args.config)
    return asyncio.run(_run(config, args, body))


async def _run(config: Config, args: argparse.Namespace, body: Body) -> int:
    from poolserver.storage_config import run_on_database

    return await run_on_database(config, "payouts", lambda engine: body(engine, config, args))


def btc(sats: int) -> str:
    return f"{Decimal(sats) / 100_000_000:.8f}"


def _print_rows(header: list[str], rows: list[list[str]]) -> None:
    print("\t".join(header))
    for r in rows:
        print("\t".join(r))


async def _run_once(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.bitcoin import template_feed
    from poolserver.bitcoin.found_blocks import found_block_store
    from poolserver.bitcoin.wallet import wallet_from_config
    from poolserver.payout_service import PayoutService

    rpc = template_feed.rpc_from_config(config)
    try:
        store = found_block_store(engine, config)
        service = PayoutService(engine, config, rpc, wallet_from_config(config, rpc),
                                found_store=store)  # fmt: skip
        report = await service.tick()
    finally:
        close = getattr(rpc, "close", None)
        if close is not None:
            await close()
    print(report.summary())
    if not report.locked:
        return 3
    return 1 if report.errors else 0


async def _balances(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.storage.repository import Ledger

    balances = await Ledger(engine).balances()
    _print_rows(["account", "balance_sats", "balance_btc"],
                [[a, str(s), btc(s)] for a, s in sorted(balances.items())])  # fmt: skip
    return 0


async def _blocks(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from poolserver.storage.models import BlockAllocation, FoundBlock

    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(FoundBlock.height, FoundBlock.block_hash, FoundBlock.status,
                   FoundBlock.confirmations, FoundBlock.coinbase_value, FoundBlock.account,
                   FoundBlock.found_at, BlockAllocation.inputs_hash, BlockAllocation.policy)
            .outerjoin(BlockAllocation, BlockAllocation.block_id == FoundBlock.id)
            .order_by(FoundBlock.height, FoundBlock.id))).all()  # fmt: skip
    _print_rows(
        ["height", "block", "status", "confirmations", "reward_sats", "finder",
         "found_at_utc+5", "allocation", "inputs_hash"],
        [[str(r.height), r.block_hash, r.status, str(r.confirmations), str(r.coinbase_value),
          r.account, show(r.found_at), r.policy or "-", r.inputs_hash or "-"]
         for r in rows],
    )  # fmt: skip
    return 0


async def _distributions(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from payouts.payments import distribution_rows
    from poolserver.storage.repository import Allocations, Ledger, SqlPaymentOutbox

    rows = distribution_rows(await Allocations(engine).all(), await Ledger(engine).entries(),
                             await SqlPaymentOutbox(engine).all_batches())  # fmt: skip
    out = []
    for r in rows:
        if args.miner and r.miner_id != args.miner:
            continue
        if args.status and r.status.value != args.status:
            continue
        out.append([r.kind, r.miner_id, str(r.height), r.block_hash, str(r.gross_sats),
                    str(r.fee_sats), str(r.net_sats), r.address or "-",
                    ",".join(r.txids) or "-", r.status.value, show(r.found_at)])  # fmt: skip
    _print_rows(["kind", "miner", "height", "block", "gross_sats", "fee_sats", "net_sats",
                 "address", "txid", "status", "found_at_utc+5"], out)  # fmt: skip
    return 0
