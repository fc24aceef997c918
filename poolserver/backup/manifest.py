"""``MANIFEST.json``: what a backup holds, with the sha256 and size of every file.

Written last (a backup directory without it is incomplete) and verified before a restore
touches anything: a missing, truncated or altered file is named and nothing is restored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "MANIFEST.json"
FORMAT = 1


class BackupError(RuntimeError):
    """A backup or restore cannot go on; the message says what and why."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the backup directory
    role: str  # where a restore puts it (poolserver/backup/files.py)
    sha256: str
    size: int
    source: str  # where it was copied from (for the operator)


@dataclass
class Manifest:
    created_at: str  # UTC ISO 8601
    software_version: str
    alembic_revision: list[str]
    database_backend: str  # "sqlite" or "postgresql"
    audit_anchor: str  # SEQ:HASH of the audit log's head when the backup started
    files: list[FileEntry] = field(default_factory=list)
    format: int = FORMAT
    # SEQ:HASH of the security event log's head when the backup started (its own chain)
    security_anchor: str = "0:" + "0" * 64

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("format") != FORMAT:
                raise BackupError(f"{MANIFEST}: format {data.get('format')!r}, expected {FORMAT}")
            files = [FileEntry(**f) for f in data.pop("files")]
            return cls(files=files, **data)
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{MANIFEST} is not a qazpool backup manifest: {exc}") from None

    def by_role(self, role: str) -> list[FileEntry]:
        return [f for f in self.files if f.role == role]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def entry_for(root: Path, rel: str, role: str, source: str) -> FileEntry:
    path = root / rel
    return FileEntry(rel, role, sha256_file(path), path.stat().st_size, source)


def write_manifest(root: Path, manifest: Manifest) -> Path:
    path = root / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


def read_and_verify(root: Path) -> Manifest:
    """The manifest of the backup in ``root``, every file checked; BackupError names the first
    problem (no manifest, a file missing, another size or hash, a file not in the manifest)."""
    path = root / MANIFEST
    if not path.is_file():
        raise BackupError(f"{path} not found: not a backup, or the backup did not finish")
    manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    for f in manifest.files:
        p = root / f.path
        if Path(f.path).is_absolute() or ".." in Path(f.path).parts:
            raise BackupError(f"{MANIFEST}: refusing path {f.path!r} outside the backup")
        if not p.is_file():
            raise BackupError(f"{p}: missing (listed in {MANIFEST})")
        if p.stat().st_size != f.size:
            raise BackupError(f"{p}: {p.stat().st_size} bytes, the manifest says {f.size}")
        if sha256_file(p) != f.sha256:
            raise BackupError(f"{p}: sha256 differs from the manifest (altered or corrupt)")
    listed = {f.path for f in manifest.files} | {MANIFEST}
    extra = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.is_file() and str(p.relative_to(root)) not in listed)  # fmt: skip
    if extra:
        raise BackupError(f"{root}: files not in {MANIFEST}: {', '.join(extra[:5])}")
    return manifest
