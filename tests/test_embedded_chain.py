"""The embedded chain: bitcoind-regtest shapes, blocks built by the pool's jobs and hash core
accepted, each broken variant refused with bitcoind's reason string, halving and maturity."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import replace

import pytest

from poolserver.bitcoin.embedded_chain import (
    DIFF1,
    EmbeddedChain,
    EmbeddedChainError,
    bits_for_shares,
    subsidy,
)
from poolserver.bitcoin.node import RpcError, RpcMethodNotFound
from stratum.address import address_to_script
from stratum.difficulty import target_from_nbits
from stratum.hashcore import header_hash, sha256d
from stratum.jobs import JobBuilder, assemble_block, coinbase_tx
from stratum.merkle import fold_branch
from stratum.template import parse_template
from tests.conftest import load_fixture

ADDR = "bcrt1qevygvgrhdgvkfdh7gzw2a9xzlcdjzdgqn2gwua"
SCRIPT = address_to_script(ADDR, "regtest")
EN1 = bytes.fromhex("f000000d")
EN2 = bytes.fromhex("0000000000000001")
NOW = 1_795_520_202.0


def _chain(**kw) -> EmbeddedChain:
    kw.setdefault("clock", lambda: NOW)
    return EmbeddedChain("regtest", **kw)


def _job(chain: EmbeddedChain, builder: JobBuilder | None = None, **template_changes):
    template = parse_template(chain.getblocktemplate(), "regtest")
    if template_changes:
        template = replace(template, **template_changes)
    builder = builder or JobBuilder(SCRIPT, tag=b"/qazpool-test/")
    return builder.build(template, clean_jobs=True)


def _grind(job, *, en2: bytes = EN2, want_block: bool = True, root: bytes | None = None) -> bytes:
    """Header with the first nonce whose hash meets (or misses) the job's network target."""
    if root is None:
        root = fold_branch(sha256d(coinbase_tx(job, EN1, en2)), job.branch)
    for nonce in range(1 << 20):
        h = header_hash(job.version, job.prevhash, root, job.ntime, job.nbits, nonce)
        if (int.from_bytes(h, "little") <= job.network_target) == want_block:
            return (
                struct.pack("<I", job.version)
                + job.prevhash
                + root
                + struct.pack("<III", job.ntime, job.nbits, nonce)
            )
    raise AssertionError("no nonce found")


def _solve(chain: EmbeddedChain, **template_changes) -> bytes:
    job = _job(chain, **template_changes)
    return assemble_block(job, EN1, EN2, _grind(job))


def test_genesis_and_response_shapes_match_recorded_bitcoind():
    chain = _chain()
    assert chain.getblockhash(0) == (
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    )
    gbt = chain.getblocktemplate()
    recorded = load_fixture("getblocktemplate_with_txs.json")
    assert gbt.keys() == recorded.keys()
    for k in gbt:
        assert type(gbt[k]) is type(recorded[k]), k
    assert gbt["transactions"][0].keys() == recorded["transactions"][0].keys()
    info = chain.getblockchaininfo()
    assert info.keys() == load_fixture("getblockchaininfo.json").keys()
    assert info["chain"] == "regtest" and info["initialblockdownload"] is False
    mining = chain.getmininginfo()
    assert mining["bits"] == "207fffff"


def test_template_transactions_are_real():
    chain = _chain(mempool_tx_count=4)
    t = parse_template(chain.getblocktemplate(), "regtest")  # re-derives txids and commitment
    assert len(t.transactions) == 4
    assert t.coinbase_value == 50 * 10**8 + sum(x.fee for x in t.transactions)
    assert all(x.txid != x.wtxid for x in t.transactions)  # segwit spends


async def test_accepts_block_built_by_jobs_and_hash_core():
    chain = _chain()
    raw = _solve(chain)
    assert await chain.call("submitblock", raw.hex()) is None
    assert chain.height == 1
    best = await chain.call("getbestblockhash")
    assert best == sha256d(raw[:80])[::-1].hex()
    block = await chain.call("getblock", best)
    assert block["confirmations"] == 1 and block["height"] == 1 and block["nTx"] == 4
    assert await chain.call("submitblock", raw.hex()) == "duplicate"
    # the mempool was refilled with new transactions, and the next template builds on it
    t = parse_template(chain.getblocktemplate(), "regtest")
    assert t.height == 2 and t.prevhash == sha256d(raw[:80])
    assert not set(x.txid for x in t.transactions) & set(
        bytes.fromhex(x)[::-1] for x in block["tx"]
    )


