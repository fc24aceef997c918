#!/usr/bin/env bash
# pdftotext / pdftoppm (Debian's poppler-utils) for the income report tests: they read the
# per-miner statement PDF back (every Kazakh letter) and render a page as PNG. Idempotent.
set -euo pipefail
if command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }
echo "system-deps: installing poppler-utils (pdftotext, pdftoppm)" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
command -v pdftotext >/dev/null 2>&1 || { echo "system-deps: poppler-utils install failed" >&2; exit 1; }
