"""Which ``poolserver`` subcommands change state, and recording them in the security log.

Every subcommand is classified here (a test walks the parser: a new one must be added to one of
the two sets). A mutating command is recorded after it ran, whatever its exit code (a refused
attempt is evidence too): who (the operator resolved once by the CLI), the command, its
arguments with secret-looking option values masked, the exit code.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from poolserver.security.log import NewEvent

MUTATING: frozenset[tuple[str, str]] = frozenset({
    ("db", "upgrade"),
    ("miners", "add"), ("miners", "set-address"), ("miners", "set-fee"),
    ("miners", "pool-fee"), ("miners", "import"),
    ("licenses", "add"), ("licenses", "suspend"), ("licenses", "lift"),
    ("licenses", "revoke"), ("licenses", "import"),
    ("hardware", "add"), ("hardware", "remove"), ("hardware", "import"),
    ("payouts", "run-once"), ("payouts", "deposit"), ("payouts", "withdraw"),
    ("payouts", "release"), ("payouts", "approve"), ("payouts", "reject"),
    ("rates", "import"),
    # reports are signed with the pool's key: signing and new keys are operator acts
    ("report", "miners"), ("report", "commission"), ("report", "statement"),
    ("report", "keygen"),
    # an operator-initiated connection to a machine's management API (stored as evidence)
    ("probe", "run"),
    # miners' read tokens (issue/revoke; `web token list` is recorded with them) and the
    # regulator's token: handing out read access is an operator act
    ("web", "token"), ("web", "regulator-token"),
    # an attack run against the pool (it registers its own test miners and suspends one)
    ("security-suite", ""),
    # issue 17 part A's commands (classified ahead of the merge; absent ones are harmless)
    ("backup", ""), ("restore", ""),
})  # fmt: skip

READ_ONLY: frozenset[tuple[str, str]] = frozenset({
    ("run", ""), ("demo", ""), ("selfcheck", ""),
    # writes /etc and systemd files before any database exists: its output is the record
    ("install-service", ""),
    ("db", "current"), ("db", "check"), ("db", "retention"),
    ("miners", "list"), ("miners", "show"), ("miners", "export"),
    ("licenses", "list"), ("licenses", "export"),
    ("hardware", "list"), ("hardware", "capacity"), ("hardware", "export"),
    ("audit", "verify"), ("audit", "head"), ("audit", "log"),
    ("payouts", "balances"), ("payouts", "blocks"), ("payouts", "distributions"),
    ("payouts", "payments"), ("payouts", "reconcile"), ("payouts", "list"),
    ("rates", "list"),
    ("report", "deadline"), ("report", "verify"),
    ("probe", "list"),
    ("security-suite", "verify"),
    ("security-log", "export"), ("security-log", "verify"), ("security-log", "head"),
})  # fmt: skip

_MASK = re.compile(r"^--?[\w-]*(pass|secret|token)[\w-]*", re.I)


def action_of(args: argparse.Namespace) -> tuple[str, str]:
    command = getattr(args, "command", None) or ""
    action = getattr(args, f"{command.replace('-', '_')}_command", None) or ""
    return command, action


def is_mutating(args: argparse.Namespace) -> bool:
    return action_of(args) in MUTATING


def masked(argv: Sequence[str]) -> list[str]:
    """The command line with the values of secret-looking options replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif _MASK.match(arg):
            name, eq, _ = arg.partition("=")
            out.append(f"{name}=***" if eq else name)
            hide_next = not eq
        else:
            out.append(arg)
    return out


def cli_event(
    operator: str,
    args: argparse.Namespace,
    argv: Sequence[str],
    rc: int,
    at: datetime | None = None,
) -> NewEvent:
    command, action = action_of(args)
    return NewEvent(
        at or datetime.now(UTC),
        "cli.action",
        {"command": f"{command} {action}".strip(), "argv": masked(argv), "exit_code": rc},
        who=operator,
    )


def record(
    config_path: str | None, operator: str, args: argparse.Namespace, argv: Sequence[str], rc: int
) -> None:
    """Append the ``cli.action`` event; a failure is reported on stderr, never raised (the
    command itself has already run and its exit code stands)."""
    import asyncio

    from poolserver.config import load_config
    from poolserver.security.log import SecurityLog
    from poolserver.storage_config import create_engine_from_config

    async def write() -> None:
        engine = create_engine_from_config(load_config(config_path))
        try:
            await SecurityLog(engine).append([cli_event(operator, args, argv, rc)])
        finally:
            await engine.dispose()

    try:
        asyncio.run(write())
    except Exception as exc:
        command, action = action_of(args)
        print(
            f"poolserver: WARNING: `{command} {action}` was not recorded in the security "
            f"log: {exc}",
            file=sys.stderr,
        )
