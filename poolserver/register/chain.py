"""The audit log's hash chain (pure part).

Entry ``n`` stores ``hash_n = sha256(canonical_json({seq, prev, who, at, action, subject, old,
new}))`` with ``prev = hash_{n-1}`` (64 zeros for the first entry). Canonical JSON: sorted keys,
no spaces, UTF-8, no NaN; times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC). Editing any field of
an entry breaks its hash; deleting an entry leaves a gap in ``seq`` and a ``prev`` that matches
nothing. Deleting the newest entries is detected against an anchor (``seq:hash`` of a head the
operator recorded elsewhere, e.g. from ``poolserver audit head``).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from poolserver.register.errors import RegisterError
from poolserver.register.timeutil import require_utc

GENESIS = "0" * 64


def jsonable(value: Any) -> Any:
    """Plain JSON values for the audit record: times as UTC ISO text, Decimals as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise TypeError(f"audit values must be plain data, got {type(value).__name__}")


def canonical(value: Any) -> str:
    return json.dumps(
        jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_time(at: datetime) -> str:
    return require_utc(at, "at").astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    prev_hash: str
    who: str
    at: datetime
    action: str  # e.g. "license.suspend"
    subject: str  # e.g. "miner:acme license:KZ-0001"
    old: str  # canonical JSON text of the value before ("null" when created)
    new: str  # canonical JSON text of the value after ("null" when deleted)
    hash: str


def entry_hash(
    seq: int, prev_hash: str, who: str, at: datetime, action: str, subject: str, old: str, new: str
) -> str:
    payload = {
        "seq": seq,
        "prev": prev_hash,
        "who": who,
        "at": format_time(at),
        "action": action,
        "subject": subject,
        "old": json.loads(old),
        "new": json.loads(new),
    }
    return hashlib.sha256(canonical(payload).encode("utf-8")).hexdigest()


def make_entry(
    prev: AuditEntry | None,
    who: str,
    at: datetime,
    action: str,
    subject: str,
    old: Any,
    new: Any,
) -> AuditEntry:
    """The next entry after ``prev`` (None: the first entry)."""
    if not who or not who.strip():
        raise RegisterError("who", "every change must name who made it")
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    at = require_utc(at, "at")
    old_text, new_text = canonical(old), canonical(new)
    digest = entry_hash(seq, prev_hash, who, at, action, subject, old_text, new_text)
    return AuditEntry(seq, prev_hash, who, at, action, subject, old_text, new_text, digest)


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    checked: int
    head: AuditEntry | None = None
    bad_seq: int | None = None  # the first edited entry, or where deleted entries were
    problem: str = ""


def parse_anchor(text: str) -> tuple[int, str]:
    seq, sep, digest = text.strip().partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise RegisterError("anchor", "want SEQ:HASH as printed by `poolserver audit head`")
    return int(seq), digest.lower()


def verify_chain(
    entries: Iterable[AuditEntry], anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Walk entries in ``seq`` order; report the first edited or deleted entry by number."""
    prev: AuditEntry | None = None
    checked = 0
    anchor_seen = False
    for entry in entries:
        expected_seq = 1 if prev is None else prev.seq + 1
        expected_prev = GENESIS if prev is None else prev.hash
        if entry.seq != expected_seq:
            what = (
                f"entries {expected_seq}..{entry.seq - 1} are missing (deleted)"
                if entry.seq > expected_seq
                else f"entry {entry.seq} is out of order or duplicated"
            )
            return ChainReport(False, checked, prev, expected_seq, what)
        try:
            digest = entry_hash(
                entry.seq,
                entry.prev_hash,
                entry.who,
                entry.at,
                entry.action,
                entry.subject,
                entry.old,
                entry.new,
            )
        except (ValueError, TypeError) as exc:
            return ChainReport(
                False, checked, prev, entry.seq, f"entry {entry.seq} is unreadable: {exc}"
            )
        if digest != entry.hash:
            return ChainReport(
                False,
                checked,
                prev,
                entry.seq,
                f"entry {entry.seq} was edited: its content does not match its hash",
            )
        if entry.prev_hash != expected_prev:
            return ChainReport(
                False,
                checked,
                prev,
                entry.seq,
                f"entry {entry.seq} does not follow entry {entry.seq - 1}: the chain was "
                "rewritten or an entry before it was replaced",
            )
        if anchor is not None and entry.seq == anchor[0]:
            if entry.hash != anchor[1]:
                return ChainReport(
                    False,
                    checked,
                    prev,
                    entry.seq,
                    f"entry {entry.seq} differs from the recorded anchor: the log was rewritten",
                )
            anchor_seen = True
        prev = entry
        checked += 1
    if anchor is not None and not anchor_seen:
        last = prev.seq if prev else 0
        return ChainReport(
            False,
            checked,
            prev,
            last + 1,
            f"the log ends at entry {last} but the anchor names entry {anchor[0]}: "
            f"entries {last + 1}..{anchor[0]} were deleted",
        )
    return ChainReport(True, checked, prev)
