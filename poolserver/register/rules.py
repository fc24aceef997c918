"""The register's pure rules in one import (no I/O): see the package docstring for where each
lives. Other packages' wiring (payouts hook, Stratum policy) imports from here."""

from poolserver.register.address import validate_address
from poolserver.register.chain import AuditEntry, ChainReport, make_entry, verify_chain
from poolserver.register.csvrows import (
    HARDWARE_SCHEMA,
    LICENSE_SCHEMA,
    RowError,
    miner_schema,
    parse_csv,
)
from poolserver.register.errors import Conflict, NotFound, RegisterError
from poolserver.register.hardware import (
    Discrepancy,
    Finding,
    Machine,
    Observation,
    capacity_check,
    compare_machines,
    parse_hashrate,
)
from poolserver.register.history import Dated, parse_fee_percent, value_at
from poolserver.register.iin import IdKind, check_digit, kind_of, validate_iin_bin
from poolserver.register.licensing import (
    License,
    LicenseState,
    LicenseStatus,
    Subtype,
    Suspension,
    credited_intervals,
    expiry_warning,
    is_credited,
    new_license,
    new_suspension,
    refusal_message,
    status_at,
)
from poolserver.register.names import split_username, validate_account, validate_worker
from poolserver.register.timeutil import KZ, show

__all__ = [
    "HARDWARE_SCHEMA",
    "KZ",
    "LICENSE_SCHEMA",
    "AuditEntry",
    "ChainReport",
    "Conflict",
    "Dated",
    "Discrepancy",
    "Finding",
    "IdKind",
    "License",
    "LicenseState",
    "LicenseStatus",
    "Machine",
    "NotFound",
    "Observation",
    "RegisterError",
    "RowError",
    "Subtype",
    "Suspension",
    "capacity_check",
    "check_digit",
    "compare_machines",
    "credited_intervals",
    "expiry_warning",
    "is_credited",
    "kind_of",
    "make_entry",
    "miner_schema",
    "new_license",
    "new_suspension",
    "parse_csv",
    "parse_fee_percent",
    "parse_hashrate",
    "refusal_message",
    "show",
    "split_username",
    "status_at",
    "validate_account",
    "validate_address",
    "validate_iin_bin",
    "validate_worker",
    "value_at",
    "verify_chain",
]
