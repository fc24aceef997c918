"""`poolserver payouts ...`: the payout service by hand and what it has done.

* ``run-once``: one tick of the payout service (import fallback blocks, allocate, credit or
  reverse by the chain, pay, retention) as the payout leader: it takes the payout lease
  (every batch and send fenced by its epoch, like a pool instance's) and the per-tick lock,
  or refuses (exit 3) while a live instance leads.
* ``balances``: ledger balances per account (satoshis and BTC), and the payout hold (with the
  wallet's reason) of any miner whose output the wallet refused.
* ``payments``: one row per payment output: batch, miner, address, amount debited, the miner's
  share of the network fee (``fee_policy = "miners"``), the amount paid, the transaction's
  whole fee, txid and status.
* ``reconcile``: the books against the hot wallet, exact in satoshis (``payouts/reconcile.py``
  says what must equal what): ledger balances + immature rewards + unsent batches − unbooked
  fees = the wallet's total. Prints the breakdown; exit 0 on zero difference, 1 otherwise.
* ``deposit AMOUNT_SATS --note TEXT`` / ``withdraw AMOUNT_SATS --note TEXT``: record that the
  operator moved coins into / out of the hot wallet (a ledger entry on ``@pool``; the coins are
  moved with the wallet itself; a withdrawal's amount includes its network fee).
* ``release MINER``: lift a payout hold (after fixing its cause).
* ``list [--status S]``: one row per payment batch: status (``awaiting_approval`` for a batch the
  hot-wallet caps hold), total, outputs, why it was held, who approved it.
* ``approve BATCH`` / ``reject BATCH --reason TEXT``: an operator's decision on a held batch
  (audit log and security log, with the operator's name); an approved batch is sent by the next
  payout tick, exactly once.
* ``blocks``: found blocks with status, confirmations, reward and allocation hash.
* ``distributions``: one row per (block, miner), labelled ``distribution`` (Art. 10(4) of the
  Law on Digital Assets): gross, fee, net, address, txid(s), status.

Amounts are integer satoshis; times are shown in Kazakhstan time (UTC+5). Output is
tab-separated with a header row, so it can be piped into other tools.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
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
    pay = psub.add_parser("payments", help="payment outputs: amount, fee share, paid, txid")
    pay.add_argument("--miner", help="only this account")
    pay.set_defaults(func=lambda a: run(a, _payments))
    rec = psub.add_parser("reconcile", help="ledger + immature + in flight against the wallet")
    rec.set_defaults(func=lambda a: run(a, _reconcile))
    for name, verb in (("deposit", "into"), ("withdraw", "out of")):
        op = psub.add_parser(name, help=f"record coins the operator moved {verb} the hot wallet")
        op.add_argument("amount_sats", metavar="AMOUNT_SATS",
                        help="satoshis, a positive integer (a withdrawal includes its fee)")
        op.add_argument("--note", required=True, help="why (kept with the ledger entry)")
        op.set_defaults(func=lambda a, name=name: run_checked(a, name, _operator_entry))
    rel = psub.add_parser("release", help="lift a miner's payout hold")
    rel.add_argument("miner", metavar="MINER")
    rel.set_defaults(func=lambda a: run(a, _release))
    lst = psub.add_parser("list", help="payment batches: status, total, hold reason, approver")
    lst.add_argument("--status", help="only batches in this status (e.g. awaiting_approval)")
    lst.set_defaults(func=lambda a: run(a, _list))
    appr = psub.add_parser("approve", help="send a batch the hot-wallet caps hold")
    appr.add_argument("batch", metavar="BATCH")
    appr.add_argument("--who", help="operator name (default: --operator / [register].operator "
                      "/ $SUDO_USER / $USER)")
    appr.set_defaults(func=lambda a: run(a, _approve))
    rej = psub.add_parser("reject", help="fail a held batch and refund its miners' balances")
    rej.add_argument("batch", metavar="BATCH")
    rej.add_argument("--reason", required=True, help="why (kept in the audit log)")
    rej.add_argument("--who", help="operator name")
    rej.set_defaults(func=lambda a: run(a, _reject))


def parse_sats(text: str, field: str) -> int:
    """A positive integer amount of satoshis from the command line, or ValueError naming
    ``field`` (no decimals, no BTC: ``0.5`` is refused, write ``50000000``)."""
    value = text.strip().replace("_", "")
    if not value.isdigit():
        raise ValueError(f"{field}: {text!r} is not a whole number of satoshis "
                         "(write satoshis, e.g. 50000000 for 0.5 BTC)")
    sats = int(value)
    if sats <= 0:
        raise ValueError(f"{field}: must be > 0 satoshis, got {sats}")
    if sats > 21_000_000 * 100_000_000:
        raise ValueError(f"{field}: {sats} satoshis is more than 21 million BTC")
    return sats


def run_checked(args: argparse.Namespace, name: str, body: Body) -> int:
    """Validate the arguments before touching the database: a clear error naming the field."""
    import sys

    try:
        args.amount_sats = parse_sats(args.amount_sats, "AMOUNT_SATS")
        if not args.note.strip():
            raise ValueError("--note: must say why the coins moved")
    except ValueError as exc:
        print(f"poolserver payouts {name}: {exc}", file=sys.stderr)
        return 2
    args.operator_kind = name
    return run(args, body)


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
    from poolserver.payout_leader import default_holder, leader_from_config
    from poolserver.payout_service import PayoutService

    # The one payer: this run takes the payout lease like a pool instance does (same epoch
    # fencing of every batch and send), or refuses while a live instance leads.
    leader = leader_from_config(engine, config, holder=f"cli:{default_holder()}")
    if not await leader.try_acquire():
        held = await leader.holder_of()
        who = f"{held[0]} (epoch {held[1]}) until {show(held[2])}" if held else "another process"
        print(f"payouts run-once: not run: the payouts are led by {who}; that instance pays "
              "on its next tick (stop it, or wait for its lease to lapse, to run one here)",
              file=sys.stderr)  # fmt: skip
        return 3
    leader.start()  # renewed while the tick runs; released (handed over) at the end
    try:
        rpc = template_feed.rpc_from_config(config)
        try:
            store = found_block_store(engine, config)
            service = PayoutService(engine, config, rpc, wallet_from_config(config, rpc),
                                    found_store=store, leader=leader)  # fmt: skip
            report = await service.tick()
        finally:
            close = getattr(rpc, "close", None)
            if close is not None:
                await close()
    finally:
        await leader.release()  # also when the node config or the wallet is refused
    print(report.summary())
    if not report.locked:
        return 3
    return 1 if report.errors else 0


async def _balances(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.storage.repository import Ledger, SqlPaymentOutbox

    balances = await Ledger(engine).balances()
    holds = await SqlPaymentOutbox(engine).holds()
    _print_rows(["account", "balance_sats", "balance_btc", "payout_hold"],
                [[a, str(s), btc(s), f"held ({holds[a][1]})" if a in holds else "-"]
                 for a, s in sorted(balances.items())])  # fmt: skip
    return 0


async def _payments(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.storage.repository import SqlPaymentOutbox

    rows = []
    for b in await SqlPaymentOutbox(engine).all_batches():
        for o in b.outputs:
            if args.miner and o.miner_id != args.miner:
                continue
            rows.append([b.batch_id, o.miner_id, o.address, str(o.amount_sats), str(o.fee_sats),
                         str(o.amount_sats - o.fee_sats), b.fee_policy.value,
                         "-" if b.fee_sats is None else str(b.fee_sats), b.txid or "-",
                         b.status.value, show(b.created_at)])  # fmt: skip
    _print_rows(["batch", "miner", "address", "amount_sats", "fee_share_sats", "paid_sats",
                 "fee_policy", "tx_fee_sats", "txid", "status", "created_utc+5"], rows)
    return 0


async def _list(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.storage.repository import SqlPaymentOutbox

    rows = []
    for b in await SqlPaymentOutbox(engine).all_batches():
        if args.status and b.status.value != args.status:
            continue
        rows.append([b.batch_id, b.status.value, show(b.created_at), str(b.total_sats),
                     str(len(b.outputs)), b.txid or "-", b.hold_reason or "-",
                     b.approved_by or "-", show(b.approved_at)])  # fmt: skip
    _print_rows(["batch", "status", "created_utc+5", "total_sats", "outputs", "txid",
                 "hold_reason", "approved_by", "approved_utc+5"], rows)  # fmt: skip
    return 0


async def _decide(engine: Any, config: Config, args: argparse.Namespace, approve: bool) -> int:
    import sys

    from poolserver.payout_approval import decide
    from poolserver.register import cli_support as cs
    from poolserver.register.errors import RegisterError

    try:
        batch = await decide(engine, args.batch, cs.who(config, args), approve=approve,
                             reason=getattr(args, "reason", "") or "",
                             network=cs.network(config))  # fmt: skip
    except RegisterError as exc:
        print(f"poolserver payouts {'approve' if approve else 'reject'}: {exc}", file=sys.stderr)
        return 1
    if approve:
        print(f"batch {batch.batch_id} approved by {batch.approved_by}: {batch.total_sats} sat "
              f"to {len(batch.outputs)} output(s), sent by the next payout tick")
    else:
        print(f"batch {batch.batch_id} rejected: {len(batch.outputs)} balance(s) refunded")
    return 0


async def _approve(engine: Any, config: Config, args: argparse.Namespace) -> int:
    return await _decide(engine, config, args, True)


async def _reject(engine: Any, config: Config, args: argparse.Namespace) -> int:
    return await _decide(engine, config, args, False)


def _service(engine: Any, config: Config, rpc: Any) -> Any:
    from poolserver.bitcoin.wallet import wallet_from_config
    from poolserver.payout_service import PayoutService

    return PayoutService(engine, config, rpc, wallet_from_config(config, rpc))


async def _reconcile(engine: Any, config: Config, args: argparse.Namespace) -> int:
    """Print the books against the wallet; 0 if they agree to the satoshi, 1 if not, 3 if the
    payout service holds the lock (a tick is moving money: try again)."""
    from poolserver.bitcoin import template_feed
    from poolserver.payout_service import payout_lock

    rpc = template_feed.rpc_from_config(config)
    try:
        service = _service(engine, config, rpc)
        async with payout_lock(engine) as locked:
            if not locked:
                print("reconcile: a payout tick is running (lock held); try again")
                return 3
            result = await service.reconcile()
        await service.stop()
    finally:
        close = getattr(rpc, "close", None)
        if close is not None:
            await close()
    _print_rows(["item", "sats", "btc"], [[label, str(v), btc(v)] for label, v in result.lines()])
    if result.difference_sats:
        print(f"reconcile: DIFFERENCE {result.difference_sats} sat: the wallet "
              f"{'holds more' if result.difference_sats > 0 else 'holds less'} than the books "
              "explain (an unrecorded deposit/withdrawal?)")
        return 1
    return 0


async def _operator_entry(engine: Any, config: Config, args: argparse.Namespace) -> int:
    import secrets

    from payouts.ledger import EntryKind, operator_entry
    from poolserver.storage.repository import Ledger

    kind = EntryKind.DEPOSIT if args.operator_kind == "deposit" else EntryKind.WITHDRAWAL
    entry = operator_entry(kind, args.amount_sats, args.note,
                           f"{kind.value}:{secrets.token_hex(12)}")  # fmt: skip
    await Ledger(engine).append([entry])
    print(f"recorded {kind.value} of {args.amount_sats} sat ({btc(args.amount_sats)} BTC) on "
          f"@pool: {entry.note}")
    return 0


async def _release(engine: Any, config: Config, args: argparse.Namespace) -> int:
    from poolserver.storage.repository import SqlPaymentOutbox

    n = await SqlPaymentOutbox(engine).release_hold(args.miner)
    print(f"released {n} hold(s) of {args.miner}" if n else f"{args.miner} has no payout hold")
    return 0 if n else 1


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
