"""Bitcoin payout addresses, checked for the network before any money is sent to them.

The decoding (Base58Check, BIP173 bech32, BIP350 bech32m) is ``stratum.address``'s, the same
code that builds the pool's coinbase outputs; this module only turns its refusal into a
``RegisterError`` naming the field, and stores bech32 addresses in lower case.
"""

from __future__ import annotations

from poolserver.register.errors import RegisterError
from stratum.address import PARAMS, AddressError, address_to_script

NETWORKS = tuple(PARAMS)


def validate_address(value: str, network: str, field: str = "payout_address") -> str:
    """The address, stripped (bech32 lower-cased), if it can be paid on ``network``."""
    if network not in PARAMS:
        raise RegisterError("network", f"unknown network {network!r} (known: {', '.join(PARAMS)})")
    addr = value.strip() if isinstance(value, str) else ""
    if not addr:
        raise RegisterError(field, "must not be empty")
    try:
        address_to_script(addr, network)
    except AddressError as exc:
        raise RegisterError(field, f"not a {network} Bitcoin address: {exc.reason}") from None
    if addr.lower().startswith(tuple(p.hrp + "1" for p in PARAMS.values())):
        return addr.lower()
    return addr
