"""The one error type of the register: a bad value, naming the field and the reason."""

from __future__ import annotations


class RegisterError(ValueError):
    """A value was refused. ``field`` names it (``"iin_bin"``, ``"suspension.months"``, ...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(RegisterError):
    """The named miner/license/machine does not exist."""


class Conflict(RegisterError):
    """The change contradicts what is already registered (duplicate serial, account, ...)."""
