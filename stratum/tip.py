"""The share path's job table: one ``Tip`` per chain tip (prevhash) owning everything about its
jobs, and a ``TipBook`` holding the current tip and the recent ones.

A ``Tip`` owns, for each of its jobs, a ``JobEntry`` (the job, its ``mining.notify`` line as
broadcast and as re-sent with ``clean_jobs=false``, the network target as the hash core wants
it), plus the tip's duplicate set: the 32-byte header hashes of the shares credited on this tip,
whatever job id, worker, hex case or session they came under (spec §10.3 step 6).

``TipBook.add(job)`` makes the job current. A job on a new prevhash opens a new tip: the
previous one becomes stale (its jobs stay findable, so a block solve on them is still hashed and
submitted, but its duplicate set is dropped: a stale share is rejected before the duplicate
check). The book keeps at most ``max_jobs`` jobs and ``max_tips`` tips; the oldest jobs go first
and a tip without jobs is retired with all it holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from stratum import hashcore, protocol
from stratum.interfaces import Job
from stratum.jobs import notify_params
from stratum.validate import MAX_NTIME_ROLL_S


class Tip:
    """One chain tip: its jobs (by id, oldest first), its duplicate set, and the block hashes
    already handed to the block sink (a share resubmitted after its record failed is not a
    second submission of the block)."""

    __slots__ = ("blocks", "current", "entries", "prevhash", "seen")

    def __init__(self, prevhash: bytes) -> None:
        self.prevhash = prevhash
        self.entries: OrderedDict[str, JobEntry] = OrderedDict()
        self.seen: set[bytes] = set()
        self.blocks: set[bytes] = set()
        self.current = True

    def retire(self) -> None:
        """No longer the current tip: its shares are stale, its duplicate set is freed."""
        self.current = False
        self.seen = set()
        for entry in self.entries.values():
            entry.stale = True


class JobEntry:
    """A job as the share path needs it, encoded once."""

    __slots__ = (
        "clean",
        "job",
        "network_target",
        "notify_line",
        "ntime_max",
        "ntime_min",
        "resend_line",
        "stale",
        "tip",
    )

    def __init__(self, job: Job, tip: Tip, clean: bool) -> None:
        self.job = job
        self.tip = tip
        self.clean = clean  # broadcast with clean_jobs=true (a new tip or job.clean_jobs)
        self.stale = not tip.current  # set by Tip.retire (a plain attribute: the share path)
        # the ntime window of spec §10.3: from the job's ntime (or GBT mintime if later) to
        # job ntime + 7000 (ckpool); the 2 h past-now bound is checked against the clock
        self.ntime_min = max(job.ntime, job.template.mintime)
        self.ntime_max = job.ntime + MAX_NTIME_ROLL_S
        self.network_target = hashcore.target_bytes(job.network_target)
        params = notify_params(job)
        params[8] = clean
        self.notify_line = protocol.notify_params_line(params)
        params[8] = False
        self.resend_line = protocol.notify_params_line(params)


class TipBook:
    """The pool's job table, grouped by chain tip."""

    __slots__ = ("_by_id", "current", "find", "max_jobs", "max_tips", "tips")

    def __init__(self, max_jobs: int = 64, max_tips: int = 4) -> None:
        if max_jobs < 1 or max_tips < 1:
            raise ValueError("max_jobs and max_tips must be >= 1")
        self.max_jobs = max_jobs
        self.max_tips = max_tips
        self.tips: OrderedDict[bytes, Tip] = OrderedDict()  # oldest first
        self._by_id: dict[str, JobEntry] = {}
        self.current: JobEntry | None = None
        # find(job_id): the job with this id if the pool still has it (current or stale), else
        # None. The dict's own get (no Python frame on the share path).
        self.find: Callable[[str], JobEntry | None] = self._by_id.get

    def add(self, job: Job) -> JobEntry:
        """Make ``job`` current. A new prevhash starts a new tip (the notify line says
        ``clean_jobs=true``, as it does for ``job.clean_jobs``); the duplicate set belongs to the
        tip, so a clean job on the same prevhash keeps it."""
        cur = self.current
        tip = cur.tip if cur is not None else None
        clean = job.clean_jobs or tip is None or job.prevhash != tip.prevhash
        if tip is None or job.prevhash != tip.prevhash:
            if tip is not None:
                tip.retire()
            old = self.tips.pop(job.prevhash, None)
            if old is not None:  # back to a tip we saw before (a reorg): start it afresh
                self._drop_tip(old)
            tip = Tip(job.prevhash)
            self.tips[job.prevhash] = tip
        previous = self._by_id.pop(job.job_id, None)
        if previous is not None:
            previous.tip.entries.pop(job.job_id, None)
        entry = JobEntry(job, tip, clean)
        tip.entries[job.job_id] = entry
        self._by_id[job.job_id] = entry
        self.current = entry
        self._trim()
        return entry

    def __len__(self) -> int:
        return len(self._by_id)

    def _drop_tip(self, tip: Tip) -> None:
        tip.retire()
        for job_id in tip.entries:
            self._by_id.pop(job_id, None)
        tip.entries.clear()

    def _trim(self) -> None:
        tips = self.tips
        while len(tips) > self.max_tips:
            self._drop_tip(tips.popitem(last=False)[1])
        while len(self._by_id) > self.max_jobs:
            oldest = next(iter(tips.values()))
            if oldest.entries:
                job_id, _ = oldest.entries.popitem(last=False)
                del self._by_id[job_id]
            if not oldest.entries:  # (also a tip whose only job id was reused on a newer tip)
                self._drop_tip(tips.popitem(last=False)[1])
