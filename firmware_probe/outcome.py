"""The one enum for probe outcomes: metric labels, stored rows and the CLI all use it."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    IDENTIFIED = "identified"  # model and firmware (family and version) known
    PARTIAL = "partial"  # an API answered; some of model / firmware missing
    UNREACHABLE = "unreachable"  # no TCP connection within the connect timeout (host down)
    TIMEOUT = "timeout"  # connected, but no complete reply within the command timeout
    REFUSED = "refused"  # every API port refused the connection (RST)
    API_DISABLED = "api_disabled"  # accepted the connection and closed it without a byte
    UNKNOWN_FIRMWARE = "unknown_firmware"  # a well-formed reply that names nothing we know
    ERROR = "error"  # a reply that is not the protocol (garbage, oversize, broken HTTP)


# Of several ports failing differently, the most telling failure is reported.
FAILURE_RANK = (
    Outcome.ERROR,
    Outcome.API_DISABLED,
    Outcome.TIMEOUT,
    Outcome.REFUSED,
    Outcome.UNREACHABLE,
)