async def test_every_broken_variant_gets_bitcoinds_string():
    chain = _chain()
    job = _job(chain)
    good_header = _grind(job)

    # high-hash: a nonce that misses the target
    assert chain.submitblock(assemble_block(job, EN1, EN2, _grind(job, want_block=False)).hex()) \
        == "high-hash"  # fmt: skip

    # bad-txnmrklroot: merkle root zeroed, header re-solved
    header = _grind(job, root=b"\0" * 32)
    raw = bytearray(assemble_block(job, EN1, EN2, good_header))
    raw[:80] = header
    assert chain.submitblock(bytes(raw).hex()) == "bad-txnmrklroot"

    # bad-cb-amount: coinbasevalue + 1 sat
    over = _job(chain, coinbase_value=chain.coinbase_value() + 1)
    assert chain.submitblock(assemble_block(over, EN1, EN2, _grind(over)).hex()) == "bad-cb-amount"

    # bad-cb-height: BIP34 push of the wrong height
    wrong = _job(chain, height=chain.height + 2)
    assert (
        chain.submitblock(assemble_block(wrong, EN1, EN2, _grind(wrong)).hex()) == "bad-cb-height"
    )

    # unexpected-witness: commitment output left out, coinbase witness kept
    builder = JobBuilder(SCRIPT, tag=b"/qazpool-test/")
    builder.outputs = lambda t: [(t.coinbase_value, SCRIPT)]  # type: ignore[method-assign]
    nocommit = _job(chain, builder)
    assert chain.submitblock(assemble_block(nocommit, EN1, EN2, _grind(nocommit)).hex()) \
        == "unexpected-witness"  # fmt: skip

    # bad-witness-merkle-match: a commitment to other transactions
    commitment = job.template.default_witness_commitment
    assert commitment is not None and commitment in job.coinb2
    wrongc = replace(job, coinb2=job.coinb2.replace(commitment[6:], b"\x11" * 32))
    assert chain.submitblock(assemble_block(wrongc, EN1, EN2, _grind(wrongc)).hex()) \
        == "bad-witness-merkle-match"  # fmt: skip

    # prev-blk-not-found
    orphan = _job(chain, prevhash=b"\x42" * 32)
    assert chain.submitblock(assemble_block(orphan, EN1, EN2, _grind(orphan)).hex()) \
        == "prev-blk-not-found"  # fmt: skip

    # time-too-old: ntime at the median time past
    old = _job(chain, curtime=chain.median_time_past())
    assert chain.submitblock(assemble_block(old, EN1, EN2, _grind(old)).hex()) == "time-too-old"

    # decode failure is an RPC error, as in bitcoind
    with pytest.raises(RpcError, match="Block decode failed"):
        chain.submitblock("00" * 50)
    with pytest.raises(RpcError, match="Block does not start with a coinbase"):
        chain.submitblock("00" * 81)

    # nothing above changed the chain; the good block is still accepted
    assert chain.height == 0
    assert chain.submitblock(assemble_block(job, EN1, EN2, good_header).hex()) is None
    # a block re-submitted after being refused as invalid
    assert chain.submitblock(assemble_block(wrong, EN1, EN2, _grind(wrong)).hex()) \
        == "duplicate-invalid"  # fmt: skip


def test_stale_block_is_inconclusive_and_orphaned():
    chain = _chain()
    ours = _job(chain)
    chain.generatetoaddress(1, ADDR)  # someone else found block 1 first
    raw = assemble_block(ours, EN1, EN2, _grind(ours))
    # our block spends mempool txs the other block already confirmed: stored, not connected
    assert chain.submitblock(raw.hex()) == "inconclusive"
    assert chain.confirmations(sha256d(raw[:80])) == -1


