"""The security log's table: append events in chain order, read them back, verify the chain.

Each event is a ``poolserver.register.chain.AuditEntry`` (the audit log's hashing, reused):
``who`` = the operator (``pool`` for what the running pool raises), ``action`` = the event kind,
``subject`` = what it concerns, ``old`` = ``null``, ``new`` = the event's fields. Writers (the
pool's writer task, every CLI process, several pool instances) are serialized so the chain cannot
fork: PostgreSQL by a transaction-scoped advisory lock, SQLite by taking the write lock first;
the unique ``prev_hash`` would refuse a fork anyway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from poolserver.register import chain
from poolserver.storage.security_models import SecurityEvent

SECURITY_LOCK_KEY = 0x71617A7365637572  # "qazsecur": pg_advisory_xact_lock key of log writers
POOL = "pool"  # ``who`` of events the running pool raises itself


@dataclass(frozen=True, slots=True)
class NewEvent:
    at: datetime  # aware UTC
    kind: str
    fields: Mapping[str, Any]
    who: str = POOL
    subject: str = ""


def subject_of(fields: Mapping[str, Any]) -> str:
    """``peer:1.2.3.4 account:acme worker:rig1``: the parts of ``fields`` that name a subject."""
    parts = [
        f"{k}:{fields[k]}"
        for k in ("peer", "account", "worker", "batch", "command")
        if fields.get(k) not in (None, "")
    ]
    return " ".join(parts)[:200]


def _entry(row: Any) -> chain.AuditEntry:
    return chain.AuditEntry(
        row.seq, row.prev_hash, row.who, row.at, row.kind, row.subject, "null", row.fields, row.hash
    )


class SecurityLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def append(self, events: Sequence[NewEvent]) -> list[chain.AuditEntry]:
        """Append ``events`` in order, in one transaction; returns the stored entries."""
        if not events:
            return []
        async with self.engine.begin() as conn:
            await self._lock(conn)
            head = await self._head(conn)
            entries = []
            for e in events:
                subject = e.subject or subject_of(e.fields)
                head = chain.make_entry(head, e.who, e.at, e.kind, subject, None, dict(e.fields))
                entries.append(head)
            await conn.execute(
                SecurityEvent.__table__.insert(),
                [
                    {
                        "seq": x.seq,
                        "prev_hash": x.prev_hash,
                        "who": x.who,
                        "at": x.at,
                        "kind": x.action,
                        "subject": x.subject,
                        "fields": x.new,
                        "hash": x.hash,
                    }
                    for x in entries
                ],
            )
            return entries

    async def _lock(self, conn: AsyncConnection) -> None:
        if conn.dialect.name == "sqlite":
            # take the write lock now so the head read below cannot be overtaken
            await conn.execute(text("UPDATE security_events SET seq = seq WHERE 0"))
        else:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SECURITY_LOCK_KEY})

    async def _head(self, conn: AsyncConnection) -> chain.AuditEntry | None:
        row = (
            await conn.execute(
                select(SecurityEvent.__table__).order_by(SecurityEvent.seq.desc()).limit(1)
            )
        ).first()
        return None if row is None else _entry(row)

    async def head(self) -> chain.AuditEntry | None:
        async with self.engine.connect() as conn:
            return await self._head(conn)

    async def last_of_kind(self, kind: str) -> chain.AuditEntry | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(SecurityEvent.__table__)
                    .where(SecurityEvent.kind == kind)
                    .order_by(SecurityEvent.seq.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else _entry(row)

    async def entries(self, batch: int = 1000) -> AsyncIterator[chain.AuditEntry]:
        """Every entry in ``seq`` order, read in batches."""
        after = 0
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(SecurityEvent.__table__)
                        .where(SecurityEvent.seq > after)
                        .order_by(SecurityEvent.seq)
                        .limit(batch)
                    )
                ).all()
            for r in rows:
                yield _entry(r)
            if len(rows) < batch:
                return
            after = rows[-1].seq

    async def between(self, start: datetime, end: datetime) -> list[chain.AuditEntry]:
        """Entries with ``start <= at < end``, in ``seq`` order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(SecurityEvent.__table__)
                    .where(SecurityEvent.at >= start, SecurityEvent.at < end)
                    .order_by(SecurityEvent.seq)
                )
            ).all()
        return [_entry(r) for r in rows]

    async def verify(self, anchor: tuple[int, str] | None = None) -> chain.ChainReport:
        return chain.verify_chain([e async for e in self.entries()], anchor)
