"""`poolserver backup DIR` / `poolserver restore DIR`: everything of a running pool that is not
in bitcoind, copied consistently and checked by hash.

- ``database``: an online, consistent copy of the database (SQLite's backup API; ``pg_dump -Fc``
  for PostgreSQL) while the pool keeps writing.
- ``files``: which other files belong to the pool (found-block records, share spool, embedded
  chain and wallet, report-signing keys, the config) and where a restore puts them back.
- ``manifest``: ``MANIFEST.json`` (sha256 and size of every file, software version, Alembic
  revision, audit-log anchor), written last and checked before anything is restored.
- ``procedure``: the backup and restore steps themselves.
"""