def test_halving_every_150_blocks_and_maturity():
    chain = _chain(mempool_tx_count=0)
    assert (
        subsidy(149) == 50 * 10**8 and subsidy(150) == 25 * 10**8 and subsidy(300) == 1_250_000_000
    )
    assert subsidy(150 * 64) == 0
    hashes = chain.generatetoaddress(149, ADDR)
    assert chain.getblocktemplate()["coinbasevalue"] == 25 * 10**8  # block 150
    first = hashes[0]
    assert chain.getblock(first)["confirmations"] == 149
    raw = _solve(chain)
    assert chain.submitblock(raw.hex()) is None
    mine = sha256d(raw[:80])
    assert chain.getblock(mine[::-1].hex())["coinbase_value"] == 25 * 10**8
    assert chain.confirmations(mine) == 1
    chain.generatetoaddress(99, ADDR)
    assert chain.confirmations(mine) == 100  # mature (COINBASE_MATURITY)


def test_configurable_difficulty():
    bits = bits_for_shares(300, 1e-8)
    target = target_from_nbits(bits)
    assert abs(DIFF1 / target / 3e-6 - 1) < 1e-4  # network difficulty = 300 * share difficulty
    chain = _chain(bits=bits)
    assert chain.getblocktemplate()["bits"] == f"{bits:08x}"
    assert bits_for_shares(1e-30, 1e-30) == 0x207FFFFF  # capped at the pow limit
    job = _job(chain)
    # a share (at 1/300 of the network difficulty) that is not a block is refused
    shares = 0
    for n in range(2000):
        header = _grind(replace(job, network_target=target * 300), en2=n.to_bytes(8, "big"))
        shares += 1
        block = assemble_block(job, EN1, n.to_bytes(8, "big"), header)
        if int.from_bytes(sha256d(header), "little") > target:
            assert chain.submitblock(block.hex()) == "high-hash"
            continue
        assert chain.submitblock(block.hex()) is None
        break
    else:
        raise AssertionError("no block in 2000 shares at 300 shares per block")
    assert chain.height == 1


def test_refuses_mainnet_and_bad_settings():
    with pytest.raises(EmbeddedChainError, match="refuses network = 'main'"):
        EmbeddedChain("main")
    with pytest.raises(EmbeddedChainError, match="pow limit"):
        EmbeddedChain("regtest", bits=0x217FFFFF)
    assert "EMBEDDED CHAIN" in _chain().describe()


async def test_rpc_surface_errors():
    chain = _chain()
    with pytest.raises(RpcMethodNotFound):
        await chain.call("nosuch")
    with pytest.raises(RpcError, match="segwit rule") as err:
        await chain.call("getblocktemplate", {})
    assert err.value.code == -8
    with pytest.raises(RpcError, match="Block not found"):
        await chain.call("getblock", "00" * 32)


async def test_longpoll_returns_on_new_block():
    chain = _chain()
    lp = chain.longpollid
    task = asyncio.create_task(
        chain.call("getblocktemplate", {"rules": ["segwit"], "longpollid": lp})
    )
    await asyncio.sleep(0.01)
    assert not task.done()
    assert chain.submitblock(_solve(chain).hex()) is None
    gbt = await asyncio.wait_for(task, 2)
    assert gbt["height"] == 2


def test_state_survives_restart(tmp_path):
    path = tmp_path / "chain.jsonl"
    chain = _chain(state_path=path)
    assert chain.submitblock(_solve(chain).hex()) is None
    chain.generatetoaddress(2, ADDR)
    tip = chain.tip.hash
    again = _chain(state_path=path)
    assert again.height == 3 and again.tip.hash == tip
    with path.open("a") as fh:
        fh.write('{"block": "00')  # torn last line after a crash
    assert _chain(state_path=path).height == 3


async def test_other_miners_advance_the_chain():
    chain = _chain()
    task = asyncio.create_task(chain.run_other_miners(0.005, SCRIPT))
    try:
        async with asyncio.timeout(5):
            while chain.height < 3:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(chain.blocks[h].self_mined for h in chain.main[1:])
    await chain.run_other_miners(0, SCRIPT)  # disabled: returns at once
