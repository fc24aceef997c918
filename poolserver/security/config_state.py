"""The effective configuration at startup, as the security log records it: a fingerprint per
dotted key and which keys changed since the last start, never a secret's value.

A key's fingerprint is the first 16 hex digits of SHA-256 over its canonical JSON value. A secret
(a password, a URL that may carry one, a key or cookie file) gets a PBKDF2 fingerprint instead,
salted with its key name, so the log says *that* it changed without making a guessable hash of
it. The config hash is SHA-256 over all fingerprints; equal hashes mean an unchanged config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SECRET = re.compile(r"(password|passphrase|secret|token|cookie|url|key)", re.I)
PBKDF2_ROUNDS = 100_000


def flatten(config: Any) -> dict[str, Any]:
    """``{"stratum.max_connections_per_ip": 50, ...}`` from the typed config (lists whole)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(f"{prefix}.{f.name}" if prefix else f.name, getattr(value, f.name))
        else:
            out[prefix] = _plain(value)

    walk("", config)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def is_secret(key: str, value: Any) -> bool:
    """Leaf names that may hold a credential; lists of tables are secret if any member key is."""
    if SECRET.search(key.rsplit(".", 1)[-1]):
        return True
    text = json.dumps(value, sort_keys=True)
    return isinstance(value, list) and bool(SECRET.search(text)) and "{" in text


def fingerprint(key: str, value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if is_secret(key, value):
        salt = b"qazpool-config:" + key.encode()
        return "s" + hashlib.pbkdf2_hmac("sha256", data, salt, PBKDF2_ROUNDS).hex()[:15]
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprints(config: Any) -> dict[str, str]:
    return {k: fingerprint(k, v) for k, v in sorted(flatten(config).items())}


def config_hash(prints: Mapping[str, str]) -> str:
    text = json.dumps(dict(sorted(prints.items())), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConfigChange:
    config_hash: str
    previous_hash: str | None  # None: the first start the log knows of
    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def unchanged(self) -> bool:
        return self.previous_hash == self.config_hash


def compare(prints: Mapping[str, str], previous: Mapping[str, str] | None) -> ConfigChange:
    now = config_hash(prints)
    if previous is None:
        return ConfigChange(now, None, (), (), ())
    return ConfigChange(
        now,
        config_hash(previous),
        tuple(sorted(k for k in prints if k in previous and prints[k] != previous[k])),
        tuple(sorted(k for k in prints if k not in previous)),
        tuple(sorted(k for k in previous if k not in prints)),
    )
