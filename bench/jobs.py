"""Job building cost per template: parse + verify a getblocktemplate answer, build the job
(coinbase, merkle branch, witness commitment check), assemble a found block.

Baseline measured in the same run: one sha256d over every transaction's data (the least work
any pool must do to trust a template's wtxids). Template: the embedded chain with N synthetic
segwit transactions (real serialization).

    .venv/bin/python bench/jobs.py [--txs 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import struct
import time

from poolserver.bitcoin.embedded_chain import EmbeddedChain
from stratum.hashcore import backend, sha256d
from stratum.jobs import JobBuilder, assemble_block, coinbase_tx
from stratum.merkle import fold_branch
from stratum.template import parse_template


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    chain = EmbeddedChain("regtest", mempool_tx_count=args.txs, clock=lambda: 1_795_520_202)
    gbt = chain.getblocktemplate()
    datas = [bytes.fromhex(t["data"]) for t in gbt["transactions"]]
    template = parse_template(gbt)
    builder = JobBuilder(b"\x00\x14" + b"\x11" * 20, tag=b"/qazpool/")
    job = builder.build(template, clean_jobs=True)
    en1, en2 = b"\0\0\0\1", b"\0" * 8
    root = fold_branch(sha256d(coinbase_tx(job, en1, en2)), job.branch)
    header = (
        struct.pack("<I", job.version)
        + job.prevhash
        + root
        + struct.pack("<III", job.ntime, job.nbits, 0)
    )

    base = best(lambda: [sha256d(d) for d in datas], args.repeat)
    rows = [
        ("baseline: sha256d(data) per tx", base),
        ("parse_template, verify txids", best(lambda: parse_template(gbt), args.repeat)),
        (
            "parse_template, no verify",
            best(lambda: parse_template(gbt, verify_txs=False), args.repeat),
        ),
        ("JobBuilder.build", best(lambda: builder.build(template, clean_jobs=False), args.repeat)),
        ("assemble_block", best(lambda: assemble_block(job, en1, en2, header), args.repeat)),
    ]
    size = sum(len(d) for d in datas)
    print(f"hash core: {backend()}; template: {args.txs} txs, {size / 1e6:.2f} MB; "
          f"best of {args.repeat}")  # fmt: skip
    print(f"{'step':38} {'ms':>9} {'x baseline':>11}")
    for name, t in rows:
        print(f"{name:38} {t * 1e3:9.2f} {t / base:11.1f}")


if __name__ == "__main__":
    main()
