"""The local spool: an append-only, fsync'd JSON-lines file of shares the database could not take.

The journal appends a whole batch per write and fsyncs before acknowledging it. A record is one
line; a torn last line (the process died mid-write, so it was never acknowledged) is ignored on
reading. Replay renames the active file to ``replay-<n>.jsonl`` first, so new appends never mix
with a file being replayed, and deletes a replay file only after its rows are committed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

ACTIVE = "spool.jsonl"
REPLAY_PREFIX = "replay-"
REJECTED_DIR = "rejected"


class SpoolError(RuntimeError):
    """A spool file cannot be read back (corruption before its last line)."""


def encode_row(row: dict[str, Any]) -> bytes:
    rec = dict(row)
    rec["uid"] = row["uid"].hex()
    rec["share_hash"] = row["share_hash"].hex()
    rec["created_at"] = row["created_at"].isoformat()
    return orjson.dumps(rec) + b"\n"


def decode_row(line: bytes) -> dict[str, Any]:
    rec = orjson.loads(line)
    rec["uid"] = bytes.fromhex(rec["uid"])
    rec["share_hash"] = bytes.fromhex(rec["share_hash"])
    rec["created_at"] = datetime.fromisoformat(rec["created_at"])
    return rec


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Blocking file operations; the journal runs them in a worker thread."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    @property
    def active(self) -> Path:
        return self.dir / ACTIVE

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append the rows and fsync; returns only when they are on disk."""
        data = b"".join(encode_row(r) for r in rows)
        new = not self.active.exists()
        if new:
            self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.active, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            _fsync_dir(self.dir)

    def has_data(self) -> bool:
        active = self.active
        return bool(self.pending_files()) or (active.exists() and active.stat().st_size > 0)

    def rotate(self) -> Path | None:
        """Rename the active file to the next replay file (None when there is nothing to rotate)."""
        if not self.active.exists() or self.active.stat().st_size == 0:
            return None
        seq = max((self._seq(p) for p in self.pending_files()), default=0) + 1
        target = self.dir / f"{REPLAY_PREFIX}{seq:08d}.jsonl"
        os.replace(self.active, target)
        _fsync_dir(self.dir)
        return target

    def pending_files(self) -> list[Path]:
        """Replay files, oldest first."""
        if not self.dir.exists():
            return []
        return sorted(self.dir.glob(f"{REPLAY_PREFIX}*.jsonl"), key=self._seq)

    @staticmethod
    def _seq(path: Path) -> int:
        return int(path.stem.removeprefix(REPLAY_PREFIX))

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The records of a spool file; a torn final line is dropped (it was never acked)."""
        data = path.read_bytes()
        lines = data.split(b"\n")
        rows = []
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                rows.append(decode_row(line))
            except (orjson.JSONDecodeError, KeyError, ValueError) as exc:
                if i == len(lines) - 1:  # no trailing newline: the write was cut short
                    log.warning("spool %s: ignoring torn final record (never acknowledged)", path)
                    continue
                raise SpoolError(f"{path}: record {i + 1} is corrupt: {exc}") from exc
        return rows

    def remove(self, path: Path) -> None:
        path.unlink()
        _fsync_dir(self.dir)

    def quarantine(self, path: Path) -> Path:
        """Move a file the database refuses into ``rejected/`` (kept for the operator)."""
        target_dir = self.dir / REJECTED_DIR
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        os.replace(path, target)
        _fsync_dir(self.dir)
        return target
