"""Observing the pool from outside, on its host: the process that listens on the target port
(from /proc/net/tcp and the processes' fd tables), its resident memory and descriptors, every
socket it listens on, and its /metrics text. Linux /proc only; run as the pool's user (or root)
to see its file descriptors."""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.request
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"


def _hex_addr(text: str) -> tuple[str, int]:
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # IPv6 in /proc: four little-endian 32-bit words
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        host = socket.inet_ntop(socket.AF_INET6, words)
    return host, int(port, 16)


def listening_sockets(proc: Path = PROC) -> dict[int, tuple[str, int]]:
    """inode -> (host, port) of every TCP socket in LISTEN state on this host."""
    found: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        path = proc / "net" / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == LISTEN:
                found[int(cols[9])] = _hex_addr(cols[1])
    return found


def _covers(bound: str, host: str) -> bool:
    if bound in ("0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(bound) == ipaddress.ip_address(host)
    except ValueError:
        return False


def socket_inodes(pid: int, proc: Path = PROC) -> set[int]:
    inodes = set()
    fd_dir = proc / str(pid) / "fd"
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def find_pid(host: str, port: int, proc: Path = PROC) -> int | None:
    """The pid of the process listening on ``host:port``, or None (not found or not ours)."""
    wanted = {inode for inode, (h, p) in listening_sockets(proc).items()
              if p == port and _covers(h, host)}  # fmt: skip
    if not wanted:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if socket_inodes(int(entry.name), proc) & wanted:
                return int(entry.name)
        except OSError:
            continue
    return None


def listening_of(pid: int, proc: Path = PROC) -> list[tuple[str, int]]:
    """Every (host, port) the process listens on."""
    listening = listening_sockets(proc)
    return sorted(listening[i] for i in socket_inodes(pid, proc) if i in listening)


def rss_bytes(pid: int, proc: Path = PROC) -> int:
    """Resident set size of ``pid`` (VmRSS), in bytes."""
    for line in (proc / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/{pid}/status has no VmRSS")


def open_fds(pid: int, proc: Path = PROC) -> int:
    """File descriptors ``pid`` has open (the pool runs as the tester's user)."""
    return len(list((proc / str(pid) / "fd").iterdir()))


def metrics_text(url: str, timeout: float) -> str:
    """The pool's /metrics exposition as text (blocking: run it in a thread)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode(errors="replace")


def alive(pid: int) -> bool:
    return (PROC / str(pid)).exists()
