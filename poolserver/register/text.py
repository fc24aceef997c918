"""One validator for the register's free-text fields (names, reasons, notes, numbers)."""

from __future__ import annotations

from poolserver.register.errors import RegisterError

TEXT_MAX = 200


def text_field(value: object, field: str, *, max_len: int = TEXT_MAX, required: bool = True) -> str:
    """``value`` stripped; refused (naming ``field``) when empty but required, not a string,
    longer than ``max_len`` or holding control characters / line breaks. ``None`` is empty."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RegisterError(field, f"must be text, not {type(value).__name__}")
    value = value.strip()
    if not value:
        if required:
            raise RegisterError(field, "must not be empty")
        return ""
    if len(value) > max_len:
        raise RegisterError(field, f"{len(value)} characters, at most {max_len} allowed")
    if any(not ch.isprintable() for ch in value):
        raise RegisterError(field, "must not contain control characters or line breaks")
    return value
