#!/usr/bin/env bash
# systemd-analyze (Debian's systemd package) for tests/test_service.py: `systemd-analyze verify`
# checks packaging/systemd/qazpool.service. Installing the package does not start systemd.
# setpriv/runuser (util-linux) and useradd (passwd) are part of every Debian base system.
# Idempotent.
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }
echo "system-deps: installing systemd (systemd-analyze)" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
command -v systemd-analyze >/dev/null 2>&1 || { echo "system-deps: systemd install failed" >&2; exit 1; }
