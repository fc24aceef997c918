"""Miner and hardware registers, license enforcement and the hash-chained audit log (issue 7).

Pure rules (no I/O) live in the small modules below and are re-exported by ``rules``:
``iin`` (IIN/BIN check digit), ``names`` (account/worker names), ``timeutil`` (UTC storage,
Kazakhstan display), ``licensing`` (license states, suspensions, credited intervals),
``history`` (dated payout addresses and fee rates), ``hardware`` (register vs observation),
``csvrows`` (CSV import with per-row errors), ``chain`` (audit hash chain).
I/O lives in ``repository`` (SQLAlchemy) and ``policy`` (the Stratum ``AccountPolicy``).
"""
