"""The job table by chain tip (stratum.tip): pure bookkeeping, no sockets."""

from __future__ import annotations

import dataclasses

from stratum.tip import TipBook
from tests.stratum_support import fixture_job

JOB = fixture_job()


def _job(job_id: str, tip: int, clean: bool = False):
    return dataclasses.replace(JOB, job_id=job_id, prevhash=bytes(31) + bytes([tip]),
                               clean_jobs=clean)  # fmt: skip


def test_jobs_of_one_tip_share_its_duplicate_set_and_a_new_tip_retires_it():
    book = TipBook()
    a1, a2 = book.add(_job("1", 1)), book.add(_job("2", 1))
    assert a1.tip is a2.tip and a1.clean and not a2.clean and not a2.stale
    a1.tip.seen.add(b"h" * 32)
    b1 = book.add(_job("3", 2))
    assert b1.clean and b1.tip is not a1.tip
    assert a1.stale and a2.stale and a1.tip.seen == set()  # retired together
    assert book.find("1") is a1  # still hashed (a block on it is still found), judged stale
    assert book.current is b1


def test_table_keeps_max_jobs_and_max_tips_and_drops_emptied_tips():
    book = TipBook(max_jobs=4, max_tips=2)
    for i in range(3):
        book.add(_job(f"a{i}", 1))
    book.add(_job("b0", 2))
    book.add(_job("b1", 2))
    assert len(book) == 4 and book.find("a0") is None and book.find("a1") is not None
    book.add(_job("c0", 3))  # a third tip: the oldest goes with all its jobs
    assert list(book.tips) == [bytes(31) + b"\x02", bytes(31) + b"\x03"]
    assert book.find("a1") is None and book.find("b0") is not None


def test_a_tip_emptied_by_a_reused_job_id_is_dropped_when_trimming():
    book = TipBook(max_jobs=3, max_tips=4)
    book.add(_job("x", 1))
    book.add(_job("x", 2))  # the id moves to the new tip; tip 1 has no job left
    for i in range(4):
        book.add(_job(f"d{i}", 2))
    assert len(book) == 3 and [book.find(f"d{i}") is not None for i in range(4)] == [
        False, True, True, True]  # fmt: skip
    assert list(book.tips) == [bytes(31) + b"\x02"]
