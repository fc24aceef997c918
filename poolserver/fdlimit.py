"""The process's open-files limit. Every miner connection is a file descriptor: with the usual
soft limit of 1024 (Debian, systemd's default ``LimitNOFILE=1024:524288``) and the default
``[stratum].max_connections_per_ip = 2048``, a connection flood from one address exhausts the
descriptors before its per-IP cap is reached, and the pool can no longer accept anyone (found
by the security suite's EX-01). At startup the soft limit is raised to the hard limit; a limit
still below the per-IP cap is logged as a warning."""

from __future__ import annotations

import logging
import resource

from poolserver.config import ConfigError

log = logging.getLogger(__name__)
HEADROOM = 256  # descriptors for the database, node connections, spool, logs, metrics, web


def raise_open_files_limit(wanted: int = 1 << 20) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (at most the hard limit); the new soft
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target,
                        exc)  # fmt: skip
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def check_open_files_limit(max_connections_per_ip: int) -> int:
    """Raise the limit and warn when one address could still exhaust it."""
    limit = raise_open_files_limit()
    needed = max_connections_per_ip + HEADROOM
    if limit != resource.RLIM_INFINITY and (max_connections_per_ip == 0 or limit < needed):
        log.warning(
            "open-files limit %d is below [stratum].max_connections_per_ip (%s) + %d: one "
            "address can exhaust the pool's file descriptors; lower the cap or raise the hard "
            "limit (systemd LimitNOFILE=)", limit, max_connections_per_ip or "unlimited",
            HEADROOM)  # fmt: skip
    else:
        log.info("open-files limit %d", limit)
    return limit


def open_files_limit() -> int | None:
    """The soft open-files limit now (None = unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def automatic_cap(limit: int | None) -> int:
    """The global connection cap for open-files soft limit ``limit``: the limit minus
    ``HEADROOM`` (0 = no cap when descriptors are unlimited). A limit too small for the
    headroom keeps half of it for the pool's own files instead."""
    if limit is None:
        return 0
    return max(limit - HEADROOM, limit // 2, 1)


def connection_cap(configured: int, per_ip: int, limit: int | None) -> int:
    """The global connection cap in force for ``[stratum].max_connections`` = ``configured``
    (0 = automatic); logs it (one INFO line, with the per-IP cap) and warns when a configured
    cap leaves fewer than ``HEADROOM`` descriptors for the pool's own files."""
    if type(configured) is not int or configured < 0:
        raise ConfigError(
            f"stratum.max_connections: expected an integer >= 0 (0 = automatic: "
            f"the open-files limit minus {HEADROOM}), got {configured!r}"
        )
    per_ip_text = per_ip or "unlimited"
    auto = automatic_cap(limit)
    if configured == 0:
        how = (
            "automatic: open files unlimited"
            if limit is None
            else f"automatic: open-files limit {limit} - {HEADROOM} kept for storage, nodes, logs"
        )
        log.info("stratum connection cap: %s in total (%s), %s per IP", auto or "none", how,
                 per_ip_text)  # fmt: skip
        return auto
    if limit is not None and configured > limit - HEADROOM:
        log.warning(
            "[stratum].max_connections %d exceeds the open-files limit %d - %d: a connection "
            "flood can take the descriptors the database, spool and nodes need; lower the cap "
            "or raise the hard limit (systemd LimitNOFILE=)",
            configured,
            limit,
            HEADROOM,
        )
    log.info("stratum connection cap: %d in total (configured), %s per IP", configured, per_ip_text)
    return configured
