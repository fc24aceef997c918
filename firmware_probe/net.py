"""The only I/O of the probe: one TCP request/reply, one HTTP GET. Read-only by construction:
the callers pass fixed command names from a tuple, never anything from outside.

Every failure is a ``NetError`` carrying the ``Outcome`` it means, so readers never guess:
refused (RST) / unreachable (no connection within the connect timeout) / api_disabled (accepted,
closed without a byte) / timeout (no complete reply in time) / error (over the size cap, broken
HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable

from firmware_probe.jsonrepair import ReplyError, parse_reply
from firmware_probe.limits import ProbeLimits
from firmware_probe.outcome import Outcome


def _complete(data: bytes) -> bool:
    try:
        parse_reply(data)
    except ReplyError:
        return False
    return True


class NetError(Exception):
    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN}


async def _connect(
    host: str, port: int, limits: ProbeLimits
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(limits.connect_timeout_s):
            return await asyncio.open_connection(host, port, limit=limits.max_response_bytes)
    except TimeoutError:
        raise NetError(
            Outcome.UNREACHABLE, f"{host}:{port}: no connection within {limits.connect_timeout_s} s"
        ) from None
    except ConnectionRefusedError:
        raise NetError(Outcome.REFUSED, f"{host}:{port}: connection refused") from None
    except socket.gaierror as exc:
        raise NetError(Outcome.UNREACHABLE, f"{host}: cannot resolve ({exc.strerror})") from None
    except OSError as exc:
        outcome = Outcome.UNREACHABLE if exc.errno in _UNREACHABLE_ERRNOS else Outcome.ERROR
        raise NetError(outcome, f"{host}:{port}: {exc.strerror or exc}") from None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(0.5):
            await writer.wait_closed()


def rpc_end(buf: bytearray, chunk: bytes) -> int | None:
    """Where a cgminer/btminer reply ends in ``buf`` (None: read on)."""
    i = chunk.find(b"\x00")
    if i >= 0:  # cgminer's terminator
        return len(buf) - len(chunk) + i + 1
    # No NUL: a newline or nothing at all ends the reply (btminer keeps the connection open
    # until its 10 s idle close and puts raw newlines inside its JSON). The reply is complete
    # once it parses (the known repairs included).
    if buf.rstrip().endswith(b"}") and _complete(bytes(buf)):
        return len(buf)
    return None


def http_end(buf: bytearray, chunk: bytes) -> int | None:
    """Where an HTTP response ends (Content-Length or the last chunk); None: read on (to EOF
    when the server gives neither). A server that keeps the connection alive despite
    ``Connection: close`` is not waited for."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    body_start = head_end + 4
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip(), value.strip()
        if name == b"content-length" and value.isdigit():
            end = body_start + int(value)
            return end if len(buf) >= end else None
        if name == b"transfer-encoding" and value == b"chunked":
            i = buf.find(b"\r\n0\r\n\r\n", body_start - 2)
            return i + 7 if i >= 0 else None
    return None


async def _read_capped(
    reader: asyncio.StreamReader,
    limits: ProbeLimits,
    end: Callable[[bytearray, bytes], int | None],
    where: str,
) -> bytes:
    """Read until ``end`` finds the reply complete, or EOF; at most the size cap."""
    buf = bytearray()
    cap = limits.max_response_bytes
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > cap:
            raise NetError(Outcome.ERROR, f"{where}: reply over the {cap}-byte cap")
        done = end(buf, chunk)
        if done is not None:
            return bytes(buf[:done])


async def tcp_request(host: str, port: int, payload: bytes, limits: ProbeLimits) -> bytes:
    """Send one request, read one reply: up to a NUL or newline, or EOF (cgminer closes)."""
    where = f"{host}:{port}"
    reader, writer = await _connect(host, port, limits)
    try:
        async with asyncio.timeout(limits.command_timeout_s):
            writer.write(payload)
            await writer.drain()
            data = await _read_capped(reader, limits, rpc_end, where)
    except TimeoutError:
        raise NetError(
            Outcome.TIMEOUT, f"{where}: no complete reply within {limits.command_timeout_s} s"
        ) from None
    except (ConnectionResetError, BrokenPipeError):
        data = b""
    finally:
        await _close(writer)
    if not data:
        raise NetError(Outcome.API_DISABLED, f"{where}: accepted and closed without a reply")
    return data


async def http_get(host: str, port: int, path: str, limits: ProbeLimits) -> tuple[int, bytes]:
    """``GET path`` over HTTP/1.1 with ``Connection: close``; ``(status, body)``."""
    where = f"http://{host}:{port}{path}"
    reader, writer = await _connect(host, port, limits)
    try:
        async with asyncio.timeout(limits.command_timeout_s):
            host_header = f"[{host}]" if ":" in host else host
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host_header}:{port}\r\nAccept: application/json\r\n"
                "User-Agent: qazpool-probe\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            await writer.drain()
            data = await _read_capped(reader, limits, http_end, where)
    except TimeoutError:
        raise NetError(
            Outcome.TIMEOUT, f"{where}: no complete reply within {limits.command_timeout_s} s"
        ) from None
    except (ConnectionResetError, BrokenPipeError):
        data = b""
    finally:
        await _close(writer)
    if not data:
        raise NetError(Outcome.API_DISABLED, f"{where}: accepted and closed without a reply")
    return parse_http_response(data, where)


def parse_http_response(data: bytes, where: str = "reply") -> tuple[int, bytes]:
    """Status and body of a complete HTTP/1.x response (Content-Length, chunked or to EOF)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise NetError(Outcome.ERROR, f"{where}: not an HTTP response")
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise NetError(Outcome.ERROR, f"{where}: not an HTTP response: {lines[0][:40]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body, where)
    elif (length := headers.get(b"content-length", b"")).isdigit():
        if len(body) < int(length):
            raise NetError(Outcome.ERROR, f"{where}: body shorter than its Content-Length")
        body = body[: int(length)]
    return int(parts[1]), body


def _dechunk(body: bytes, where: str) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise NetError(Outcome.ERROR, f"{where}: truncated chunked body")
        try:
            size = int(body[pos:end].split(b";")[0], 16)
        except ValueError:
            raise NetError(Outcome.ERROR, f"{where}: bad chunk size") from None
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
