"""The pool's files besides the database, by role: where a backup finds them and where a restore
puts them back (both from the ``Config``; ``restore --into DIR`` swaps the data dir).

Append-only records (found blocks, the embedded chain and wallet, spool segments) are copied
after the database: a record newer than the database copy is imported again at the restored
pool's start (found blocks by hash, spool shares by their unique header hash), so nothing in
them is lost or counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poolserver.bitcoin.found_blocks import FALLBACK_FILE
from poolserver.config import Config
from poolserver.report_deadline import key_path
from poolserver.storage_config import storage_settings

EMBEDDED_CHAIN = "embedded-chain.jsonl"
EMBEDDED_WALLET = "embedded-wallet.jsonl"


@dataclass(frozen=True)
class PoolFile:
    role: str
    path: Path  # where it lives (or would live) for this config
    backup_name: str  # path inside the backup directory


def pool_files(config: Config, config_file: str | None) -> list[PoolFile]:
    """Every file of the pool that exists now (the spool: each segment), in copy order."""
    data = config.data_path
    out = [
        PoolFile("found-blocks", data / FALLBACK_FILE, f"files/{FALLBACK_FILE}"),
        PoolFile("embedded-chain", data / EMBEDDED_CHAIN, f"files/{EMBEDDED_CHAIN}"),
        PoolFile("embedded-wallet", data / EMBEDDED_WALLET, f"files/{EMBEDDED_WALLET}"),
    ]
    key = key_path(config)
    out.append(PoolFile("report-key", key, "keys/report-signing.key"))
    out.append(PoolFile("report-key-pub", Path(f"{key}.pub"), "keys/report-signing.key.pub"))
    spool = storage_settings(config).spool_path()
    if spool.is_dir():
        for seg in sorted(p for p in spool.iterdir() if p.is_file()):
            out.append(PoolFile("spool", seg, f"spool/{seg.name}"))
    if config_file:
        out.append(PoolFile("config", Path(config_file), "config/pool.toml"))
    return [f for f in out if f.path.is_file()]


def restore_target(config: Config, role: str, backup_name: str) -> Path | None:
    """Where a file of ``role`` goes for ``config``; None for the config itself (the operator
    decides where the restored pool's config lives; the backup's copy is shown)."""
    data = config.data_path
    name = Path(backup_name).name
    if role in ("found-blocks", "embedded-chain", "embedded-wallet"):
        return data / name
    if role == "report-key":
        return key_path(config)
    if role == "report-key-pub":
        return Path(f"{key_path(config)}.pub")
    if role == "spool":
        return storage_settings(config).spool_path() / name
    if role == "config":
        return None
    raise ValueError(f"unknown role {role!r}")
