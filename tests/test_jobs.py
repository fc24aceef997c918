"""Jobs from templates, byte for byte against the blocks bitcoind accepted (regtest fixtures)."""

from __future__ import annotations

import struct

import pytest

from stratum.address import address_to_script
from stratum.hashcore import sha256d
from stratum.interfaces import BlockTemplate
from stratum.jobs import (
    BlockAssemblyError,
    JobBook,
    JobBuilder,
    JobError,
    JobStatus,
    assemble_block,
    coinbase_tx,
    notify_params,
    swap_prevhash,
    unswap_prevhash,
)
from stratum.merkle import coinbase_branch, fold_branch
from stratum.template import TemplateError, parse_template
from tests.conftest import load_fixture, stratum_vectors

TAG = b"/qazpool-fixture/"
CASES = ["solved_block_case.json", "solved_block_case_empty_mempool.json"]


def _build(case: dict) -> tuple:
    template = parse_template(load_fixture(case["template_file"]), "regtest")
    en1 = bytes.fromhex(case["extranonce1"])
    en2 = bytes.fromhex(case["extranonce2"])
    script = address_to_script(case["payout_address"], "regtest")
    builder = JobBuilder(script, tag=TAG, extranonce1_size=len(en1), extranonce2_size=len(en2))
    job = builder.build(template, clean_jobs=True)
    return template, job, en1, en2


def _solve_header(job, en1: bytes, en2: bytes, submit: dict, mask: int) -> bytes:
    version = job.version
    if submit["version_bits"] is not None:
        version = (version & ~mask & 0xFFFFFFFF) | (int(submit["version_bits"], 16) & mask)
    root = fold_branch(sha256d(coinbase_tx(job, en1, en2)), job.branch)
    return (
        struct.pack("<I", version)
        + job.prevhash
        + root
        + struct.pack("<III", int(submit["ntime"], 16), job.nbits, int(submit["nonce"], 16))
    )


@pytest.mark.parametrize("name", CASES)
def test_byte_exact_against_accepted_block(name):
    case = load_fixture(name)
    assert case["submitblock_result"] is None  # bitcoind accepted it
    _, job, en1, en2 = _build(case)
    script = address_to_script(case["payout_address"], "regtest")
    assert script.hex() == case["payout_scriptPubKey"]

    assert notify_params(job) == case["mining_notify_params"]
    coinbase = coinbase_tx(job, en1, en2)
    assert coinbase.hex() == case["coinbase_tx_nonwitness"]
    assert sha256d(coinbase)[::-1].hex() == case["coinbase_txid"]

    header = _solve_header(job, en1, en2, case["submit"], int(case["version_rolling_mask"], 16))
    assert header[36:68].hex() == case["merkle_root_internal"]
    assert header.hex() == case["header"]
    block_hash = sha256d(header)
    assert block_hash[::-1].hex() == case["block_hash"]
    assert int.from_bytes(block_hash, "little") <= job.network_target

    block = assemble_block(job, en1, en2, header)
    assert block.hex() == case["block"]


def test_witness_coinbase_matches_getblock_view():
    case = load_fixture("solved_block_case.json")
    _, job, en1, en2 = _build(case)
    header = bytes.fromhex(case["header"])
    block = assemble_block(job, en1, en2, header)
    cb_view = case["getblock_verbose"]["tx"][0]
    assert cb_view["hex"] in block.hex()
    assert cb_view["txid"] == case["coinbase_txid"]


def test_notify_prevhash_is_word_swapped():
    v = stratum_vectors()["public_pool_testnet_gbt_to_share"]
    prev = bytes.fromhex(v["gbt"]["previousblockhash"])[::-1]
    assert swap_prevhash(prev) == v["notify_params"][1]
    assert unswap_prevhash(v["notify_params"][1]) == prev


def test_public_pool_branch_and_witness_commitment():
    v = stratum_vectors()["public_pool_testnet_gbt_to_share"]
    template = parse_template(v["gbt"], "test")  # also re-derives txids and the commitment
    branch = coinbase_branch([t.txid for t in template.transactions])
    assert [b.hex() for b in branch] == v["notify_params"][4]
    coinbase = bytes.fromhex(v["expected"]["coinbase_hex"])
    root = fold_branch(sha256d(coinbase), branch)
    assert root.hex() == v["expected"]["merkle_root_internal"]


def test_job_from_public_pool_template_assembles_self_consistent_block():
    v = stratum_vectors()["public_pool_testnet_gbt_to_share"]
    template = parse_template(v["gbt"], "test")
    header = bytes.fromhex(v["expected"]["header_hex"])
    # public-pool's coinbase has a different layout; check our block assembly on its numbers
    # by reusing its coinbase halves in a job.
    from dataclasses import replace

    builder = JobBuilder(
        b"\x00\x14" + b"\x11" * 20, tag=b"/x/", extranonce1_size=4, extranonce2_size=4
    )
    job = replace(
        builder.build(template, clean_jobs=False),
        coinb1=bytes.fromhex(v["notify_params"][2]),
        coinb2=bytes.fromhex(v["notify_params"][3]),
        prevhash=header[4:36],
    )
    en1 = bytes.fromhex(v["extranonce1"])
    en2 = bytes.fromhex(v["submit_params"][2])
    block = assemble_block(job, en1, en2, header)
    assert block.hex() == v["derived_full_block_hex_self_consistency_only"]


