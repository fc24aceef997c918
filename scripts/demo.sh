#!/usr/bin/env bash
# Quick start, command 1: set up (./.venv) and run `poolserver demo`: the whole pool in one
# command (embedded regtest chain, simulated ASICs, blocks, PPLNS credits and payments; data in
# ./qazpool-demo/). Extra arguments go to `poolserver demo`, e.g. scripts/demo.sh --duration 120
# Production is `poolserver --config FILE run` (scripts/run-pool.sh --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/poolserver demo "$@"
