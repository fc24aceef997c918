"""`poolserver backup` / `restore`: the manifest refuses what it must, and the restore drill.

The drill (slow, SQLite and PostgreSQL): a real pool process on the embedded chain with a
seeded register (audit entries) and its payout service crediting found blocks, real Stratum
miners submitting shares; `poolserver backup DIR` runs beside it; the backup is restored into a
new data dir (and a new, empty PostgreSQL database); then every share acknowledged before the
backup started is in the restored database, the audit chain verifies against the manifest's
anchor, `poolserver payouts reconcile` agrees to the satoshi, and the restored pool serves a
miner.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from poolserver.backup.database import libpq_args
from poolserver.cli import main
from poolserver.storage.engine import create_engine
from poolserver.storage.models import FoundBlock, LedgerEntry, Share
from tests.payout_support import seed_register
from tests.pool_load import ShareLoad
from tests.pool_process import ROOT, PoolProcess, free_port, write_config
from tests.stratum_client import StratumClient

PAYOUTS = """
[payouts]
tick_interval_s = 0.3
allocation_delay_s = 0.0
maturity_confirmations = 2
min_payout_sats = 1000
"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poolserver", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip


async def acli(config: Path, *args: str) -> tuple[int, str]:
    """The CLI as a child process without blocking the event loop (the miners keep mining)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "poolserver", "--config", str(config), *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode()


async def seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await seed_register(engine)  # miners, licenses, addresses, fees: audit entries
    finally:
        await engine.dispose()


async def stored(url: str) -> tuple[set[bytes], set[str], int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            shares = set((await conn.execute(select(Share.share_hash))).scalars())
            blocks = set((await conn.execute(select(FoundBlock.block_hash))).scalars())
            ledger = (await conn.execute(select(func.count()).select_from(LedgerEntry))).scalar()
    finally:
        await engine.dispose()
    return shares, blocks, int(ledger or 0)


def small_pool(tmp: Path, data: Path, url: str, port: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return write_config(tmp / "pool.toml", data_dir=data, port=port, url=url,
                        shares_per_block=40, extra=PAYOUTS)  # fmt: skip


# ---- refusals (fast; the CLI in-process) --------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A stopped pool's data dir (schema, seeded register, report key) and its backup."""
    tmp = tmp_path_factory.mktemp("backup")
    data = tmp / "a" / "data"
    cfg = small_pool(tmp / "a", data, "", free_port())
    assert main(["--config", str(cfg), "db", "upgrade"]) == 0
    asyncio.run(seed(f"sqlite+aiosqlite:///{data / 'qazpool.sqlite3'}"))
    assert main(["--config", str(cfg), "report", "keygen"]) == 0
    assert main(["--config", str(cfg), "backup", str(tmp / "bk")]) == 0
    return cfg, tmp / "bk"


