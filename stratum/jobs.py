"""Jobs: one ``stratum.interfaces.Job`` per template, shared by every miner.

API (for the Stratum server and the template feed)::

    builder = JobBuilder(payout_script, tag=b"/qazpool/", extranonce1_size=4, extranonce2_size=8)
    job = builder.build(template, clean_jobs=True)     # coinb1/coinb2/branch computed once
    params = notify_params(job)                         # the 9 mining.notify params
    same_work(old_job, new_job)                         # nothing the miner hashes changed
    book = JobBook(); book.add(job)                     # recent jobs; older prevhash = stale
    book.get(job_id) / book.status(job_id)              # CURRENT / STALE / UNKNOWN
    book.lookup(job_id)                                 # the job if current, else the status
    block = assemble_block(job, extranonce1, extranonce2, header80)   # full block bytes

Byte orders follow ``stratum-v1.md``: ``Job.prevhash`` and ``Job.branch`` are internal order,
the notify prevhash is word-swapped, version/nbits/ntime are uint32 hex.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any

from stratum.coinbase import add_witness_reserved_value, build_coinbase
from stratum.hashcore import sha256d
from stratum.interfaces import BlockTemplate, Job
from stratum.merkle import coinbase_branch, fold_branch, witness_commitment_script
from stratum.tx import varint


class JobError(ValueError):
    """A template the pool cannot turn into a valid job (the message says why)."""


class BlockAssemblyError(ValueError):
    """Share data that does not produce the block the header commits to."""


def swap_prevhash(prevhash: bytes) -> str:
    """Header-order prevhash → Stratum's notify form (each 4-byte word byte-reversed)."""
    if len(prevhash) != 32:
        raise ValueError(f"prevhash must be 32 bytes, got {len(prevhash)}")
    return b"".join(prevhash[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


def unswap_prevhash(notify_prevhash: str) -> bytes:
    raw = bytes.fromhex(notify_prevhash)
    if len(raw) != 32:
        raise ValueError(f"prevhash must be 32 bytes, got {len(raw)}")
    return b"".join(raw[i : i + 4][::-1] for i in range(0, 32, 4))


@dataclass
class NotifiedWork:
    """A ``mining.notify`` as a miner reads it (the demo's simulated ASICs, the security suite's
    clients and the test client all grind from this): prevhash in header order, hex decoded."""

    job_id: str
    prevhash: bytes
    coinb1: bytes
    coinb2: bytes
    branch: list[bytes]
    version: int
    nbits: int
    ntime: int
    clean: bool

    @classmethod
    def from_params(cls, p: list[Any]) -> NotifiedWork:
        return cls(
            str(p[0]),
            unswap_prevhash(p[1]),
            bytes.fromhex(p[2]),
            bytes.fromhex(p[3]),
            [bytes.fromhex(b) for b in p[4]],
            int(p[5], 16),
            int(p[6], 16),
            int(p[7], 16),
            bool(p[8]),
        )


class JobBuilder:
    """Turns templates into jobs; holds the coinbase settings and the job id counter."""

    def __init__(
        self,
        payout_script: bytes,
        *,
        tag: bytes = b"/qazpool/",
        extranonce1_size: int = 4,
        extranonce2_size: int = 8,
        coinbase_version: int = 1,
        first_job_id: int = 1,
    ) -> None:
        if not payout_script:
            raise JobError("payout script is empty")
        if not 1 <= extranonce1_size <= 16:
            raise JobError(f"extranonce1_size must be 1..16, got {extranonce1_size}")
        if not 2 <= extranonce2_size <= 16:
            raise JobError(f"extranonce2_size must be 2..16 (cgminer), got {extranonce2_size}")
        self.payout_script = payout_script
        self.tag = tag
        self.extranonce1_size = extranonce1_size
        self.extranonce2_size = extranonce2_size
        self.coinbase_version = coinbase_version
        self._ids = itertools.count(first_job_id)
        # Refuse a config that breaks the scriptSig limit now, at the largest height the
        # pool can meet (4-byte height push), not when the first block is found.
        build_coinbase(
            0x7FFFFF,
            [(0, payout_script)],
            tag=tag,
            extranonce_size=extranonce1_size + extranonce2_size,
        )

    def outputs(self, template: BlockTemplate) -> list[tuple[int, bytes]]:
        outs = [(template.coinbase_value, self.payout_script)]
        if template.default_witness_commitment is not None:
            expected = witness_commitment_script([t.wtxid for t in template.transactions])
            if template.default_witness_commitment != expected:
                raise JobError(
                    f"template {template.height}: default_witness_commitment "
                    f"{template.default_witness_commitment.hex()} != recomputed {expected.hex()}"
                )
            outs.append((0, template.default_witness_commitment))
        return outs

    def build(self, template: BlockTemplate, clean_jobs: bool, now: float | None = None) -> Job:
        outputs = self.outputs(template)
        try:
            parts = build_coinbase(
                template.height,
                outputs,
                tag=self.tag,
                extranonce_size=self.extranonce1_size + self.extranonce2_size,
                version=self.coinbase_version,
            )
        except ValueError as exc:
            raise JobError(f"template {template.height}: {exc}") from exc
        return Job(
            job_id=format(next(self._ids), "x"),
            template=template,
            prevhash=template.prevhash,
            coinb1=parts.coinb1,
            coinb2=parts.coinb2,
            branch=tuple(coinbase_branch([t.txid for t in template.transactions])),
            version=template.version,
            nbits=template.bits,
            ntime=template.curtime,
            network_target=template.target,
            clean_jobs=clean_jobs,
            created_at=time.time() if now is None else now,
        )


def same_work(a: Job, b: Job) -> bool:
    """True when ``b`` changes nothing a miner hashes compared with ``a``: same prevhash,
    coinbase parts (height, value, outputs, witness commitment), merkle branch, version and
    bits. A changed ``curtime`` alone is not new work: miners roll ntime themselves."""
    return (
        a.prevhash == b.prevhash
        and a.coinb1 == b.coinb1
        and a.coinb2 == b.coinb2
        and a.branch == b.branch
        and a.version == b.version
        and a.nbits == b.nbits
    )


def notify_params(job: Job) -> list[object]:
    """``mining.notify`` params: [job_id, prevhash, coinb1, coinb2, branch, version, nbits,
    ntime, clean_jobs]."""
    return [
        job.job_id,
        swap_prevhash(job.prevhash),
        job.coinb1.hex(),
        job.coinb2.hex(),
        [b.hex() for b in job.branch],
        format(job.version, "08x"),
        format(job.nbits, "08x"),
        format(job.ntime, "08x"),
        job.clean_jobs,
    ]


def coinbase_tx(job: Job, extranonce1: bytes, extranonce2: bytes) -> bytes:
    """The non-witness coinbase a miner hashed (its sha256d is the coinbase txid)."""
    return job.coinb1 + extranonce1 + extranonce2 + job.coinb2


def assemble_block(job: Job, extranonce1: bytes, extranonce2: bytes, header: bytes) -> bytes:
    """The full block for a solved share: header, tx count, coinbase (with the witness
    reserved value when the template commits to witnesses), then the template's
    transactions in template order."""
    if len(header) != 80:
        raise BlockAssemblyError(f"header must be 80 bytes, got {len(header)}")
    coinbase = coinbase_tx(job, extranonce1, extranonce2)
    root = fold_branch(sha256d(coinbase), job.branch)
    if header[36:68] != root:
        raise BlockAssemblyError(
            f"job {job.job_id}: header merkle root {header[36:68][::-1].hex()} does not match "
            f"the coinbase built from extranonce1={extranonce1.hex()} "
            f"extranonce2={extranonce2.hex()} ({root[::-1].hex()})"
        )
    if header[4:36] != job.prevhash:
        raise BlockAssemblyError(f"job {job.job_id}: header prevhash is not the job's")
    txs = job.template.transactions
    if job.template.default_witness_commitment is not None:
        coinbase = add_witness_reserved_value(coinbase)
    return b"".join((header, varint(1 + len(txs)), coinbase, *(t.data for t in txs)))


class JobStatus(Enum):
    CURRENT = "current"
    STALE = "stale"  # built on a previous block; a share for it cannot become a block
    UNKNOWN = "unknown"  # never issued, or forgotten


class JobBook:
    """The recent jobs by id. Adding a job on a new prevhash makes every older job stale;
    jobs on the current prevhash stay valid (a refresh sends clean_jobs=false)."""

    def __init__(self, keep: int = 64) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self.current: Job | None = None
        self.current_prevhash: bytes | None = None

    def add(self, job: Job) -> list[str]:
        """Make ``job`` current; returns the ids of the jobs forgotten to stay within ``keep``
        (so a holder of per-job caches can drop theirs)."""
        jobs = self._jobs
        jobs[job.job_id] = job
        jobs.move_to_end(job.job_id)
        evicted = []
        while len(jobs) > self.keep:
            evicted.append(jobs.popitem(last=False)[0])
        self.current = job
        self.current_prevhash = job.prevhash
        return evicted

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def lookup(self, job_id: str) -> Job | JobStatus:
        """The job if it is on the current prevhash, else ``STALE`` or ``UNKNOWN``: one dict
        lookup, for the share path."""
        job = self._jobs.get(job_id)
        if job is None:
            return JobStatus.UNKNOWN
        if job.prevhash != self.current_prevhash:
            return JobStatus.STALE
        return job

    def status(self, job_id: str) -> JobStatus:
        found = self.lookup(job_id)
        return found if type(found) is JobStatus else JobStatus.CURRENT

    def is_stale(self, job_id: str) -> bool:
        return self.lookup(job_id) is JobStatus.STALE

    def __len__(self) -> int:
        return len(self._jobs)
