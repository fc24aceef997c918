"""Manifest (SHA-256 of each file, period, parameters, software version) and a detached Ed25519
signature over it (pycryptodome, RFC 8032 pure Ed25519).

A report directory holds the report files, ``manifest.json`` and ``manifest.sig`` (hex of the
64-byte signature). The manifest has no generation time, so regenerating a closed period gives
identical bytes (Ed25519 signatures are deterministic too).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


class VerifyError(Exception):
    """Verification failed; the message names the file."""


def manifest_bytes(files: Mapping[str, bytes], params: Mapping[str, str]) -> bytes:
    doc = {"files": {name: hashlib.sha256(data).hexdigest()
                     for name, data in sorted(files.items())},
           "parameters": dict(sorted(params.items()))}
    return (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def generate_key(private_path: Path, public_path: Path) -> str:
    """A new Ed25519 key: the private key file is created 0600 (never printed); returns the
    public key's fingerprint (sha256 of its DER, hex)."""
    key = ECC.generate(curve="Ed25519")
    pem = key.export_key(format="PEM").encode()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(private_path, 0o600)
    public_path.write_text(key.public_key().export_key(format="PEM") + "\n")
    return fingerprint(key.public_key())


def fingerprint(key: ECC.EccKey) -> str:
    return hashlib.sha256(key.public_key().export_key(format="DER")).hexdigest()


def load_key(path: Path) -> ECC.EccKey:
    try:
        key = ECC.import_key(path.read_text())
    except (ValueError, IndexError) as exc:
        raise VerifyError(f"{path}: not an Ed25519 key ({exc})") from None
    if key.curve not in ("Ed25519", "ed25519"):
        raise VerifyError(f"{path}: key is {key.curve}, not Ed25519")
    return key


def sign(manifest: bytes, private_key: ECC.EccKey) -> bytes:
    return (eddsa.new(private_key, "rfc8032").sign(manifest).hex() + "\n").encode()


def write_signed(out_dir: Path, files: Mapping[str, bytes], params: Mapping[str, str],
                 private_key: ECC.EccKey) -> list[Path]:
    manifest = manifest_bytes(files, {**params, "signing_key": fingerprint(private_key)})
    outputs = {**files, MANIFEST: manifest, SIGNATURE: sign(manifest, private_key)}
    if out_dir.exists():
        stray = sorted(p.name for p in out_dir.iterdir() if p.name not in outputs)
        if stray:
            raise ValueError(f"--out: {out_dir} holds other files ({', '.join(stray[:3])}); "
                             "write each report to its own (empty) directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in sorted(outputs.items()):
        path = out_dir / name
        path.write_bytes(data)
        written.append(path)
    return written


@dataclass(frozen=True, slots=True)
class Verified:
    files: tuple[str, ...]
    parameters: Mapping[str, str]


def verify_dir(directory: Path, public_key: ECC.EccKey) -> Verified:
    """Signature over the manifest, then each file's hash; VerifyError names what is wrong."""
    try:
        manifest = (directory / MANIFEST).read_bytes()
        sig_text = (directory / SIGNATURE).read_text().strip()
    except FileNotFoundError as exc:
        raise VerifyError(f"{exc.filename}: missing") from None
    try:
        eddsa.new(public_key, "rfc8032").verify(manifest, bytes.fromhex(sig_text))
    except ValueError:
        raise VerifyError(f"{MANIFEST}: the signature does not match (manifest changed, "
                          "or signed with another key)") from None
    doc = json.loads(manifest)
    for name, digest in doc["files"].items():
        path = directory / name
        if not path.is_file():
            raise VerifyError(f"{name}: missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise VerifyError(f"{name}: changed (its SHA-256 differs from the signed manifest)")
    known = {*doc["files"], MANIFEST, SIGNATURE}
    extra = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name not in known)
    if extra:
        raise VerifyError(f"{extra[0]}: not in the signed manifest")
    return Verified(tuple(doc["files"]), doc["parameters"])
