"""The durable share journal: ``stratum.interfaces.ShareSink`` backed by the database.

``await journal.put(share)`` returns only when the share is durable: committed to the database
in a group commit (one transaction per batch of up to ``batch_size`` shares, flushed at the latest
``flush_interval_ms`` after the batch's first share arrived), or, while the database is
unreachable, appended and fsync'd to the local spool. Every share gets a unique 16-byte ``uid``
(48-bit millisecond time + 80 random bits) before it is written anywhere.

Every insert is ``ON CONFLICT DO NOTHING``, which covers both unique keys of ``shares``:

- the same ``uid`` again is a replay of the same row (the spool after an ambiguous failure: the
  commit may or may not have happened): idempotent, stored exactly once, not a conflict;
- a different ``uid`` with a ``share_hash`` already stored is a conflict (the header hash is the
  share's identity): the row is not stored, it is recorded in ``share_conflicts`` in the same
  transaction, and never credited. In a group commit only that share's ``put`` raises
  ``stratum.interfaces.DuplicateShare`` (every other share of the batch commits); at spool replay
  (the share was acknowledged while the database was down) it is logged at WARNING and counted in
  ``JournalStats.replay_conflicts``.

Which rows were refused costs no extra query on the hot path: SQLite reports the inserted row
count of the ``executemany``; on PostgreSQL the batch is one ``unnest`` insert ``RETURNING uid``.
Only when a row was refused does one indexed ``uid IN (...)`` read in the same transaction tell
a same-uid replay from a conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from poolserver.storage.models import Share, ShareConflict
from poolserver.storage.schema import SchemaError, check_schema
from poolserver.storage.spool import Spool, SpoolError
from stratum.interfaces import AcceptedShare, DuplicateShare
from stratum.stats import Histogram

log = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now" (retry later), as opposed to a
# statement the database refuses (a bug: the batch is spooled and quarantined at replay).
UNAVAILABLE = (OperationalError, InterfaceError, OSError, asyncio.TimeoutError, ConnectionError)

_LIMITS = {
    "account": 128,
    "worker": 128,
    "session_id": 64,
    "peer": 64,
    "job_id": 64,
}
USER_AGENT_MAX = 256
REPLAY_CHUNK = 5000
LOOKUP_CHUNK = 1000  # uids / hashes per IN (...) lookup


class JournalUnavailable(RuntimeError):
    """Neither the database nor the spool could store the share: it must not be acknowledged."""


class JournalClosed(RuntimeError):
    """``put`` after ``close``."""


def new_uid() -> bytes:
    """A time-ordered unique share id: 48-bit Unix milliseconds + 80 random bits."""
    return (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)


def new_uids(n: int) -> list[bytes]:
    """``n`` uids as ``new_uid`` makes them (same millisecond prefix, 80 random bits each), from
    one clock read and one ``getrandom`` call."""
    prefix = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    rnd = os.urandom(10 * n)
    return [prefix + rnd[i : i + 10] for i in range(0, 10 * n, 10)]


def share_row(share: AcceptedShare, uid: bytes) -> dict[str, Any]:
    """The ``shares`` row for an accepted share; ValueError names the offending field."""
    for name, limit in _LIMITS.items():
        value = getattr(share, name)
        if not isinstance(value, str):
            raise ValueError(f"share.{name}: expected str, got {type(value).__name__}")
        if len(value) > limit:
            raise ValueError(f"share.{name}: longer than {limit} characters")
    if not isinstance(share.height, int) or isinstance(share.height, bool) or share.height < 0:
        raise ValueError(f"share.height: expected a non-negative int, got {share.height!r}")
    diff = share.difficulty
    if not isinstance(diff, int | float) or isinstance(diff, bool) or not math.isfinite(diff):
        raise ValueError(f"share.difficulty: expected a finite number, got {diff!r}")
    if diff <= 0:
        raise ValueError(f"share.difficulty: must be positive, got {diff!r}")
    if not isinstance(share.share_hash, bytes) or len(share.share_hash) != 32:
        raise ValueError("share.share_hash: expected 32 bytes")
    created = share.created_at
    if created.tzinfo is None or created.utcoffset() is None:
        raise ValueError("share.created_at: must be a timezone-aware UTC datetime")
    extra = share.extra
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ValueError("share.extra: keys and values must be strings")
    return {
        "uid": uid,
        "account": share.account,
        "worker": share.worker,
        "session_id": share.session_id,
        "peer": share.peer,
        "job_id": share.job_id,
        "height": share.height,
        "difficulty": float(diff),
        "share_hash": share.share_hash,
        "is_block": bool(share.is_block),
        "created_at": created,
        "user_agent": share.user_agent[:USER_AGENT_MAX],
        "extra": dict(extra),
    }


COLUMNS = (
    "uid", "account", "worker", "session_id", "peer", "job_id", "height", "difficulty",
    "share_hash", "is_block", "created_at", "user_agent", "extra",
)  # fmt: skip


def _placeholders(paramstyle: str, n: int) -> str:
    if paramstyle == "qmark":
        return ", ".join("?" * n)
    if paramstyle in ("numeric_dollar",):
        return ", ".join(f"${i}" for i in range(1, n + 1))
    if paramstyle == "format":
        return ", ".join(["%s"] * n)
    raise RuntimeError(f"unsupported DB-API paramstyle {paramstyle!r}")


# PostgreSQL types of COLUMNS, for the one-statement ``unnest`` insert.
_PG_TYPES = (
    "bytea", "varchar", "varchar", "varchar", "varchar", "varchar", "int4", "float8", "bytea",
    "bool", "timestamptz", "varchar", "json",
)  # fmt: skip


def driver_insert(engine: AsyncEngine) -> tuple[str, Any]:
    """The hot path: raw ``INSERT ... ON CONFLICT DO NOTHING`` for the DB-API driver and a
    function turning row dicts into driver parameters (what SQLAlchemy's column types would bind:
    SQLite gets UTC wall time text in SQLAlchemy's DATETIME format and JSON text, PostgreSQL an
    aware datetime for timestamptz), skipping per-row bind processing.

    SQLite: one row per execution (``executemany``), whose summed row count says whether any
    row was refused. PostgreSQL: one statement for the whole batch, ``INSERT ... SELECT FROM
    unnest(<one array per column>) ... RETURNING uid`` (asyncpg reports no row count for
    ``executemany``; the returned uids are the rows inserted, in one round trip); its parameters
    are one tuple of column arrays, to be executed once."""
    dialect = engine.dialect
    if dialect.name == "postgresql":
        arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(_PG_TYPES, 1))
        sql = (
            f"INSERT INTO shares ({', '.join(COLUMNS)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT DO NOTHING RETURNING uid"
        )

        def pg_params(rows: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
            cols: tuple[list[Any], ...] = tuple([] for _ in COLUMNS)
            (uid, account, worker, session_id, peer, job_id, height, difficulty, share_hash,
             is_block, created_at, user_agent, extra) = cols  # fmt: skip
            for r in rows:
                uid.append(r["uid"])
                account.append(r["account"])
                worker.append(r["worker"])
                session_id.append(r["session_id"])
                peer.append(r["peer"])
                job_id.append(r["job_id"])
                height.append(r["height"])
                difficulty.append(r["difficulty"])
                share_hash.append(r["share_hash"])
                is_block.append(r["is_block"])
                created_at.append(r["created_at"].astimezone(UTC))
                user_agent.append(r["user_agent"])
                extra.append(orjson.dumps(r["extra"]).decode())
            return cols

        return sql, pg_params
    sql = (
        f"INSERT INTO shares ({', '.join(COLUMNS)}) "
        f"VALUES ({_placeholders(dialect.paramstyle, len(COLUMNS))}) ON CONFLICT DO NOTHING"
    )

    def params(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        out = []
        for r in rows:
            created = r["created_at"].astimezone(UTC)
            created = created.replace(tzinfo=None).isoformat(" ", "microseconds")
            out.append(
                (
                    r["uid"], r["account"], r["worker"], r["session_id"], r["peer"], r["job_id"],
                    r["height"], r["difficulty"], r["share_hash"], r["is_block"], created,
                    r["user_agent"], orjson.dumps(r["extra"]).decode(),
                )
            )  # fmt: skip
        return out

    return sql, params


def _record_conflicts_insert(engine: AsyncEngine) -> Any:
    table = ShareConflict.__table__
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["uid"])
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["uid"])


# group commit duration (seconds): a local SQLite commit takes ~1 ms, a remote PostgreSQL a few
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass
class JournalStats:
    committed: int = 0  # shares committed directly to the database
    spooled: int = 0  # shares acknowledged from the spool
    replayed: int = 0  # spooled shares inserted at replay (same-uid replays excluded)
    batches: int = 0
    db_failures: int = 0
    duplicates: int = 0  # puts refused with DuplicateShare: share hash already stored
    replay_conflicts: int = 0  # spooled (already acked) shares whose hash was stored: not credited
    # one observation per group commit written (database or spool): its duration and size
    flush_seconds: Histogram = field(default_factory=lambda: Histogram(FLUSH_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))


_UNSETTLED: Any = object()


class _Waiter:
    """One ``put`` / ``put_many`` call: the outcome of each of its shares (None = stored, else
    the exception), handed back once the last of them is written (a call's shares may span two
    group commits). One future per call, not per share. Settling a share twice is a no-op."""

    __slots__ = ("fut", "left", "outcomes")

    def __init__(self, outcomes: list[BaseException | None], left: int) -> None:
        self.fut: asyncio.Future[list[BaseException | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self.outcomes = outcomes
        self.left = left

    def settle(self, index: int, outcome: BaseException | None) -> None:
        if self.outcomes[index] is not _UNSETTLED:
            return
        self.outcomes[index] = outcome
        self.left -= 1
        if self.left == 0 and not self.fut.done():  # done: the caller was cancelled
            self.fut.set_result(self.outcomes)


# a queued row: (row, the call waiting for it, the row's index in that call)
_Entry = tuple[dict[str, Any], _Waiter, int]


@dataclass(frozen=True)
class StoreResult:
    inserted: int  # rows new in ``shares``
    conflicts: list[dict[str, Any]]  # rows refused: another uid holds their share hash


class ShareJournal:
    """Group-committing, spool-backed ``ShareSink``. Use ``await start()`` / ``await close()``."""

    def __init__(
        self,
        engine: AsyncEngine,
        spool_dir: str | Path,
        *,
        flush_interval_ms: float = 5.0,
        batch_size: int = 2000,
        retry_interval_s: float = 2.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("storage.batch_size: must be at least 1")
        if flush_interval_ms < 0:
            raise ValueError("storage.flush_interval_ms: must not be negative")
        if retry_interval_s <= 0:
            raise ValueError("storage.retry_interval_s: must be positive")
        self.engine = engine
        self.spool = Spool(spool_dir)
        self.interval = flush_interval_ms / 1000.0
        self.batch_size = batch_size
        self.retry_interval = retry_interval_s
        self.stats = JournalStats()
        self._sql, self._params = driver_insert(engine)
        self._returns_uids = engine.dialect.name == "postgresql"
        self._pending: list[_Entry] = []
        self._first_at = 0.0
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._spool_lock = asyncio.Lock()
        self._db_ok = False
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._schema_ok = False
        # The flusher's own connection (PostgreSQL: in AUTOCOMMIT mode, see _insert_autocommit);
        # opened on first use, dropped on any error (the next batch opens a fresh one).
        self._live: AsyncConnection | None = None

    @property
    def db_available(self) -> bool:
        return self._db_ok

    async def start(self) -> None:
        """Start flushing. Replays any spool left by a previous run (in the background when the
        database is unreachable: shares are spooled meanwhile)."""
        self._db_ok = await self._probe()
        if self.spool.has_data() or not self._db_ok:
            self._db_ok = False
            self._ensure_replayer()
        self._flusher = asyncio.create_task(self._run(), name="share-journal")

    async def put(self, share: AcceptedShare) -> None:
        """Store ``share`` durably; returns only after commit (or fsync to the spool).

        Raises ValueError (naming the field) for a malformed share, JournalUnavailable when
        neither the database nor the spool can take it (the share must not be acknowledged),
        ``DuplicateShare`` when a share with the same ``share_hash`` is already stored (not
        stored again, recorded in ``share_conflicts``; it must not be credited). A share taken
        by the spool is checked at replay instead (``JournalStats.replay_conflicts``).
        """
        if self._closing:
            raise JournalClosed("the share journal is closed")
        waiter = _Waiter([_UNSETTLED], 1)
        self._enqueue([(share_row(share, new_uid()), waiter, 0)])
        outcome = (await waiter.fut)[0]
        if outcome is not None:
            raise outcome

    async def put_many(self, shares: Sequence[AcceptedShare]) -> list[BaseException | None]:
        """``put`` for several shares at once (the Stratum server's accepted shares of one hash
        batch): one outcome per share, in order: None once it is durable, else the exception
        ``put`` would raise for it (ValueError for a malformed share, which is not queued;
        ``DuplicateShare``; ``JournalUnavailable``). Returns when every share is settled."""
        if self._closing:
            raise JournalClosed("the share journal is closed")
        outcomes: list[BaseException | None] = [_UNSETTLED] * len(shares)
        waiter = _Waiter(outcomes, 0)
        entries: list[_Entry] = []
        for i, (share, uid) in enumerate(zip(shares, new_uids(len(shares)), strict=True)):
            try:
                entries.append((share_row(share, uid), waiter, i))
            except ValueError as exc:
                outcomes[i] = exc
        if not entries:
            return outcomes
        waiter.left = len(entries)
        self._enqueue(entries)
        return await waiter.fut

    def _enqueue(self, entries: list[_Entry]) -> None:
        pending = self._pending
        if not pending:
            self._first_at = time.monotonic()
            self._has_items.set()
        pending.extend(entries)
        if len(pending) >= self.batch_size:
            self._full.set()

    async def close(self) -> None:
        """Flush everything pending, then stop. A spool that could not be replayed yet stays on
        disk and is replayed at the next start."""
        self._closing = True
        self._has_items.set()
        self._full.set()
        if self._flusher is not None:
            await self._flusher
        await self._drop_live()
        if self._replayer is not None and not self._replayer.done():
            if self._db_ok:
                await self._replayer
            else:
                self._replayer.cancel()
                try:
                    await self._replayer
                except asyncio.CancelledError:
                    pass

    # -- group commit -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._has_items.clear()
                await self._has_items.wait()
                continue
            wait = self._first_at + self.interval - time.monotonic()
            if wait > 0 and len(self._pending) < self.batch_size and not self._closing:
                self._full.clear()
                # asyncio.timeout, not wait_for: see poolserver/aio.py (a cancel is kept)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._full.wait()
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            if self._pending:
                self._first_at = time.monotonic()
            try:
                await self._write(batch)
            except Exception as exc:  # never let the flusher die: fail this batch's puts
                log.exception("share journal: batch of %d could not be stored", len(batch))
                for _, waiter, i in batch:
                    waiter.settle(i, JournalUnavailable(f"share not stored: {exc}"))

    async def _write(self, batch: list[_Entry]) -> None:
        started = time.perf_counter()
        rows = [entry[0] for entry in batch]
        stored = False
        refused: dict[bytes, dict[str, Any]] = {}
        if self._db_ok:
            try:
                result = await self._insert_rows(rows)
                stored = True
                refused = {r["uid"]: r for r in result.conflicts}
                self.stats.committed += result.inserted
            except Exception as exc:
                self.stats.db_failures += 1
                self._db_ok = False
                if isinstance(exc, UNAVAILABLE):
                    log.error("share journal: database unreachable (%s); spooling shares", exc)
                else:
                    log.exception("share journal: database refused a batch; spooling it")
                self._ensure_replayer()
        if not stored:
            try:
                async with self._spool_lock:
                    await asyncio.to_thread(self.spool.append, rows)
            except OSError as exc:
                raise JournalUnavailable(f"database down and spool not writable: {exc}") from exc
            self.stats.spooled += len(rows)
        self.stats.batches += 1
        self.stats.flush_seconds.observe(time.perf_counter() - started)
        self.stats.batch_size.observe(len(rows))
        for row, waiter, i in batch:
            if refused and row["uid"] in refused:
                self.stats.duplicates += 1
                log.info(
                    "share journal: duplicate share refused: %s.%s hash %s (recorded in "
                    "share_conflicts)",
                    row["account"], row["worker"], row["share_hash"][::-1].hex(),
                )  # fmt: skip
                waiter.settle(
                    i, DuplicateShare(f"share {row['share_hash'][::-1].hex()} is already stored")
                )
            else:
                waiter.settle(i, None)

    async def _insert_rows(self, rows: Sequence[dict[str, Any]]) -> StoreResult:
        """Insert a batch of fresh rows, committed before this returns; rows whose share hash
        is already stored are recorded as ``live`` conflicts (on PostgreSQL in a second
        transaction, see ``_insert_autocommit``). The flusher keeps its own connection between
        batches (no pool checkout, pre-ping or reset per batch); any error drops it."""
        conn = await self._live_connection()
        if self._returns_uids:
            return await self._insert_autocommit(conn, rows)
        try:
            async with conn.begin():
                return await self._store(conn, rows, "live")
        except BaseException:
            await self._drop_live()
            raise

    async def _live_connection(self) -> AsyncConnection:
        conn = self._live
        if conn is None:
            conn = await self.engine.connect()
            if self._returns_uids:
                try:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                except BaseException:
                    await conn.close()
                    raise
            self._live = conn
        return conn

    async def _insert_autocommit(
        self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]
    ) -> StoreResult:
        """PostgreSQL: one round trip per batch. The one ``INSERT ... SELECT FROM unnest ...
        RETURNING uid`` statement runs on the journal's own AUTOCOMMIT connection, so it is its
        own (implicit) transaction: all of it or nothing, and committed (WAL flushed, with the
        default ``synchronous_commit``) before the server's ReadyForQuery, which the driver
        waits for before returning. A pooled transaction costs five more round trips per batch
        (pool pre-ping, BEGIN, COMMIT, the checkout's reset) in the pool process and in
        PostgreSQL. Rows refused by ``ON CONFLICT`` (rare: a hash already stored) are told
        apart and recorded in ``share_conflicts`` in a pooled transaction right after; if that
        fails, the batch is spooled like any failed batch and its stored rows are same-uid
        replays at replay (idempotent)."""
        try:
            result = await conn.exec_driver_sql(self._sql, self._params(rows))
            returned = result.scalars().all()
        except BaseException:
            await self._drop_live()
            raise
        if len(returned) == len(rows):
            return StoreResult(len(rows), [])
        inserted = {bytes(u) for u in returned}
        refused = [r for r in rows if r["uid"] not in inserted]
        async with self.engine.begin() as tx:
            present = await self._present(tx, Share.__table__.c.uid, [r["uid"] for r in refused])
            conflicts = [r for r in refused if r["uid"] not in present]
            if conflicts:
                await self._record_conflicts(tx, conflicts, "live")
        return StoreResult(len(rows) - len(conflicts), conflicts)

    async def _drop_live(self) -> None:
        conn, self._live = self._live, None
        if conn is None:
            return
        try:
            await conn.invalidate()  # after an error its state is unknown: never pooled again
            await conn.close()
        except Exception as exc:
            log.debug("share journal: closing the live connection: %r", exc)

    async def _store(self, conn: Any, rows: Sequence[dict[str, Any]], source: str) -> StoreResult:
        """Insert ``rows`` (inside the caller's transaction); rows not stored whose uid is not
        in ``shares`` afterwards lost to another uid holding their share hash: recorded in
        ``share_conflicts``. ``inserted`` is exact when every uid is fresh (the live path); the
        replay counts new rows itself."""
        result = await conn.exec_driver_sql(self._sql, self._params(rows))
        if self._returns_uids:
            returned = result.scalars().all()
            if len(returned) == len(rows):
                return StoreResult(len(rows), [])
            inserted = {bytes(u) for u in returned}
            refused = [r for r in rows if r["uid"] not in inserted]
        elif result.rowcount == len(rows):  # SQLite sums it over the executemany
            return StoreResult(len(rows), [])
        else:
            refused = list(rows)
        present = await self._present(conn, Share.__table__.c.uid, [r["uid"] for r in refused])
        conflicts = [r for r in refused if r["uid"] not in present]
        if conflicts:
            await self._record_conflicts(conn, conflicts, source)
        return StoreResult(len(rows) - len(conflicts), conflicts)

    async def _record_conflicts(
        self, conn: Any, rows: Sequence[dict[str, Any]], source: str
    ) -> None:
        table = Share.__table__
        holders: dict[bytes, bytes] = {}
        hashes = list({r["share_hash"] for r in rows})
        for i in range(0, len(hashes), LOOKUP_CHUNK):
            found = await conn.execute(
                select(table.c.share_hash, table.c.uid).where(
                    table.c.share_hash.in_(hashes[i : i + LOOKUP_CHUNK])
                )
            )
            holders.update((bytes(h), bytes(u)) for h, u in found)
        now = datetime.now(UTC)
        await conn.execute(
            _record_conflicts_insert(self.engine),
            [
                {
                    **r,
                    "source": source,
                    "existing_uid": holders.get(r["share_hash"]),
                    "detected_at": now,
                }
                for r in rows
            ],
        )

    @staticmethod
    async def _present(conn: Any, column: Any, values: list[bytes]) -> set[bytes]:
        """Which of ``values`` the (unique, indexed) ``column`` holds."""
        out: set[bytes] = set()
        for i in range(0, len(values), LOOKUP_CHUNK):
            found = await conn.execute(
                select(column).where(column.in_(values[i : i + LOOKUP_CHUNK]))
            )
            out.update(bytes(v) for v in found.scalars())
        return out

    # -- outage and replay ------------------------------------------------------------------

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(10):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                if not self._schema_ok:
                    await check_schema(self.engine)
                    self._schema_ok = True
            return True
        except SchemaError as exc:
            log.error("share journal: not writing to the database: %s", exc)
            return False
        except Exception as exc:
            log.warning("share journal: database not reachable: %s", exc)
            return False

    def _ensure_replayer(self) -> None:
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.create_task(self._replay_loop(), name="share-spool-replay")

    async def _replay_loop(self) -> None:
        first = True
        while True:
            if not first:
                if self._closing:  # close() waits for this task: no retry, the spool stays
                    return  # on disk and the next start replays it
                await asyncio.sleep(self.retry_interval)
            first = False
            if not await self._probe():
                continue
            # From here new batches go to the database; older ones are in the spool.
            async with self._spool_lock:
                await asyncio.to_thread(self.spool.rotate)
                self._db_ok = True
            try:
                await self._replay_files()
            except UNAVAILABLE as exc:
                log.error("share journal: replay interrupted (%s); retrying", exc)
                self._db_ok = False
                continue
            async with self._spool_lock:
                if not await asyncio.to_thread(self.spool.has_data):
                    log.info("share journal: spool replayed; writing to the database")
                    return

    async def _replay_files(self) -> None:
        for path in await asyncio.to_thread(self.spool.pending_files):
            try:
                rows = await asyncio.to_thread(Spool.read, path)
            except SpoolError as exc:
                moved = await asyncio.to_thread(self.spool.quarantine, path)
                log.error("share journal: %s; moved to %s for the operator", exc, moved)
                continue
            inserted = conflicts = 0
            try:
                for i in range(0, len(rows), REPLAY_CHUNK):
                    new, refused = await self._insert_counting(rows[i : i + REPLAY_CHUNK])
                    inserted += new
                    conflicts += len(refused)
                    for r in refused:
                        log.warning(
                            "share journal: spooled share not stored, its hash is already "
                            "stored (recorded in share_conflicts, not credited): account %s "
                            "worker %s hash %s uid %s",
                            r["account"], r["worker"], r["share_hash"][::-1].hex(),
                            r["uid"].hex(),
                        )  # fmt: skip
            except (IntegrityError, DBAPIError) as exc:
                if isinstance(exc, UNAVAILABLE) or exc.connection_invalidated:
                    raise
                moved = await asyncio.to_thread(self.spool.quarantine, path)
                log.error("share journal: database refused %s (%s); moved to %s", path, exc, moved)
                continue
            self.stats.replayed += inserted
            self.stats.replay_conflicts += conflicts
            log.info(
                "share journal: replayed %s: %d shares, %d new, %d conflicting",
                path.name, len(rows), inserted, conflicts,
            )  # fmt: skip
            await asyncio.to_thread(self.spool.remove, path)

    async def _insert_counting(
        self, rows: Sequence[dict[str, Any]]
    ) -> tuple[int, list[dict[str, Any]]]:
        """Insert spooled rows; returns how many were new (rows whose uid is already stored are
        the same share committed before an ambiguous failure) and the conflicting rows (another
        uid holds their hash), recorded in ``share_conflicts`` in the same transaction."""
        async with self.engine.begin() as conn:
            before = await self._present(conn, Share.__table__.c.uid, [r["uid"] for r in rows])
            fresh = [r for r in rows if r["uid"] not in before]
            if not fresh:
                return 0, []
            result = await self._store(conn, fresh, "replay")
        return result.inserted, result.conflicts
