"""Online, consistent database copies and their restore.

- SQLite: the backup API (``sqlite3.Connection.backup``) copies the whole file in one step
  under a read transaction: in WAL mode the pool keeps committing shares meanwhile and the copy
  is the database as of one instant (what ``cp`` of a live WAL database is not).
- PostgreSQL: ``pg_dump --format=custom`` (one snapshot, ``REPEATABLE READ``), restored with
  ``pg_restore --no-owner --exit-on-error`` into an empty database. The binaries come from
  PATH or Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first; pg_dump must not be
  older than the server).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from poolserver.backup.manifest import BackupError

SQLITE_NAME = "database.sqlite3"
PG_NAME = "database.pgdump"


def backend(url: str) -> str:
    return make_url(url).get_backend_name()


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database:
        raise BackupError("storage.url: SQLite needs a file")
    return Path(database)


def sqlite_backup(url: str, dest: Path) -> None:
    """Copy the live SQLite database at ``url`` to ``dest`` (a new file), consistently."""
    src_path = sqlite_path(url)
    if not src_path.is_file():
        raise BackupError(f"database {src_path} does not exist")
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # pages=-1: all pages in one step, one consistent snapshot
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {src_path} fails integrity_check: {check}")
        finally:
            dst.close()
    finally:
        src.close()


def sqlite_restore(copy: Path, url: str) -> Path:
    """Put the backed-up file in place of the (absent) database file of ``url``."""
    target = sqlite_path(url)
    for p in (target, Path(f"{target}-wal"), Path(f"{target}-journal")):
        if p.exists():
            raise BackupError(f"{p} exists: restore only into an empty data directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".restoring")
    shutil.copyfile(copy, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(target)
    return target


def pg_tool(name: str) -> str:
    """Path of ``pg_dump`` / ``pg_restore``: PATH first, then Debian's versioned directories."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0, reverse=True)  # fmt: skip
    if not candidates:
        raise BackupError(
            f"{name} not found (Debian: apt-get install postgresql-client); it is needed to "
            "back up or restore a PostgreSQL database"
        )
    return str(candidates[0])


def libpq_args(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection options (``-h -p -U -d``) and environment (``PGPASSWORD``) for the libpq
    tools from a ``postgresql+asyncpg://`` URL (unix sockets: ``?host=/run/postgresql``)."""
    u: URL = make_url(url)
    host = u.query.get("host") or u.host
    port = u.query.get("port") or (str(u.port) if u.port else None)
    args: list[str] = []
    if isinstance(host, tuple):
        host = host[0]
    if isinstance(port, tuple):
        port = port[0]
    if host:
        args += ["-h", str(host)]
    if port:
        args += ["-p", str(port)]
    if u.username:
        args += ["-U", u.username]
    if not u.database:
        raise BackupError("storage.url: names no database")
    args += ["-d", u.database]
    env = {"PGPASSWORD": u.password} if u.password else {}
    return args, env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def pg_backup(url: str, dest: Path) -> None:
    args, env = libpq_args(url)
    _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(dest), *args],
         env, "pg_dump")  # fmt: skip


def pg_restore(dump: Path, url: str) -> None:
    """``pg_restore`` into the database of ``url``, which must exist and be empty (checked by
    the caller): the whole restore in one transaction, stopping at the first error."""
    args, env = libpq_args(url)
    _run([pg_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
          *args, str(dump)], env, "pg_restore")  # fmt: skip
