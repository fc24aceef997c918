"""A byte-exact HTTP/1.1 client for the web cases: the request line and headers go on the wire
exactly as given (no URL normalisation, so ``../`` and ``%2e%2e`` reach the server as sent),
from a chosen loopback source address, and the answer comes back as status, headers and raw
body bytes (for byte-for-byte comparisons)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int  # 0: no HTTP answer (closed or timed out)
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    note: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        if not self.status:
            return f"no HTTP answer ({self.note})"
        body = self.body[:120].decode(errors="replace").replace("\n", " ")
        # ascii(): the protocol's PDF fonts have no emoji or fullwidth glyphs
        return f"{self.status} {self.reason} {self.header('content-type') or ''} {body!a}"


def split_base(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--web: {url!r} is not http://HOST:PORT")
    return parts.hostname, parts.port or 80


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def parse_answer(raw: bytes) -> Answer:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return Answer(0, note=f"not an HTTP answer: {raw[:60]!r}")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    return Answer(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)


async def request(host: str, port: int, source: str, target: str, *, method: str = "GET",
                  headers: dict[str, str] | None = None, raw_headers: bytes = b"",
                  timeout: float = 10.0) -> Answer:  # fmt: skip
    """One request on its own connection (``Connection: close``), read to the end."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), timeout)  # fmt: skip
    except (OSError, TimeoutError) as exc:
        return Answer(0, note=f"connect failed: {exc}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape") + raw_headers
    try:
        writer.write(data + b"\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(4 << 20), timeout)
        while True:
            more = await asyncio.wait_for(reader.read(4 << 20), timeout)
            if not more:
                break
            raw += more
    except (OSError, TimeoutError) as exc:
        return Answer(0, note=f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()
    return parse_answer(raw)
