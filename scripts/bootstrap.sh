#!/usr/bin/env bash
# Create ./.venv (once) and install qazpool into it with its C hash core built.
# Idempotent: re-running only reinstalls when pyproject.toml, setup.py or the C source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv >/dev/null 2>&1; then
    echo "bootstrap: python3 -m venv failed; installing Debian's python3-venv" >&2
    rm -rf .venv
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev gcc >/dev/null
    "$PY" -m venv .venv
  fi
fi
# The C hash core needs the Python headers (Debian: python3-dev), which a bare Python lacks.
if ! .venv/bin/python -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  echo "bootstrap: Python headers missing; installing Debian's python3-dev" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-dev gcc >/dev/null
fi
stamp=".venv/.qazpool-installed${extras:+-$extras}"
src_hash=$(cat pyproject.toml setup.py stratum/*.c 2>/dev/null | sha256sum | cut -c1-16 || true)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$src_hash" ] || ! .venv/bin/python -c "import stratum._hashcore" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  QAZPOOL_REQUIRE_EXT=1 .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
  echo "$src_hash" > "$stamp"
fi
