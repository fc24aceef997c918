"""The security event log (issue 17): what an inspector or an accreditation tester asks to see.

- ``log.SecurityLog``: the append-only, hash-chained table (the register audit log's chain code,
  ``poolserver.register.chain``, reused as is), verify and read by time range;
- ``writer.SecurityEventWriter``: ``stratum.interfaces.SecurityEvents`` for the running pool: a
  non-blocking ``emit`` into a bounded queue, a task that batches events into the database;
- ``config_state``: the effective configuration's fingerprint at startup and what changed;
- ``cli_actions``: which ``poolserver`` subcommands change state (recorded with the operator);
- ``export``: CSV / JSON for the accreditation file.
"""
