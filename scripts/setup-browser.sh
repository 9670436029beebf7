#!/usr/bin/env bash
# Installs the browser of the browser test (tests/api/browser.rs): Debian's `chromium` package,
# run headless to load a page that posts to the proxy with fetch and navigator.sendBeacon.
# Idempotent and silent when `chromium` is already on PATH. Needs root (or sudo) and Debian's
# package registry, as CI has.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi

source "$(dirname "$0")/lib/apt-install.sh"
apt_install chromium
chromium --version >&2
