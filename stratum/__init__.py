"""Stratum V1: wire protocol, sessions, jobs/coinbase/merkle, share validation, vardiff and the
C double-SHA256 core. Imports nothing outside itself (see ../shared/DESIGN.md)."""
