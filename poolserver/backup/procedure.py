"""Backup and restore, step by step (the CLI in ``poolserver/commands/backup.py`` prints what
these return).

Backup (the pool may be running): read the audit log's and the security event log's heads
(``SEQ:HASH``) → consistent copy of
the database → copy the other files → ``MANIFEST.json`` with every file's sha256 and size, the
software version and the Alembic revision. The anchor is read *before* the database copy, so the
copy holds at least the anchored entry and ``audit verify --anchor`` on the restored database
proves no entry up to it was lost or altered.

Restore (the target must be empty): verify every hash → database (SQLite file into place, or
``pg_restore`` into an empty PostgreSQL database) → files into their places → check the schema
revision and verify both chains against their anchors.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver import __version__
from poolserver.backup import database as db
from poolserver.backup.files import pool_files, restore_target
from poolserver.backup.manifest import (
    MANIFEST,
    BackupError,
    Manifest,
    entry_for,
    read_and_verify,
    write_manifest,
)
from poolserver.config import Config
from poolserver.register.chain import GENESIS, parse_anchor, verify_chain
from poolserver.register.repository import RegisterRepository
from poolserver.security.log import SecurityLog
from poolserver.storage import schema
from poolserver.storage.register_models import RegisterAudit
from poolserver.storage_config import create_engine_from_config, database_url

Say = Callable[[str], None]


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    database: str
    audit: str  # "audit log OK: N entries, ...; security log OK: ..." (both chains verified)
    config_copy: Path | None


async def audit_head(engine: AsyncEngine) -> str:
    """``SEQ:HASH`` of the newest audit entry (``0:000…`` for an empty log), as ``audit head``."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(RegisterAudit.seq, RegisterAudit.hash).order_by(RegisterAudit.seq.desc())
            .limit(1))).first()  # fmt: skip
    return f"{row.seq}:{row.hash}" if row else f"0:{GENESIS}"


def _empty_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} is not empty: back up into a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # it holds the report-signing key and the database


async def backup(config: Config, config_file: str | None, dest: Path, say: Say) -> Manifest:
    _empty_dir(dest)
    url = database_url(config)
    kind = db.backend(url)
    engine = create_engine_from_config(config)
    try:
        await schema.check_schema(engine)
        revision = list(await schema.current(engine))
        anchor = await audit_head(engine)
        security = await SecurityLog(engine).head()
    finally:
        await engine.dispose()
    security_anchor = f"{security.seq}:{security.hash}" if security else f"0:{GENESIS}"
    say(f"audit log head {anchor}, security log head {security_anchor}")
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        software_version=__version__, alembic_revision=revision,
        database_backend=kind, audit_anchor=anchor, security_anchor=security_anchor,
    )  # fmt: skip
    if kind == "sqlite":
        rel = db.SQLITE_NAME
        db.sqlite_backup(url, dest / rel)
    else:
        rel = db.PG_NAME
        db.pg_backup(url, dest / rel)
    shown = make_url(url).render_as_string(hide_password=True)
    manifest.files.append(entry_for(dest, rel, "database", shown))
    say(f"database {shown}: {manifest.files[-1].size} bytes ({kind}, revision "
        f"{', '.join(revision)})")  # fmt: skip
    for f in pool_files(config, config_file):
        target = dest / f.backup_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.path, target)
        if f.role == "report-key":
            target.chmod(0o600)
        manifest.files.append(entry_for(dest, f.backup_name, f.role, str(f.path)))
        say(f"{f.role}: {f.path} ({manifest.files[-1].size} bytes)")
    write_manifest(dest, manifest)
    say(f"{MANIFEST}: {len(manifest.files)} files, sha256 each")
    return manifest


def _check_targets(config: Config, manifest: Manifest, url: str) -> None:
    """Refuse before writing anything if a file the restore would write exists."""
    for f in manifest.files:
        if f.role == "database":
            continue
        target = restore_target(config, f.role, f.path)
        if target is not None and target.exists():
            raise BackupError(f"{target} exists: restore only into an empty data directory")
    data = config.data_path
    if data.exists() and any(data.iterdir()):
        raise BackupError(f"data directory {data} is not empty: restore needs an empty one")
    if db.backend(url) == "sqlite" and db.sqlite_path(url).exists():
        raise BackupError(f"{db.sqlite_path(url)} exists: restore needs a new database file")


async def restore(config: Config, src: Path, say: Say) -> RestoreResult:
    manifest = read_and_verify(src)
    say(f"{MANIFEST}: {len(manifest.files)} files verified (sha256), backup of "
        f"{manifest.created_at}, qazpool {manifest.software_version}")  # fmt: skip
    url = database_url(config)
    kind = db.backend(url)
    if kind != manifest.database_backend:
        raise BackupError(f"the backup holds a {manifest.database_backend} database but "
                          f"storage.url is {kind}: restore into the same kind")  # fmt: skip
    (dbfile,) = manifest.by_role("database")
    _check_targets(config, manifest, url)
    engine = create_engine_from_config(config)
    try:
        if kind == "postgresql" and not await schema.is_empty(engine):
            raise BackupError("the PostgreSQL database of storage.url has tables: restore "
                              "only into an empty database (createdb a new one)")  # fmt: skip
    finally:
        await engine.dispose()
    config.data_path.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        db.sqlite_restore(src / dbfile.path, url)
    else:
        db.pg_restore(src / dbfile.path, url)
    shown = make_url(url).render_as_string(hide_password=True)
    say(f"database restored into {shown}")
    config_copy = None
    for f in manifest.files:
        if f.role == "database":
            continue
        target = restore_target(config, f.role, f.path)
        if target is None:
            config_copy = src / f.path
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / f.path, target)
        if f.role == "report-key":
            target.chmod(0o600)
        say(f"{f.role}: {target}")
    audit = await check_restored(config, manifest)
    say(audit)
    return RestoreResult(manifest, shown, audit, config_copy)


async def check_restored(config: Config, manifest: Manifest) -> str:
    """Schema at the backup's revision and the audit chain verified against its anchor."""
    engine = create_engine_from_config(config)
    try:
        have = list(await schema.current(engine))
        if have != manifest.alembic_revision:
            raise BackupError(f"restored schema is at {have}, the manifest says "
                              f"{manifest.alembic_revision}")  # fmt: skip
        repo = RegisterRepository(engine, network=config.register.network or config.chain.network)
        entries = [e async for e in repo.audit_entries()]
        sec_anchor = parse_anchor(manifest.security_anchor)
        security = await SecurityLog(engine).verify(None if sec_anchor[0] == 0 else sec_anchor)
    finally:
        await engine.dispose()
    if not security.ok:
        raise BackupError(f"security event log of the restored database: {security.problem}")
    anchor = parse_anchor(manifest.audit_anchor)
    report = verify_chain(entries, None if anchor[0] == 0 else anchor)
    if not report.ok:
        raise BackupError(f"audit chain of the restored database: {report.problem}")
    head = f"{report.head.seq}:{report.head.hash}" if report.head else "empty"
    return (f"audit log OK: {report.checked} entries, head {head} (anchor "
            f"{manifest.audit_anchor}); security log OK: {security.checked} events (anchor "
            f"{manifest.security_anchor})")  # fmt: skip
