"""Share validation: pure, ordered, one reject-reason enum.

The order (issue 5, spec §10.3): shape/hex/lengths → subscribed → authorized worker → job known
(21) → stale (21) → extranonce2 exact size → ntime window → version bits inside the negotiated
mask → [hash, done by the caller in a batch with the C core] → block check before any reject →
share difficulty vs the job's target (23) → duplicate (22).

``precheck`` does everything before the hash and returns either a ``Reject`` or a ``Submission``
ready for ``hashcore.check_shares``; ``judge`` turns the hash result into the final verdict.
Both are pure: the caller passes the clock, the session's state and the job book.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from typing import Any

from stratum.interfaces import Job
from stratum.jobs import JobBook, JobStatus

MAX_FUTURE_DRIFT_S = 7200  # consensus: a header time more than 2 h ahead is invalid


class Reject(enum.Enum):
    """Every way a submit fails: (JSON-RPC error code, message shown to the miner, metric label)."""

    MALFORMED = (
        20,
        "Invalid params: expected [worker, job_id, extranonce2, ntime, nonce(, version)]",
        "malformed",
    )
    NOT_SUBSCRIBED = (25, "Not subscribed", "not_subscribed")
    UNAUTHORIZED = (24, "Unauthorized worker", "unauthorized_worker")
    JOB_NOT_FOUND = (21, "Job not found", "job_not_found")
    STALE = (21, "Stale share (job superseded by a new block)", "stale")
    BAD_EXTRANONCE2 = (20, "Invalid extranonce2: wrong length or not hex", "bad_extranonce2")
    BAD_NTIME = (20, "Invalid ntime: expected 8 hex digits", "bad_ntime")
    BAD_NONCE = (20, "Invalid nonce: expected 8 hex digits", "bad_nonce")
    BAD_VERSION_BITS = (20, "Invalid version_bits: expected 8 hex digits", "bad_version_bits")
    NTIME_OUT_OF_RANGE = (20, "Ntime out of range", "ntime_out_of_range")
    VERSION_MASK = (
        20,
        "Invalid version mask: version_bits outside the negotiated mask",
        "version_mask",
    )
    LOW_DIFFICULTY = (23, "Low difficulty share", "low_difficulty")
    DUPLICATE = (22, "Duplicate share", "duplicate")
    NOT_RECORDED = (20, "Share could not be recorded, please resubmit", "not_recorded")

    def __init__(self, code: int, message: str, label: str) -> None:
        self.code = code
        self.message = message
        self.label = label


# Strict hex: int(x, 16) would accept "0x..", "_", "+", spaces; bytes.fromhex accepts spaces.
_hex8 = re.compile(r"[0-9a-fA-F]{8}").fullmatch
_hexany = re.compile(r"(?:[0-9a-fA-F]{2})*").fullmatch


class Submission:
    """A submit that passed every check that can be done before hashing."""

    __slots__ = ("difficulty", "extranonce2", "job", "nonce", "ntime", "version_bits", "worker")

    def __init__(
        self,
        worker: str,
        job: Job,
        difficulty: float,
        extranonce2: bytes,
        ntime: int,
        nonce: int,
        version_bits: int,
    ) -> None:
        self.worker = worker
        self.job = job
        self.difficulty = difficulty
        self.extranonce2 = extranonce2
        self.ntime = ntime
        self.nonce = nonce
        self.version_bits = version_bits


def precheck(
    params: Any,
    *,
    subscribed: bool,
    workers: Collection[str],
    session_jobs: Mapping[str, float],
    book: JobBook,
    extranonce2_size: int,
    version_mask: int,
    now: float,
) -> Reject | Submission:
    """Checks 1-6 of the validation order.

    ``session_jobs`` maps the job ids sent to this connection to the difficulty in force for it;
    ``book`` is the pool's job table, which also says which jobs are stale.
    """
    if not isinstance(params, list) or not 5 <= len(params) <= 6:
        return Reject.MALFORMED
    for p in params:
        if type(p) is not str:
            return Reject.MALFORMED
    worker, job_id, en2_hex, ntime_hex, nonce_hex = (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
    )
    if not subscribed:
        return Reject.NOT_SUBSCRIBED
    if worker not in workers:
        return Reject.UNAUTHORIZED
    job = book.lookup(job_id)
    if type(job) is JobStatus:
        return Reject.STALE if job is JobStatus.STALE else Reject.JOB_NOT_FOUND
    difficulty = session_jobs.get(job_id)
    if difficulty is None:  # a job id this connection was never sent
        return Reject.JOB_NOT_FOUND
    if len(en2_hex) != 2 * extranonce2_size or not _hexany(en2_hex):
        return Reject.BAD_EXTRANONCE2
    if not _hex8(ntime_hex):
        return Reject.BAD_NTIME
    if not _hex8(nonce_hex):
        return Reject.BAD_NONCE
    ntime = int(ntime_hex, 16)
    if ntime < job.ntime or ntime > now + MAX_FUTURE_DRIFT_S:
        return Reject.NTIME_OUT_OF_RANGE
    version_bits = 0
    if len(params) == 6:
        vb_hex = params[5]
        if not _hex8(vb_hex):
            return Reject.BAD_VERSION_BITS
        version_bits = int(vb_hex, 16)
        outside = version_bits & ~version_mask & 0xFFFFFFFF
        # BIP310: bits outside the mask are refused, except a miner that sends the full rolled
        # version (outside bits equal to the job's own) instead of only the rolled bits.
        if outside and outside != job.version & ~version_mask & 0xFFFFFFFF:
            return Reject.VERSION_MASK
    return Submission(
        worker, job, difficulty, bytes.fromhex(en2_hex), ntime, int(nonce_hex, 16), version_bits
    )


def judge(meets_share: bool, meets_network: bool, duplicate: bool) -> tuple[Reject | None, bool]:
    """Checks 8-10 after hashing: (reject reason or None for accepted, is_block).

    The block check comes first: a hash that meets the network target is a block even when it is
    below the share difficulty. A duplicate is never a (second) block. The caller keys duplicates
    on the header hash per job, which covers extranonce1/2 (via the merkle root), ntime, nonce
    and the rolled version, and is immune to hex case.
    """
    if meets_network and not duplicate:
        return None, True
    if not meets_share:
        return Reject.LOW_DIFFICULTY, False
    if duplicate:
        return Reject.DUPLICATE, False
    return None, False
