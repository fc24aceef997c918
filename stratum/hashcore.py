"""The hash core: the C extension when built, else the hashlib reference (with a warning).

Import from here, never from the implementation modules::

    from stratum.hashcore import sha256d, check_share, check_shares, backend

See ``stratum._hashcore_py`` for the API contract that both implementations follow.
"""

from __future__ import annotations

import logging

from stratum import _hashcore_py as python_impl

log = logging.getLogger(__name__)

try:
    from stratum import _hashcore as _impl  # type: ignore[attr-defined]

    c_impl = _impl
except ImportError as exc:  # the extension was not built (tests/test_hashcore_fallback.py)
    _impl = python_impl
    c_impl = None
    log.warning(
        "stratum._hashcore (C) is not available (%s); using the hashlib fallback, "
        "share checks will be several times slower. Rebuild with `pip install -e .`",
        exc,
    )

sha256d = _impl.sha256d
sha256d_many = _impl.sha256d_many
merkle_root = _impl.merkle_root
header_hash = _impl.header_hash
check_share = _impl.check_share
check_shares = _impl.check_shares


def backend() -> str:
    """Name of the SHA-256 path in use: 'sha-ni', 'armv8-ce', 'portable-c' or 'hashlib'."""
    return _impl.backend() if c_impl is not None else python_impl.BACKEND


def target_bytes(target: int) -> bytes:
    """A 256-bit target as the 32 little-endian bytes the core compares hashes against."""
    if not 0 <= target < 1 << 256:
        raise ValueError(f"target out of range: {target:#x}")
    return target.to_bytes(32, "little")
