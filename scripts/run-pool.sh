#!/usr/bin/env bash
# The production entry: set up (./.venv) and run `poolserver run` (embedded defaults without a
# config). The Quick-start demo is scripts/demo.sh (`poolserver demo`).
# Extra arguments go to `poolserver run`, e.g. scripts/run-pool.sh --config pool.toml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
args=()
if [ "${1:-}" = "--config" ]; then args+=(--config "$2"); shift 2; fi
exec .venv/bin/poolserver "${args[@]}" run "$@"
