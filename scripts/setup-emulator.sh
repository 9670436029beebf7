#!/usr/bin/env bash
# Installs the local Kinesis emulator (kinesalite) and the KPL deaggregation module the tests read
# aggregated records back with (aws-kinesis-agg, used by scripts/kinesalite/deaggregate.js), both
# pinned in scripts/kinesalite/package-lock.json, into scripts/kinesalite/node_modules. Tests and
# scripts/run-local.sh need them; a fresh machine has only node and npm. Idempotent and silent when
# the install is already current: it reinstalls only when a package is missing or package.json /
# package-lock.json changed since.
set -euo pipefail

cd "$(dirname "$0")/kinesalite"

if ! command -v npm >/dev/null 2>&1; then
  echo "setup-emulator: npm not found; install Node.js (>= 18) and npm" >&2
  exit 1
fi

stamp_file=node_modules/.kinesis-proxy-setup-stamp
wanted_stamp="$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)"

if [[ -d node_modules/kinesalite && -d node_modules/aws-kinesis-agg && -f "$stamp_file" && "$(cat "$stamp_file")" == "$wanted_stamp" ]]; then
  exit 0
fi

echo "setup-emulator: installing kinesalite and aws-kinesis-agg into scripts/kinesalite/node_modules" >&2
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

# Fail here, not in the first test, if a package (or kinesalite's native LevelDB binding) cannot
# load.
node -e "require('kinesalite'); require('leveldown'); require('aws-kinesis-agg')"

echo "$wanted_stamp" >"$stamp_file"
