#!/usr/bin/env bash
# Prometheus, promtool and Alertmanager for the telemetry tests (tests/test_metrics_*.py start their
# own instances on loopback temp ports with temp data dirs). Installs Debian's `prometheus` and
# `prometheus-alertmanager` without recommends when missing; idempotent. Never starts or enables
# the system services: Debian's postinst may start them when a service manager runs, so we disable
# and stop them right after a fresh install (nothing may listen on 9090/9093 on a CI box).
set -euo pipefail
have_all() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
    && { command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; }
}
if have_all; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }
echo "system-deps: installing Prometheus + Alertmanager (Debian packages prometheus, prometheus-alertmanager)" >&2
as_root apt-get update -qq
# policy-rc.d 101 keeps invoke-rc.d from starting the services during the install (no-op without a
# service manager, which is the usual case in containers).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && created_policy=1
fi
status=0
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  prometheus prometheus-alertmanager >/dev/null || status=$?
if [ "$created_policy" = 1 ]; then as_root rm -f "$policy"; fi
[ "$status" = 0 ] || { echo "system-deps: apt-get install prometheus failed ($status)" >&2; exit "$status"; }
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  as_root systemctl disable --now prometheus prometheus-alertmanager >/dev/null 2>&1 || true
fi
have_all || { echo "system-deps: Prometheus install failed (no promtool/prometheus/alertmanager)" >&2; exit 1; }
