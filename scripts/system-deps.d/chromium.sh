#!/usr/bin/env bash
# Debian's Chromium and its version-matched chromedriver for the web page's browser test
# (tests/test_web_browser.py drives it headless with Selenium; a driver that downloads its own
# browser would need the internet). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }
echo "system-deps: installing chromium and chromium-driver" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromedriver >/dev/null 2>&1 || { echo "system-deps: chromium-driver install failed" >&2; exit 1; }
