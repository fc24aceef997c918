"""The process's open-files limit. Every miner connection is a file descriptor: with the usual
soft limit of 1024 (Debian, systemd's default ``LimitNOFILE=1024:524288``) and the default
``[stratum].max_connections_per_ip = 2048``, a connection flood from one address exhausts the
descriptors before its per-IP cap is reached, and the pool can no longer accept anyone (found
by the security suite's EX-01). At startup the soft limit is raised to the hard limit; a limit
still below the per-IP cap is logged as a warning."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)
HEADROOM = 256  # descriptors for the database, node connections, metrics, logs


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
