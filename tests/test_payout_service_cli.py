"""`poolserver payouts run-once|balances|blocks|distributions` against a real database and the
embedded chain kept in the data dir (the same files a running pool uses)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from poolserver.bitcoin.wallet import DEFAULT_POOL_ADDRESS, EmbeddedWallet
from poolserver.cli import main
from poolserver.payout_leader import PayoutLeader
from poolserver.storage.engine import create_engine
from poolserver.storage.repository import SqlPaymentOutbox
from tests.payout_support import (
    ADDR,
    OTHER_MINER,
    durable_store,
    find_block,
    journal_shares,
    seed_register,
    share_plan,
    utcnow,
)


def test_payouts_commands(db_url, tmp_path, capsys):
    async def batches() -> list[Any]:
        engine = create_engine(db_url)
        try:
            return list(await SqlPaymentOutbox(engine).all_batches())
        finally:
            await engine.dispose()

    data = tmp_path / "data"
    cfg = tmp_path / "pool.toml"
    cfg.write_text(
        f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{db_url}"\n'
        '[chain]\nbits = "207fffff"\n'
        "[payouts]\nallocation_delay_s = 0.0\nmaturity_confirmations = 1\n"
    )

    async def setup() -> str:
        engine = create_engine(db_url)
        try:
            await seed_register(engine)
            await journal_shares(engine, tmp_path / "spool",
                                 share_plan(utcnow() - timedelta(minutes=10)))
            chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
            block_hash = await find_block(chain, durable_store(engine, data), "alice")
            chain.generatetoaddress(100, OTHER_MINER)  # the coinbase is spendable: depth 101
            return block_hash
        finally:
            await engine.dispose()

    block_hash = asyncio.run(setup())

    # while a live pool instance holds the payout lease, run-once refuses: one payer at a time
    async def lease(action: str) -> Any:
        engine = create_engine(db_url)
        try:
            pool = PayoutLeader(engine, 60.0, 1.0, holder="pool-host:4242:live")
            if action == "take":
                assert await pool.try_acquire()
                pool.stats.leader = False  # a leader that is not this object: nothing to release
            elif action == "release":  # the instance stops cleanly: hands the lease over
                pool.stats.leader, pool.stats.epoch = True, 1
                await pool.release()
            return await pool.holder_of()
        finally:
            await engine.dispose()

    asyncio.run(lease("take"))
    assert main(["--config", str(cfg), "payouts", "run-once"]) == 3
    err = capsys.readouterr().err
    assert "not run" in err and "pool-host:4242:live (epoch 1)" in err, err
    assert asyncio.run(batches()) == []  # nothing planned, nothing sent
    asyncio.run(lease("release"))

    assert main(["--config", str(cfg), "payouts", "run-once"]) == 0
    out = capsys.readouterr().out
    assert "allocated 1" in out and "3 credit" in out and "1 new payment batch" in out, out
    holder, epoch, expires = asyncio.run(lease("look"))
    assert holder.startswith("cli:") and epoch == 2  # it led (fenced), then handed the lease back
    assert expires < utcnow(), expires

    assert main(["--config", str(cfg), "payouts", "balances"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "account\tbalance_sats\tbalance_btc\tpayout_hold"
    balances = {ln.split("\t")[0]: int(ln.split("\t")[1]) for ln in lines[1:]}
    assert balances["alice"] == balances["bob"] == 0 and balances["@pool"] > 0

    assert main(["--config", str(cfg), "payouts", "blocks"]) == 0
    (header, row) = capsys.readouterr().out.splitlines()
    fields = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert fields["block"] == block_hash and fields["status"] == "accepted"
    assert fields["confirmations"] == "101" and len(fields["inputs_hash"]) == 64
    assert fields["found_at_utc+5"].endswith("UTC+5")

    assert main(["--config", str(cfg), "payouts", "distributions", "--status", "broadcast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [dict(zip(lines[0].split("\t"), ln.split("\t"), strict=True)) for ln in lines[1:]]
    assert {r["miner"] for r in rows} == {"alice", "bob"}
    for r in rows:
        assert r["kind"] == "distribution" and r["address"] == ADDR[r["miner"]]
        assert int(r["gross_sats"]) == int(r["fee_sats"]) + int(r["net_sats"])
        assert len(r["txid"]) == 64
    # a second run pays nobody twice
    assert main(["--config", str(cfg), "payouts", "run-once"]) == 0
    assert "0 new payment batch" in capsys.readouterr().out

    async def hold_bob() -> None:
        engine = create_engine(db_url)
        try:
            await SqlPaymentOutbox(engine).add_hold("bob", ADDR["bob"], "wallet refused: dust")
        finally:
            await engine.dispose()

    asyncio.run(hold_bob())
    assert main(["--config", str(cfg), "payouts", "balances"]) == 0
    shown = {ln.split("\t")[0]: ln.split("\t")[3] for ln in capsys.readouterr().out.splitlines()}
    assert shown["bob"] == "held (wallet refused: dust)" and shown["alice"] == "-"
    assert main(["--config", str(cfg), "payouts", "release", "bob"]) == 0
    assert "released 1 hold" in capsys.readouterr().out
    assert main(["--config", str(cfg), "payouts", "release", "bob"]) == 1
    capsys.readouterr()

    assert main(["--config", str(cfg), "payouts", "payments", "--miner", "alice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (row,) = [dict(zip(lines[0].split("\t"), ln.split("\t"), strict=True)) for ln in lines[1:]]
    assert row["fee_policy"] == "pool" and row["fee_share_sats"] == "0"
    assert row["paid_sats"] == row["amount_sats"] and int(row["tx_fee_sats"]) > 0

    # the books equal the wallet to the satoshi (the fee of the payment booked on @pool)
    assert main(["--config", str(cfg), "payouts", "reconcile"]) == 0
    out = capsys.readouterr().out
    rows = dict(ln.split("\t")[:2] for ln in out.splitlines()[1:])
    assert rows["difference"] == "0" and int(rows["ledger tx_fee"]) < 0, out

    # coins that reach the hot wallet unrecorded are a difference (exit 1) until recorded
    chain = EmbeddedChain("regtest", state_path=data / "embedded-chain.jsonl")
    chain.generatetoaddress(1, DEFAULT_POOL_ADDRESS)  # the operator tops the wallet up
    deposit = chain.blocks[chain.main[-1]].coinbase_value
    assert main(["--config", str(cfg), "payouts", "reconcile"]) == 1
    out = capsys.readouterr().out
    assert f"difference\t{deposit}\t" in out and "DIFFERENCE" in out
    assert main(["--config", str(cfg), "payouts", "deposit", str(deposit),
                 "--note", "fee float top-up"]) == 0
    capsys.readouterr()
    assert main(["--config", str(cfg), "payouts", "reconcile"]) == 0
    capsys.readouterr()

    # a withdrawal: the operator sends from the wallet, then records amount + fee
    chain.generatetoaddress(100, OTHER_MINER)
    wallet = EmbeddedWallet(chain, data / "embedded-wallet.jsonl")
    sent = asyncio.run(wallet.withdraw(OTHER_MINER, 10_000_000, "cold storage"))
    assert main(["--config", str(cfg), "payouts", "reconcile"]) == 1
    capsys.readouterr()
    assert main(["--config", str(cfg), "payouts", "withdraw", str(10_000_000 + sent.fee),
                 "--note", "to cold storage"]) == 0
    capsys.readouterr()
    assert main(["--config", str(cfg), "payouts", "reconcile"]) == 0
    capsys.readouterr()


def test_deposit_withdraw_bad_input_names_the_field(tmp_path, capsys):
    cfg = tmp_path / "pool.toml"
    cfg.write_text(f'[pool]\ndata_dir = "{tmp_path}"\n')
    for args, field in ((["deposit", "0.5", "--note", "x"], "AMOUNT_SATS"),
                        (["withdraw", "-3", "--note", "x"], "AMOUNT_SATS"),
                        (["deposit", "0", "--note", "x"], "AMOUNT_SATS"),
                        (["withdraw", "1000", "--note", " "], "--note")):
        assert main(["--config", str(cfg), "payouts", *args]) == 2
        err = capsys.readouterr().err
        assert f"payouts {args[0]}: {field}:" in err and "Traceback" not in err, err
