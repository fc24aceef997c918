#!/usr/bin/env bash
# Quick start, command 1: set up (./.venv) and run the pool with its embedded defaults.
# Extra arguments go to `poolserver run`, e.g. scripts/run-pool.sh --config pool.toml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
args=()
if [ "${1:-}" = "--config" ]; then args+=(--config "$2"); shift 2; fi
exec .venv/bin/poolserver "${args[@]}" run "$@"
