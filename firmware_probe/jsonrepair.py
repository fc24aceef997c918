"""Parse a miner API reply, repairing the broken JSON real firmwares emit.

Pure functions. Each repair that fired is named in the result, so the evidence says what the
firmware really sent:

- ``trailing_nul``: cgminer terminates a reply with NUL (some builds send several);
- ``missing_comma``: bmminer's ``stats`` glues objects together (``}{``) without a comma;
- ``bare_nonfinite``: ``inf`` / ``-inf`` / ``nan`` as bare words (C ``printf("%f")``), read as null;
- ``trailing_comma``: a comma before ``}`` or ``]`` (btminer);
- ``control_chars``: raw newlines / control bytes inside the text (btminer, LuxOS).

Nothing else is guessed: text that is still not JSON after these is a ``ReplyError``.
"""

from __future__ import annotations

import json
import re
from typing import Any


class ReplyError(ValueError):
    """The reply is not the protocol (not JSON even after the known repairs)."""


_GLUED = re.compile(rb"\}\s*\{")
_NONFINITE = re.compile(rb"(?<=[:\[,])\s*(-?inf(?:inity)?|nan)\s*(?=[,\]}])", re.IGNORECASE)
_TRAILING_COMMA = re.compile(rb",\s*([}\]])")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\n\r\t]")


_INVALID = object()


def _try_loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return _INVALID


def parse_reply(data: bytes) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``(object, repairs)``; raises ``ReplyError`` when the text is not a JSON object."""
    repairs: list[str] = []
    text = data
    stripped = text.rstrip(b"\x00")
    if stripped != text:
        repairs.append("trailing_nul")
        text = stripped
    text = text.strip()
    if not text:
        raise ReplyError("empty reply")
    if b"\x00" in text:
        raise ReplyError("NUL byte inside the reply")
    obj = _try_loads(text)
    if obj is _INVALID:
        # String contents are not parsed apart: the patterns below only match between tokens
        # in practice (a serial or pool URL never contains "}{" or a bare "nan" after a colon).
        for name, pattern, repl in (
            ("missing_comma", _GLUED, b"},{"),
            ("bare_nonfinite", _NONFINITE, b"null"),
            ("trailing_comma", _TRAILING_COMMA, rb"\1"),
            ("control_chars", _CONTROL, b" "),
        ):
            fixed = pattern.sub(repl, text)
            if fixed != text:
                repairs.append(name)
                text = fixed
                obj = _try_loads(text)
                if obj is not _INVALID:
                    break
    if obj is _INVALID:
        head = data[:40].decode("ascii", errors="backslashreplace")
        tried = ", ".join(repairs) or "none"
        raise ReplyError(f"not JSON even after repairs ({tried}): {head!r}")
    if not isinstance(obj, dict):
        raise ReplyError(f"JSON {type(obj).__name__}, expected an object")
    return obj, tuple(repairs)
