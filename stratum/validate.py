"""Share validation: pure, ordered, one reject-reason enum.

The order (issue 10, spec §10.3): hash first whenever the share can be hashed, so that a block
solve is never lost to a reject (ckpool's order), then decide the reject.

Before hashing (``precheck`` returns a ``Reject``, nothing is hashed): params shape (20) →
subscribed (25) → at least one worker authorized on the connection (24) → job in the pool's job
table, any recent tip (21 "Job not found") → fields parse as hex, whatever their length (20).

Everything else is decided after the hash (``precheck`` puts the first failing reason in
``Submission.reject``): worker not authorized on this connection (24) → stale (21) →
extranonce2 size → ntime/nonce/version_bits exactly 8 hex digits → ntime window (job ntime ..
job ntime + 7000, at most 2 h ahead of now, not below GBT mintime) → version bits inside the
negotiated mask. ``judge`` then applies the block check first (a hash meeting the network target
is a block even when the share is rejected), then that reason, the duplicate check (one set per
chain tip keyed by the header hash, see ``stratum.tip``) and the share difficulty (23).

Both functions are pure: the caller passes the clock, the session's state and the job table.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from stratum.interfaces import Job

MAX_FUTURE_DRIFT_S = 7200  # consensus: a header time more than 2 h ahead is invalid
MAX_NTIME_ROLL_S = 7000  # ckpool: ntime at most this far past the job's


class JobRef(Protocol):
    """What validation needs to know about a job in the pool's table (``stratum.tip.JobEntry``)."""

    job: Job
    ntime_min: int  # the job's ntime, or GBT mintime if later
    ntime_max: int  # the job's ntime + MAX_NTIME_ROLL_S
    stale: bool  # on a superseded prevhash


class JobTable(Protocol):
    @property
    def find(self) -> Callable[[str], JobRef | None]: ...


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
_hexu32 = re.compile(r"[0-9a-fA-F]{1,8}").fullmatch
_hexany = re.compile(r"(?:[0-9a-fA-F]{2})*").fullmatch


class Submission:
    """A submit that can be hashed: ``reject`` is the reason it will be refused after the block
    check (None if only the duplicate and difficulty checks remain)."""

    __slots__ = (
        "difficulty",
        "extranonce2",
        "hash_mask",
        "nonce",
        "ntime",
        "ref",
        "reject",
        "version_bits",
        "worker",
    )

    def __init__(
        self,
        worker: str,
        ref: JobRef,
        difficulty: float,
        extranonce2: bytes,
        ntime: int,
        nonce: int,
        version_bits: int,
        hash_mask: int,
        reject: Reject | None = None,
    ) -> None:
        self.worker = worker
        self.ref = ref
        self.difficulty = difficulty
        self.extranonce2 = extranonce2
        self.ntime = ntime
        self.nonce = nonce
        self.version_bits = version_bits
        self.hash_mask = hash_mask  # the version mask the header is hashed with
        self.reject = reject

    @property
    def job(self) -> Job:
        return self.ref.job


def precheck(
    params: Any,
    *,
    subscribed: bool,
    workers: Collection[str],
    session_jobs: Mapping[str, float],
    book: JobTable,
    extranonce2_size: int,
    version_mask: int,
    now: float,
    difficulty: float | None = None,
) -> Reject | Submission:
    """The checks of the validation order that need no hash, in order.

    Returns a ``Reject`` only for shares that cannot or may not be hashed (shape, subscription,
    no authorized worker on the connection, job not in the pool's table, fields that do not parse
    as hex); every later reason is carried in the ``Submission``. ``session_jobs`` maps the job
    ids sent to this connection to the difficulty in force for it; a job the pool still has but
    the connection no longer remembers is judged at ``difficulty`` (the connection's current one).
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
    if not workers:
        return Reject.UNAUTHORIZED
    ref = book.find(job_id)
    if ref is None:
        return Reject.JOB_NOT_FOUND
    if not _hexany(en2_hex):
        return Reject.BAD_EXTRANONCE2
    if not _hexu32(ntime_hex):
        return Reject.BAD_NTIME
    if not _hexu32(nonce_hex):
        return Reject.BAD_NONCE
    if len(params) == 6:
        vb_hex = params[5]
        if not _hexu32(vb_hex):
            return Reject.BAD_VERSION_BITS
        version_bits = int(vb_hex, 16)
        outside = version_bits & ~version_mask & 0xFFFFFFFF
    else:
        vb_hex = "00000000"
        version_bits = outside = 0
    ntime = int(ntime_hex, 16)
    diff = session_jobs.get(job_id)
    if diff is None:
        diff = difficulty if difficulty is not None else min(session_jobs.values(), default=1.0)
    reject: Reject | None = None
    if worker not in workers:
        reject = Reject.UNAUTHORIZED
    elif ref.stale:
        reject = Reject.STALE
    elif len(en2_hex) != 2 * extranonce2_size:
        reject = Reject.BAD_EXTRANONCE2
    elif len(ntime_hex) != 8:
        reject = Reject.BAD_NTIME
    elif len(nonce_hex) != 8:
        reject = Reject.BAD_NONCE
    elif len(vb_hex) != 8:
        reject = Reject.BAD_VERSION_BITS
    elif ntime < ref.ntime_min or ntime > ref.ntime_max or ntime > now + MAX_FUTURE_DRIFT_S:
        reject = Reject.NTIME_OUT_OF_RANGE
    # BIP310: bits outside the mask are refused, except a miner that sends the full rolled
    # version (outside bits equal to the job's own) instead of only the rolled bits.
    elif outside and outside != ref.job.version & ~version_mask & 0xFFFFFFFF:
        reject = Reject.VERSION_MASK
    return Submission(
        worker,
        ref,
        diff,
        bytes.fromhex(en2_hex),
        ntime,
        int(nonce_hex, 16),
        version_bits,
        # Bits outside the mask are hashed as the miner set them (so a block is still found).
        version_mask | outside,
        reject,
    )


def judge(
    meets_share: bool, meets_network: bool, duplicate: bool, reject: Reject | None = None
) -> tuple[Reject | None, bool]:
    """After hashing: (reject reason or None for accepted, is_block).

    The block check comes first: a hash that meets the network target is a block even when it is
    below the share difficulty or the share is refused for ``reject`` (found before hashing). A
    duplicate is never a (second) block. The caller keys duplicates on the header hash per chain
    tip, which covers extranonce1/2 (via the merkle root), ntime, nonce and the rolled version,
    and is immune to hex case, job id and session.
    """
    is_block = meets_network and not duplicate
    if reject is not None:
        return reject, is_block
    if duplicate:
        return Reject.DUPLICATE, False
    if not meets_share and not is_block:
        return Reject.LOW_DIFFICULTY, False
    return None, is_block