def test_assemble_refuses_wrong_extranonce():
    case = load_fixture("solved_block_case.json")
    _, job, en1, en2 = _build(case)
    header = bytes.fromhex(case["header"])
    with pytest.raises(BlockAssemblyError, match="merkle root"):
        assemble_block(job, en1, b"\0" * 8, header)
    with pytest.raises(BlockAssemblyError, match="80 bytes"):
        assemble_block(job, en1, en2, header[:79])


def test_template_commitment_mismatch_is_refused():
    gbt = dict(load_fixture("getblocktemplate_with_txs.json"))
    gbt["default_witness_commitment"] = gbt["default_witness_commitment"][:-2] + "00"
    with pytest.raises(TemplateError) as err:
        parse_template(gbt)
    assert err.value.field == "default_witness_commitment"
    # a template built in code (not parsed) is checked by the job builder too
    good = parse_template(load_fixture("getblocktemplate_with_txs.json"))
    from dataclasses import replace

    bad = replace(good, default_witness_commitment=bytes.fromhex(gbt["default_witness_commitment"]))
    with pytest.raises(JobError, match="default_witness_commitment"):
        JobBuilder(b"\x51").build(bad, clean_jobs=True)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("height", "115", "integer"),
        ("coinbasevalue", -1, "outside"),
        ("previousblockhash", "zz", "hex"),
        ("bits", "207fff", "4 bytes"),
        ("bits", "2201ffff", "overflows 256 bits"),  # refused on bits, not later on target
        ("bits", "1d80ffff", "sign bit"),
        ("bits", "1d000000", "zero"),
        ("target", "00" * 32, "does not match"),
        ("curtime", 1, "before mintime"),
        ("transactions", {}, "list"),
    ],
)
def test_template_field_errors(field, value, reason):
    gbt = dict(load_fixture("getblocktemplate_with_txs.json"))
    gbt[field] = value
    with pytest.raises(TemplateError) as err:
        parse_template(gbt)
    assert err.value.field == field
    assert reason in err.value.reason


def test_template_tx_errors_name_the_transaction():
    gbt = load_fixture("getblocktemplate_with_txs.json")
    txs = [dict(t) for t in gbt["transactions"]]
    txs[2]["txid"] = txs[1]["txid"]
    with pytest.raises(TemplateError) as err:
        parse_template({**gbt, "transactions": txs})
    assert err.value.field == "transactions[2].txid"
    txs = [dict(t) for t in gbt["transactions"]]
    del txs[3]["data"]
    with pytest.raises(TemplateError, match=r"transactions\[3\]\.data"):
        parse_template({**gbt, "transactions": txs})
    with pytest.raises(TemplateError, match="missing"):
        parse_template({k: v for k, v in gbt.items() if k != "height"})


def test_builder_refuses_oversized_scriptsig():
    with pytest.raises(ValueError, match="at most 100"):
        JobBuilder(b"\x51", tag=b"x" * 80, extranonce1_size=8, extranonce2_size=16)
    JobBuilder(b"\x51", tag=b"x" * 84, extranonce1_size=4, extranonce2_size=8)  # 4+12+84=100


def test_job_ids_are_unique_and_hex():
    t = parse_template(load_fixture("getblocktemplate_empty_mempool.json"))
    b = JobBuilder(b"\x51")
    ids = [b.build(t, clean_jobs=False).job_id for _ in range(20)]
    assert len(set(ids)) == 20
    assert ids[0] == "1" and ids[15] == "10"


def _template(prev_byte: int, base: BlockTemplate) -> BlockTemplate:
    from dataclasses import replace

    return replace(base, prevhash=bytes([prev_byte]) * 32)


def test_job_book_marks_old_prevhash_stale():
    base = parse_template(load_fixture("getblocktemplate_empty_mempool.json"))
    b = JobBuilder(b"\x51")
    book = JobBook(keep=4)
    j1 = b.build(_template(1, base), clean_jobs=True)
    book.add(j1)
    j2 = b.build(_template(1, base), clean_jobs=False)  # refresh, same block
    book.add(j2)
    assert book.status(j1.job_id) is JobStatus.CURRENT
    j3 = b.build(_template(2, base), clean_jobs=True)  # new block
    book.add(j3)
    assert book.current is j3
    assert book.status(j1.job_id) is JobStatus.STALE and book.is_stale(j2.job_id)
    assert book.status(j3.job_id) is JobStatus.CURRENT
    assert book.status("nope") is JobStatus.UNKNOWN
    for _ in range(4):
        book.add(b.build(_template(2, base), clean_jobs=False))
    assert book.get(j1.job_id) is None and len(book) == 4
