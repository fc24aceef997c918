"""`poolserver backup DIR` and `poolserver restore DIR [--into DATA_DIR]`.

``backup`` runs beside the live pool (no need to stop it): a consistent copy of the database,
the audit log's anchor, the report-signing keys, the embedded chain and wallet, the share spool,
the found-block records and the config, with ``MANIFEST.json`` (sha256 and size of each file,
qazpool version, Alembic revision). ``restore`` verifies every hash first, refuses a non-empty
target, puts everything back and verifies the audit chain against the anchor. Exit 0 on
success, 1 with one line saying why on any refusal. See poolserver/backup/.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from poolserver.config import Config, load_config


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", help="online backup: database, keys, records, config, manifest")
    b.add_argument("dir", metavar="DIR", help="new or empty directory for the backup")
    b.set_defaults(func=_backup)
    r = sub.add_parser("restore", help="restore a backup into an empty data dir / database")
    r.add_argument("dir", metavar="DIR", help="a directory written by `poolserver backup`")
    r.add_argument("--into", metavar="DATA_DIR",
                   help="data directory to restore into (default: [pool].data_dir)")  # fmt: skip
    r.set_defaults(func=_restore)


def _say(line: str) -> None:
    print(line, flush=True)


def _backup(args: argparse.Namespace) -> int:
    from poolserver.backup.manifest import BackupError
    from poolserver.backup.procedure import backup

    config = load_config(args.config)
    dest = Path(args.dir)
    try:
        asyncio.run(backup(config, args.config, dest, _say))
    except (BackupError, OSError) as exc:
        print(f"poolserver backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup complete: {dest.resolve()}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from poolserver.backup.manifest import BackupError
    from poolserver.backup.procedure import restore
    from poolserver.register.errors import RegisterError

    config = load_config(args.config)
    if args.into:
        config = _into(config, str(args.into))
    try:
        result = asyncio.run(restore(config, Path(args.dir), _say))
    except (BackupError, RegisterError, OSError) as exc:
        print(f"poolserver restore: {exc}", file=sys.stderr)
        return 1
    print(f"restore complete into {config.data_path.resolve()} and {result.database}")
    if result.config_copy is not None:
        print(f"the backed-up pool's config is {result.config_copy}: compare it with the config "
              "the restored pool will run with")  # fmt: skip
    return 0


def _into(config: Config, data_dir: str) -> Config:
    return dataclasses.replace(config, pool=dataclasses.replace(config.pool, data_dir=data_dir))


def record_restore(args: argparse.Namespace, operator: str, argv: list[str], rc: int) -> None:
    """A successful ``restore --into DIR`` is recorded in the restored database's security log
    (the config's own data dir may be another pool's); a refused one in the configured pool's,
    like any other command (the target may hold no database at all)."""
    import asyncio as aio

    from poolserver.security import cli_actions
    from poolserver.security.log import SecurityLog
    from poolserver.storage_config import create_engine_from_config

    config = _into(load_config(args.config), str(args.into))

    async def write() -> None:
        engine = create_engine_from_config(config)
        try:
            await SecurityLog(engine).append([cli_actions.cli_event(operator, args, argv, rc)])
        finally:
            await engine.dispose()

    if rc != 0:
        cli_actions.record(args.config, operator, args, argv, rc)
        return
    try:
        aio.run(write())
    except Exception as exc:
        print(f"poolserver: WARNING: `restore` was not recorded in the security log: {exc}",
              file=sys.stderr)  # fmt: skip
