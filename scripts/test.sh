#!/usr/bin/env bash
# Quick start, command 2: set up everything the tests need and run the whole default suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m slow, scripts/test.sh tests/test_x.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
for s in scripts/system-deps.d/*.sh; do [ -e "$s" ] && bash "$s"; done
echo "== ruff" && .venv/bin/ruff check .
echo "== pytest"
.venv/bin/python -m pytest "$@"
