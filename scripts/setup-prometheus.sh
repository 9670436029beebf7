#!/usr/bin/env bash
# Installs a Prometheus server (Debian's `prometheus` package) for the dashboard test
# (tests/api/dashboard.rs), which runs its own Prometheus on a free loopback port to evaluate
# every query of grafana/kinesis-proxy.json against the real proxy's metrics.
#
# Idempotent and silent when `prometheus` is already on PATH (or at /usr/bin/prometheus). Needs
# root and Debian's package registry, as CI has. The package's service is never started: the
# test starts the binary itself, so nothing is left listening on :9090.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 || [[ -x /usr/bin/prometheus ]]; then
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "setup-prometheus: prometheus is not installed and this is not root; run as root or" \
    "install Debian's prometheus package (apt-get install prometheus)" >&2
  exit 1
fi

echo "setup-prometheus: installing Debian's prometheus package" >&2

# Keep maintainer scripts from starting the service: with policy-rc.d answering 101,
# invoke-rc.d (and deb-systemd-invoke) start nothing. Only add our own if none is there, and
# remove only ours.
policy=/usr/sbin/policy-rc.d
added_policy=false
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# added by kinesis-proxy scripts/setup-prometheus.sh while installing\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  added_policy=true
fi
cleanup() {
  if [[ "$added_policy" == true ]]; then
    rm -f "$policy"
  fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null

prometheus --version 2>&1 | head -n 1 >&2