@pytest.fixture
def backed_up(pristine: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The pristine backup, copied for one test to alter."""
    cfg, bk = pristine
    shutil.copytree(bk, tmp_path / "bk")
    return cfg, tmp_path / "bk"


def test_backup_lists_every_file_with_its_hash_and_the_anchor(backed_up, capsys):
    cfg, bk = backed_up
    manifest = json.loads((bk / "MANIFEST.json").read_text())
    roles = {f["role"] for f in manifest["files"]}
    assert {"database", "report-key", "report-key-pub", "config"} <= roles
    assert manifest["alembic_revision"] and manifest["software_version"]
    seq, digest = manifest["audit_anchor"].split(":")
    assert int(seq) >= 10 and len(digest) == 64  # seed_register wrote entries
    code, out, _ = run_cli(capsys, cfg, "audit", "head")
    assert code == 0 and out.strip() == manifest["audit_anchor"]
    assert (bk / "keys" / "report-signing.key").stat().st_mode & 0o777 == 0o600


def test_restore_refuses_altered_missing_or_extra_files_before_writing(backed_up, tmp_path,
                                                                       capsys):  # fmt: skip
    cfg, bk = backed_up
    target = tmp_path / "r"
    key = bk / "keys" / "report-signing.key"
    original = key.read_bytes()
    key.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    code, _, err = run_cli(capsys, cfg, "restore", str(bk), "--into", str(target))
    assert code == 1 and "report-signing.key: sha256 differs" in err
    assert not target.exists()
    key.write_bytes(original)
    (bk / "stray.txt").write_text("x")
    code, _, err = run_cli(capsys, cfg, "restore", str(bk), "--into", str(target))
    assert code == 1 and "stray.txt" in err
    (bk / "stray.txt").unlink()
    (bk / "config" / "pool.toml").unlink()
    code, _, err = run_cli(capsys, cfg, "restore", str(bk), "--into", str(target))
    assert code == 1 and "pool.toml: missing" in err
    assert not target.exists()


def test_restore_refuses_a_non_empty_target_and_backup_a_non_empty_dir(backed_up, tmp_path,
                                                                        capsys):  # fmt: skip
    cfg, bk = backed_up
    target = tmp_path / "r"
    target.mkdir()
    (target / "something").write_text("x")
    code, _, err = run_cli(capsys, cfg, "restore", str(bk), "--into", str(target))
    assert code == 1 and "not empty" in err
    code, _, err = run_cli(capsys, cfg, "backup", str(bk))
    assert code == 1 and "not empty" in err
    # the clean restore works and the restored register's chain verifies against the anchor
    code, out, err = run_cli(capsys, cfg, "restore", str(bk), "--into", str(tmp_path / "ok"))
    assert code == 0, err
    assert "audit log OK: 10 entries" in out and "security log OK:" in out
    assert (tmp_path / "ok" / "qazpool.sqlite3").is_file()
    assert (tmp_path / "ok" / "report-signing.key").stat().st_mode & 0o777 == 0o600


def test_round_trip_on_each_database(db_backend, db_url, request, tmp_path, capsys):
    """pg_dump / pg_restore (and the SQLite backup API) on a stopped pool's database."""
    asyncio.run(seed(db_url))
    cfg = small_pool(tmp_path / "a", tmp_path / "a" / "data", db_url, free_port())
    code, out, err = run_cli(capsys, cfg, "backup", str(tmp_path / "bk"))
    assert code == 0, err
    name = "database.pgdump" if db_backend == "postgres" else "database.sqlite3"
    assert (tmp_path / "bk" / name).stat().st_size > 0
    if db_backend == "postgres":
        server = request.getfixturevalue("pg_server")
        new_url = server.url(server.new_database())
    else:
        new_url = ""
    cfg2 = small_pool(tmp_path / "b", tmp_path / "b" / "data", new_url, free_port())
    code, out, err = run_cli(capsys, cfg2, "restore", str(tmp_path / "bk"))
    assert code == 0, err
    assert "audit log OK: 10 entries" in out and "security log OK:" in out
    # a second restore into the now non-empty database is refused
    if db_backend == "postgres":
        cfg3 = small_pool(tmp_path / "c", tmp_path / "c" / "data", new_url, free_port())
        code, _, err = run_cli(capsys, cfg3, "restore", str(tmp_path / "bk"))
        assert code == 1 and "has tables" in err


def test_libpq_arguments_from_the_storage_url():
    args, env = libpq_args("postgresql+asyncpg://pool:s3cret@db.local:5433/qaz")
    assert args == ["-h", "db.local", "-p", "5433", "-U", "pool", "-d", "qaz"]
    assert env == {"PGPASSWORD": "s3cret"}
    args, env = libpq_args("postgresql+asyncpg://postgres@/qaz?host=/run/postgresql&port=5444")
    assert args == ["-h", "/run/postgresql", "-p", "5444", "-U", "postgres", "-d", "qaz"]
    assert env == {}


# ---- the drill (slow) --------------------------------------------------------------------------


@pytest.mark.slow
async def test_restore_drill_under_load(db_backend, db_url, request, tmp_path):
    await seed(db_url)
    port = free_port()
    cfg = small_pool(tmp_path / "a", tmp_path / "a" / "data", db_url, port)
    pool = PoolProcess(cfg, tmp_path / "a" / "pool.log")
    load = ShareLoad("127.0.0.1", port, connections=4, in_flight=4, account="alice")
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    pool.start()
    try:
        await pool.wait_ready()
        task = asyncio.create_task(load.run(stop))
        for _ in range(600):  # blocks found and credited before the backup
            if len(load.blocks) >= 4:
                break
            await asyncio.sleep(0.1)
        assert len(load.blocks) >= 4, pool.log_tail()
        await asyncio.sleep(1.0)
        acked_before = set(load.acked)
        code, out = await acli(cfg, "backup", str(tmp_path / "bk"))
        assert code == 0, out
        during = len(load.acked) - len(acked_before)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 30)
        assert await pool.terminate() == 0, pool.log_tail()
    finally:
        stop.set()
        pool.ensure_stopped()
        if task is not None and not task.done():
            task.cancel()
    assert during > 0, "no share was acknowledged while the backup ran: not a backup under load"
    assert "database " in out and "MANIFEST.json" in out

    # restore into a new data dir (and a new empty PostgreSQL database)
    if db_backend == "postgres":
        server = request.getfixturevalue("pg_server")
        new_url = server.url(server.new_database())
    else:
        new_url = ""
    port2 = free_port()
    data2 = tmp_path / "b" / "data"
    cfg2 = small_pool(tmp_path / "b", data2, new_url, port2)
    restored = cli(cfg2, "restore", str(tmp_path / "bk"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "audit log OK:" in restored.stdout and "security log OK:" in restored.stdout

    url2 = new_url or f"sqlite+aiosqlite:///{data2 / 'qazpool.sqlite3'}"
    shares, blocks, ledger = await stored(url2)
    spooled = list((data2 / "spool").glob("*")) if (data2 / "spool").exists() else []
    missing = acked_before - shares
    assert not missing or spooled, f"{len(missing)} shares acked before the backup are lost"
    assert {b.block_hash for b in load.blocks if b.share_hash in acked_before} <= blocks | {
        b.block_hash for b in load.blocks if spooled
    }
    assert ledger > 0, "no credit or fee entry in the restored ledger"

    anchor = json.loads((tmp_path / "bk" / "MANIFEST.json").read_text())["audit_anchor"]
    verify = cli(cfg2, "audit", "verify", "--anchor", anchor)
    assert verify.returncode == 0 and verify.stdout.startswith("OK:"), verify.stdout

    # the restored pool starts, takes the spool and records back, and serves a miner
    pool2 = PoolProcess(cfg2, tmp_path / "b" / "pool.log")
    pool2.start()
    try:
        await pool2.wait_ready()
        client = await StratumClient.connect("127.0.0.1", port2)
        await client.cpuminer("bob.restored")
        job = await client.wait_job(timeout=10)
        reply = await client.submit(job, client.grind(job))
        assert reply.get("result") is True, reply
        await client.close()
        await asyncio.sleep(1.5)  # a few payout ticks on the restored books
        assert await pool2.terminate() == 0, pool2.log_tail()
    finally:
        pool2.ensure_stopped()
    shares2, _, _ = await stored(url2)
    assert acked_before <= shares2, f"{len(acked_before - shares2)} acked shares lost"
    rec = cli(cfg2, "payouts", "reconcile")
    assert rec.returncode == 0, rec.stdout + rec.stderr
