"""The security suite for accreditation testers (issue 14): attack cases against a live pool,
the checks every case shares, and the signed test protocol. Entry point: ``poolserver
security-suite`` (``poolserver/commands/security_suite.py``)."""
