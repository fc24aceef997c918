#!/usr/bin/env bash
# PostgreSQL server binaries for the storage tests (the tests start their own throwaway cluster;
# this never starts or configures a system service). Installs Debian's `postgresql` when missing.
set -euo pipefail
have_pg() { command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; }
if have_pg; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }
echo "system-deps: installing PostgreSQL (Debian package postgresql)" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
have_pg || { echo "system-deps: PostgreSQL install failed (no pg_ctl)" >&2; exit 1; }
