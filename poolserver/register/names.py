"""Account and worker names: checked before they reach any log line or query.

A Stratum username is ``account`` or ``account.worker``. Account names are 1..64 characters of
``A-Z a-z 0-9 _ -``; worker names 0..64 characters of the same plus ``.``. The error never
echoes the refused text (it may be hostile); it names the position and code point instead.
"""

from __future__ import annotations

import re

from poolserver.register.errors import RegisterError

ACCOUNT_MAX = 64
WORKER_MAX = 64
_ACCOUNT_OK = re.compile(r"[A-Za-z0-9_-]")
_WORKER_OK = re.compile(r"[A-Za-z0-9_.-]")


def _check(
    value: str, field: str, min_len: int, max_len: int, ok: re.Pattern[str], allowed: str
) -> str:
    if not isinstance(value, str):
        raise RegisterError(field, f"must be text, got {type(value).__name__}")
    if len(value) < min_len:
        raise RegisterError(field, "must not be empty")
    if len(value) > max_len:
        raise RegisterError(field, f"{len(value)} characters, at most {max_len} allowed")
    for i, ch in enumerate(value):
        if not ok.fullmatch(ch):
            raise RegisterError(
                field, f"character U+{ord(ch):04X} at position {i + 1} not allowed ({allowed})"
            )
    return value


def validate_account(value: str, field: str = "account") -> str:
    return _check(value, field, 1, ACCOUNT_MAX, _ACCOUNT_OK, "allowed: A-Z a-z 0-9 _ -")


def validate_worker(value: str, field: str = "worker") -> str:
    return _check(value, field, 0, WORKER_MAX, _WORKER_OK, "allowed: A-Z a-z 0-9 _ - .")


def split_username(username: str) -> tuple[str, str]:
    """``"acme.rig-01"`` -> ``("acme", "rig-01")``, ``"acme"`` -> ``("acme", "")``; validated."""
    if not isinstance(username, str):
        raise RegisterError("username", f"must be text, got {type(username).__name__}")
    account, _, worker = username.partition(".")
    return validate_account(account), validate_worker(worker)
