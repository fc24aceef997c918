"""Coinbase building blocks: BIP34 height push, scriptSig limits, witness pieces, tx codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.coinbase import (
    CoinbaseError,
    add_witness_reserved_value,
    bip34_height_push,
    build_coinbase,
    decode_bip34_height,
)
from stratum.difficulty import target_from_nbits
from stratum.hashcore import sha256d
from stratum.merkle import (
    coinbase_branch,
    find_witness_commitment,
    fold_branch,
    merkle_root,
    witness_commitment_script,
    witness_root,
)
from stratum.template import target_to_bits
from stratum.tx import DecodeError, parse_block, parse_tx, varint
from tests.conftest import load_fixture, stratum_vectors


def test_bip34_vectors():
    v = stratum_vectors()["bip34_height_push"]
    for height, push in {**v["verified_against_real_coinbases"], **v["derived_by_rule"]}.items():
        assert bip34_height_push(int(height)).hex() == push, height


def test_bip34_small_heights_are_opcodes():
    assert bip34_height_push(0) == b"\x00"
    assert [bip34_height_push(h)[0] for h in range(1, 17)] == list(range(0x51, 0x61))
    assert bip34_height_push(115) == b"\x01\x73"  # the fixture block
    with pytest.raises(CoinbaseError):
        bip34_height_push(-1)


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_bip34_round_trip(height):
    push = bip34_height_push(height)
    assert decode_bip34_height(push + b"\xde\xad") == height


def test_scriptsig_limits():
    outs = [(1, b"\x51")]
    parts = build_coinbase(500_000, outs, tag=b"t" * 84, extranonce_size=12)
    assert parts.script_sig_len == 100
    with pytest.raises(CoinbaseError, match="101 bytes"):
        build_coinbase(500_000, outs, tag=b"t" * 85, extranonce_size=12)
    with pytest.raises(CoinbaseError, match="minimum 2"):
        build_coinbase(1, outs, tag=b"", extranonce_size=0)
    with pytest.raises(CoinbaseError, match="at least one output"):
        build_coinbase(1, [], tag=b"", extranonce_size=8)


def test_coinbase_parses_as_a_transaction():
    parts = build_coinbase(
        300, [(5_000_000_000, b"\x51"), (0, b"\x6a")], tag=b"/t/", extranonce_size=12
    )
    raw = parts.coinb1 + bytes(range(12)) + parts.coinb2
    tx = parse_tx(raw)
    assert tx.is_coinbase and tx.version == 1 and tx.locktime == 0
    assert tx.inputs[0].sequence == 0xFFFFFFFF
    assert decode_bip34_height(tx.inputs[0].script_sig) == 300
    assert [o.value for o in tx.outputs] == [5_000_000_000, 0]
    wit = parse_tx(add_witness_reserved_value(raw))
    assert wit.inputs[0].witness == (b"\0" * 32,) and wit.txid == tx.txid


def test_witness_coinbase_equals_fixture():
    case = load_fixture("solved_block_case.json")
    cb = bytes.fromhex(case["coinbase_tx_nonwitness"])
    assert add_witness_reserved_value(cb).hex() == case["getblock_verbose"]["tx"][0]["hex"]


def test_witness_root_public_pool():
    v = stratum_vectors()["public_pool_testnet_gbt_to_share"]
    wtxids = [bytes.fromhex(t["hash"])[::-1] for t in v["gbt"]["transactions"]]
    assert witness_root(wtxids).hex() == v["expected"]["witness_merkle_root_internal"]
    assert witness_commitment_script(wtxids).hex() == v["gbt"]["default_witness_commitment"]


@pytest.mark.parametrize(
    "name", ["getblocktemplate_with_txs.json", "getblocktemplate_empty_mempool.json"]
)
def test_witness_commitment_regtest_templates(name):
    gbt = load_fixture(name)
    wtxids = [bytes.fromhex(t["hash"])[::-1] for t in gbt["transactions"]]
    assert witness_commitment_script(wtxids).hex() == gbt["default_witness_commitment"]


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=40))
def test_branch_folds_to_full_merkle_root(txids):
    coinbase_txid = sha256d(b"coinbase")
    assert fold_branch(coinbase_txid, coinbase_branch(txids)) == merkle_root(
        [coinbase_txid, *txids]
    )


def test_block_parse_round_trip_fixture():
    case = load_fixture("solved_block_case.json")
    raw = bytes.fromhex(case["block"])
    block = parse_block(raw)
    assert block.hash[::-1].hex() == case["block_hash"]
    assert [t.txid[::-1].hex() for t in block.txs] == [
        t["txid"] for t in case["getblock_verbose"]["tx"]
    ]
    assert [t.wtxid[::-1].hex() for t in block.txs][1:] == [
        t["hash"] for t in case["getblock_verbose"]["tx"][1:]
    ]
    assert merkle_root([t.txid for t in block.txs]) == block.merkle_root
    assert find_witness_commitment([o.script for o in block.txs[0].outputs]) == 1
    assert (
        b"".join([block.header, varint(len(block.txs)), *(t.serialize() for t in block.txs)]) == raw
    )
    with pytest.raises(DecodeError, match="truncated"):
        parse_block(raw[:-1])
    with pytest.raises(DecodeError, match="trailing"):
        parse_block(raw + b"\0")


def test_nbits_target_conversions():
    v = stratum_vectors()["difficulty_and_nbits"]
    assert target_from_nbits(0x1D00FFFF) == int(v["diff1_target_hex"], 16)
    assert target_from_nbits(0x207FFFFF) == int("7fffff" + "00" * 29, 16)
    for bits in (0x1D00FFFF, 0x207FFFFF, 0x192495F8, 0x1705AE3A):
        assert target_to_bits(target_from_nbits(bits)) == bits
    with pytest.raises(ValueError, match="sign bit"):
        target_from_nbits(0x1D80FFFF)


@given(
    height=st.integers(min_value=0, max_value=2**31 - 1),
    tag=st.binary(max_size=100),
    en1=st.integers(min_value=1, max_value=16),
    en2=st.integers(min_value=2, max_value=16),
    value=st.integers(min_value=0, max_value=21_000_000 * 10**8),
)
def test_coinbase_split_invariants(height, tag, en1, en2, value):
    """Any accepted layout reassembles into a coinbase that parses, starts with the BIP34 push,
    keeps the extranonce slot exactly where coinb1/coinb2 say, and pays the value; any refused
    one really exceeds the 100-byte scriptSig limit."""
    push = bip34_height_push(height)
    try:
        parts = build_coinbase(height, [(value, b"\x51")], tag=tag, extranonce_size=en1 + en2)
    except CoinbaseError:
        assert len(push) + en1 + en2 + len(tag) > 100
        return
    slot = bytes(range(1, en1 + en2 + 1))
    tx = parse_tx(parts.coinb1 + slot + parts.coinb2)
    script = tx.inputs[0].script_sig
    assert 2 <= len(script) <= 100 and script == push + slot + tag
    assert decode_bip34_height(script) == height
    assert [o.value for o in tx.outputs] == [value]
