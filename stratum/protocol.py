"""Stratum V1 wire format: line framing and JSON-RPC 1.0 encode/decode.

Pure functions and a small line splitter; no sockets here. JSON goes through orjson when it is
installed (the fast path, a dependency of the package); without it the standard library's
``json`` stands in, held to orjson's strictness (strict UTF-8, no NaN/Infinity, bounded depth)
so ``stratum`` still runs on the standard library alone (DESIGN.md).

Every reply carries ``id`` (with the type the client sent), ``result`` and ``error``; errors are
``[code, "message", null]``. Decoding never raises anything but ``ProtocolError`` whose message
is safe to show to a client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stratum.difficulty import format_difficulty

_STDLIB_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_STDLIB_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def stdlib_dumps(obj: Any) -> bytes:
    """Compact JSON as bytes (non-ASCII escaped, so any decoded string can be echoed)."""
    return _STDLIB_ENCODER.encode(obj).encode("ascii")


def stdlib_loads(data: bytes) -> Any:
    """``json`` with orjson's refusals; every failure is a ``json.JSONDecodeError``."""
    try:
        return _STDLIB_DECODER.decode(data.decode("utf-8"))
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise json.JSONDecodeError("str is not valid UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("depth limit exceeded", "", 0) from None
    except ValueError as exc:  # NaN/Infinity, an integer beyond the int-string limit
        raise json.JSONDecodeError(str(exc), "", 0) from None


_dumps: Callable[[Any], bytes]
_loads: Callable[[bytes], Any]
try:
    import orjson
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _dumps, _loads = stdlib_dumps, stdlib_loads
    BACKEND = "json"
else:
    _dumps, _loads = orjson.dumps, orjson.loads
    BACKEND = "orjson"


class ProtocolError(ValueError):
    """The peer sent something that is not a Stratum request; the message names what and why."""

    def __init__(self, message: str, *, fatal: bool = False, label: str = "bad_request") -> None:
        super().__init__(message)
        self.fatal = fatal  # close the connection after replying
        self.label = label  # metric label


class LineTooLong(ProtocolError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"line longer than {limit} bytes", fatal=True, label="line_too_long")


@dataclass(slots=True)
class Request:
    id: Any  # int | str | None, echoed with its original type
    method: str
    params: Any  # list normally; some clients send an object


class LineBuffer:
    """Splits a byte stream into lines: tolerant of ``\\r\\n``, blank lines, partial reads.

    ``feed`` returns the complete lines (without terminators, blank ones dropped) and raises
    ``LineTooLong`` when a line (complete or still partial) exceeds ``limit`` bytes.
    """

    __slots__ = ("_buf", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        if b"\n" not in buf:
            if len(buf) > self.limit:
                self._buf = b""
                raise LineTooLong(self.limit)
            self._buf = buf
            return []
        parts = buf.split(b"\n")
        self._buf = parts.pop()
        if len(self._buf) > self.limit:
            self._buf = b""
            raise LineTooLong(self.limit)
        out = []
        for line in parts:
            if len(line) > self.limit:
                raise LineTooLong(self.limit)
            line = line.strip()
            if line:
                out.append(line)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def decode_request(line: bytes) -> Request:
    """Parse one line into a Request. Raises ProtocolError naming the field and the reason."""
    try:
        msg = _loads(line)
    except json.JSONDecodeError as exc:  # orjson's error is a subclass
        raise ProtocolError(f"invalid JSON: {exc.msg}", fatal=True, label="invalid_json") from None
    if not isinstance(msg, dict):
        raise ProtocolError("request must be a JSON object", fatal=True, label="invalid_json")
    req_id = msg.get("id")
    if isinstance(req_id, dict | list | bool | float):
        raise ProtocolError("id: must be an integer, a string or null", label="bad_id")
    method = msg.get("method")
    if not isinstance(method, str):
        if "result" in msg or "error" in msg:
            # A reply to something we sent (client.get_version, mining.ping): not a request.
            return Request(req_id, "", msg.get("result"))
        raise ProtocolError("method: missing or not a string", label="bad_method")
    params = msg.get("params", [])
    if params is None:
        params = []
    return Request(req_id, method, params)


def reply(req_id: Any, result: Any) -> bytes:
    return _dumps({"id": req_id, "result": result, "error": None}) + b"\n"


def error_reply(req_id: Any, code: int, message: str) -> bytes:
    return _dumps({"id": req_id, "result": None, "error": [code, message, None]}) + b"\n"


def notification(method: str, params: list[Any]) -> bytes:
    return _dumps({"id": None, "method": method, "params": params}) + b"\n"


# Pre-encoded replies for the hot path (the id is spliced in; orjson encodes it with its type).
_TRUE_TAIL = b',"result":true,"error":null}\n'


def _splice_id(req_id: Any, tail: bytes) -> bytes:
    if type(req_id) is int:
        return b'{"id":' + str(req_id).encode() + tail
    return b'{"id":' + _dumps(req_id) + tail


def true_reply(req_id: Any) -> bytes:
    return _splice_id(req_id, _TRUE_TAIL)


def error_tail(code: int, message: str) -> bytes:
    """The bytes after the id of an error reply, encoded once per reject reason."""
    return b',"result":null,"error":' + _dumps([code, message, None]) + b"}\n"


def error_reply_cached(req_id: Any, tail: bytes) -> bytes:
    return _splice_id(req_id, tail)


def set_difficulty(difficulty: float | int) -> bytes:
    return notification("mining.set_difficulty", [format_difficulty(difficulty)])


def notify_params_line(params: list[Any]) -> bytes:
    """The ``mining.notify`` line for a job: encode once, write the same bytes to every miner."""
    return notification("mining.notify", params)
