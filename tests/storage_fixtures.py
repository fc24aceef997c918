"""Database fixtures for every test that touches storage: a real PostgreSQL server and SQLite.

``pg_server`` (session) runs ``initdb`` + ``pg_ctl`` on a temporary data directory (as the
``postgres`` user when the tests run as root), listening only on a unix socket in that directory.
``db_url`` is parametrized over both databases: each test gets a fresh database with the schema
at head (SQLite: a copy of a migrated template file; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``).
``empty_db_url`` gives a fresh database without any schema. If PostgreSQL cannot start, the
PostgreSQL variants fail when ``CI`` is set and are skipped (with the reason) otherwise.

Use: ``def test_x(db_url): ...`` or ``async def test_y(engine): ...``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.storage import schema
from poolserver.storage.engine import create_engine

PG_USER = "postgres"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def find_pg_bin() -> Path:
    """The directory holding initdb/pg_ctl (Debian keeps them out of PATH)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if not candidates:
        raise FileNotFoundError(
            "PostgreSQL binaries not found (run scripts/system-deps.d/postgresql.sh)"
        )
    return candidates[0].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A throwaway PostgreSQL cluster on a unix socket; stop()/start() keep its data."""

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="qazpool-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self._ids = itertools.count(1)
        if self.as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o755)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                PG_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )

    def _run(self, cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if self.as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]

    def start(self) -> None:
        opts = (
            f"-c listen_addresses='' -c unix_socket_directories={self.root} -p {self.port} "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        try:
            self._run(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr}\n{log[-2000:]}") from exc

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def psql(self, sql: str, db: str = "postgres") -> str:
        cmd = [
            str(self.bin / "psql"),
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            PG_USER,
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def url(self, db: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}@/{db}?host={self.root}&port={self.port}"

    def new_database(self, template: str | None = None) -> str:
        name = f"t{os.getpid()}_{next(self._ids)}"
        extra = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        self.psql(f"CREATE DATABASE {name}{extra}")
        return name

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer()
        server.start()
    except (OSError, RuntimeError, subprocess.CalledProcessError, KeyError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        msg = f"PostgreSQL could not start: {exc} {detail}".strip()
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A PostgreSQL database with the schema at head, copied for each test."""
    name = pg_server.new_database()
    asyncio.run(_migrate(pg_server.url(name)))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with the schema at head (parametrized: sqlite, postgres)."""
    if db_backend == "sqlite":
        path = tmp_path / "qazpool.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.url(server.new_database(template=request.getfixturevalue("pg_template")))


@pytest.fixture
def empty_db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with no schema at all (parametrized: sqlite, postgres)."""
    if db_backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.url(server.new_database())


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    try:
        yield eng
    finally:
        await eng.dispose()
